"""What Ray Data costs: the embedding job end to end vs the same model step in a bare loop over pre-tokenised rows.

    python bench/overhead.py                 # 512 rows (the embedding bench's corpus), fp32
    python bench/overhead.py --rows 4096

The bare loop is the job's own model step (`PredictEmbeddings.embed_flat`: the same batching, shapes, compiled
programs and pooling) called in one process on rows tokenised beforehand, in blocks of the job's rows per model
call; it is timed from the first block to the last result (compilation included, checkpoint loading not; a row adds
it). The job is `run_embed` after Ray has started: read, tokenize actors, model actor, write. Both run cold (an
empty JAX compilation cache), then twice more on the cache their earlier runs filled; the bare loop also runs a
second pass with its programs in memory (the model's steady speed). The ratio job / bare loop is what the plan, the actors and the I/O
keep of the model's speed; the job's profile says where the rest went.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
from embed import prepare, run_textbatch, tokenized
from measure import gb, load_average, markdown_table, matmul_peaks, run_isolated, tree_cpu_seconds

# An empty compilation cache, then twice the cache the earlier runs filled (the second rerun: a nightly job's steady
# state, once the shapes a cheaper compile made worth adding are cached too).
STATES = ("cold", "rerun", "second rerun")


def run_bare(corpus: str, checkpoint: str, dtype: str, batch_tokens: int, cache: str, rows_per_call: int) -> dict:
    """The model step in a loop over pre-tokenised blocks; a second pass gives the steady speed."""
    from textbatch.operators.predict import PredictEmbeddings
    from textbatch.operators.programs import ShapeCost

    encoded = tokenized(Path(corpus), Path(checkpoint))
    lengths = np.array([len(row) for row in encoded])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate([np.asarray(row, dtype=np.int32) for row in encoded])
    loading = time.perf_counter()
    step = PredictEmbeddings(checkpoint, dtype=dtype, batch_tokens=batch_tokens, compilation_cache=cache)
    load_seconds = time.perf_counter() - loading
    passes = []
    for attempt in range(2):
        if attempt:  # the steady pass reuses the compiled shapes instead of adding new ones
            step.shape_cost = ShapeCost(1e18)
        padded = 0.0
        cpu = tree_cpu_seconds()
        started = time.perf_counter()
        for start in range(0, len(encoded), rows_per_call):
            rows = np.arange(start, min(start + rows_per_call, len(encoded)))
            _, shares = step.embed_flat(values, offsets, rows)
            padded += shares.sum()
        passes.append((time.perf_counter() - started, padded, tree_cpu_seconds() - cpu))
    (seconds, padded, cpu), (steady_seconds, steady_padded, steady_cpu) = passes
    tokens = int(lengths.sum())
    return {
        "tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "seconds": seconds,
        "padding_efficiency": tokens / padded,
        "compile_seconds": step.compile_seconds,
        "load_seconds": load_seconds,
        "cpu_seconds": cpu,
        "steady_cpu_seconds": steady_cpu,
        "steady_tokens_per_second": tokens / steady_seconds,
        "steady_seconds": steady_seconds,
        "steady_padding_efficiency": tokens / steady_padded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per model call (default: the job's)")
    parser.add_argument("--rows-per-model-call", type=int, default=4096, help="the job's default")
    parser.add_argument("--workdir", default="/tmp/textbatch-bench")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    checkpoint, corpus, lengths, flops = prepare(workdir, args.rows)
    peaks = run_isolated(matmul_peaks)
    print(
        f"corpus: {args.rows} rows, {lengths.sum()} tokens; {os.cpu_count()} CPUs; JAX fp32 matmul peak "
        f"{peaks['float32'] / 1e9:.0f} GFLOP/s; load average {load_average():.1f}",
        flush=True,
    )
    results = {}
    for system in ("bare", "job"):
        cache = workdir / f"jax-cache-overhead-{system}"
        shutil.rmtree(cache, ignore_errors=True)
        for state in STATES:
            if system == "bare":
                result = run_isolated(
                    run_bare, str(corpus), str(checkpoint), args.dtype, args.batch_tokens, str(cache),
                    args.rows_per_model_call,
                )
            else:
                result = run_isolated(
                    run_textbatch, str(corpus), str(checkpoint), str(workdir / "output"), args.dtype,
                    args.batch_tokens, str(cache),
                )
            results[(system, state)] = result
            print(f"  {system} {state}: {result['tokens_per_second']:,.0f} tok/s in {result['seconds']:.1f} s "
                  f"(load {result['load_before']:.1f} -> {result['load_after']:.1f})", flush=True)

    rows = []
    for (system, state), result in results.items():
        bare = results[("bare", state)]["tokens_per_second"]
        rows.append([
            f"{'bare loop' if system == 'bare' else 'job end to end'}, {state}",
            f"{result['tokens_per_second']:,.0f}",
            f"{result['tokens_per_second'] / bare:.0%}",
            f"{result['padding_efficiency']:.0%}",
            f"{result['compile_seconds']:.1f}",
            f"{result['seconds']:.1f}",
            f"{result['tokens'] / result['cpu_seconds']:,.0f}",
            gb(result["peak_rss"]),
            f"{flops / result['seconds'] / peaks['float32']:.0%}",
            f"{result['load_before']:.1f} / {result['load_after']:.1f}",
        ])
    for state in STATES:
        bare, job = results[("bare", state)], results[("job", state)]
        loaded = bare["tokens"] / (bare["seconds"] + bare["load_seconds"])
        rows.append([
            f"bare loop + loading the checkpoint, {state}",
            f"{loaded:,.0f}",
            f"job: {job['tokens_per_second'] / loaded:.0%}",
            f"{bare['padding_efficiency']:.0%}",
            f"{bare['compile_seconds']:.1f}",
            f"{bare['seconds'] + bare['load_seconds']:.1f}",
            "-",
            "-",
            f"{flops / (bare['seconds'] + bare['load_seconds']) / peaks['float32']:.0%}",
            "-",
        ])
    steady = results[("bare", STATES[-1])]
    rows.append([
        "bare loop, programs in memory (steady)",
        f"{steady['steady_tokens_per_second']:,.0f}",
        "-",
        f"{steady['steady_padding_efficiency']:.0%}",
        "0.0",
        f"{steady['steady_seconds']:.1f}",
        f"{steady['tokens'] / steady['steady_cpu_seconds']:,.0f}",
        "-",
        f"{flops / steady['steady_seconds'] / peaks['float32']:.0%}",
        "-",
    ])
    headers = ["run", "real tok/s", "of the bare loop (same cache state)", "padding eff.", "compile s", "seconds",
               "tok / CPU-s", "peak RSS GB", "MFU (fp32 peak)", "load before / after"]
    print()
    print(markdown_table(headers, rows))
    for state in STATES:
        print(f"\njob profile, {state}:\n    " + results[("job", state)]["profile"].replace("\n", "\n    "))


if __name__ == "__main__":
    main()

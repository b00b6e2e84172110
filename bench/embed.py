"""Embedding benchmark: this project's job end to end vs transformers (PyTorch) and CTranslate2, same weights, same
texts, one run, one table.

Protocol (../shared/ARCHITECTURE.md): xlm-roberta-base sizes with seeded random weights, N rows whose token lengths
are log-normal (median 48, sigma 0.8) clipped to 8..512; tokens/s counts real (unpadded) tokens.

    python bench/embed.py                    # 512 rows, fp32
    python bench/embed.py --rows 4096        # a bigger corpus: start-up and compilation weigh less
    python bench/embed.py --dtype bfloat16   # our job in bf16 (transformers stays fp32; add --torch-bf16 for autocast)
    python bench/embed.py --rows 2048 --dtype float32 bfloat16 --sorted-only   # both dtypes, peers sorted only

The textbatch figures are the whole job (read Parquet, tokenize actors, model actor, pool, write Parquet) after Ray
has started, three times: with an empty JAX compilation cache ("cold": every padded shape compiles), then twice
again with the cache the earlier runs filled (a nightly rerun; the second rerun is the steady state). The peers are the bare model call plus mean pooling over
pre-tokenised batches of 32 rows, in corpus order and length-sorted, so they leave out everything but the model.
CTranslate2 (fp32 and int8, through its own converter from the same weights) runs when it is importable.

Every system runs in a fresh process, one after the other; the load average before and after each run is printed,
because the machine may be shared. Columns: real tokens/s; our job's ratio to the row (second rerun, per dtype); padding
efficiency; compile seconds; seconds; real tokens per CPU-second of the system's processes in the timed part (on a
shared machine other work lengthens wall time but not CPU time); peak RSS of the system's processes; MFU =
matrix-multiply FLOPs of the real tokens / seconds / the fp32 matmul peak JAX measures on this machine in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from measure import encoder_flops, gb, load_average, markdown_table, matmul_peaks, run_isolated, tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")
BASE_SIZES = dict(
    vocab_size=250002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
)


def make_checkpoint(folder: Path) -> Path:
    """xlm-roberta-base sizes, seeded random weights, with the bundled tokenizer beside them."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**BASE_SIZES))
    model.save_pretrained(folder)
    tokenizer_source = ROOT / "textbatch" / "assets" / "xlm-roberta-tiny"
    for name in TOKENIZER_FILES:
        if (tokenizer_source / name).exists():
            shutil.copy(tokenizer_source / name, folder / name)
    return folder


def prepare(workdir: Path, rows: int) -> tuple[Path, Path, np.ndarray, float]:
    """The bench's checkpoint and corpus under `workdir` (made once), the corpus' token lengths and its matmul FLOPs."""
    from textbatch.tokenizers import XLMRobertaTokenizer

    checkpoint = make_checkpoint(workdir / "xlm-roberta-base-random")
    corpus = workdir / f"corpus-{rows}"
    lengths = make_corpus(corpus, rows, XLMRobertaTokenizer.from_pretrained(str(checkpoint)))
    flops = encoder_flops(lengths, BASE_SIZES["hidden_size"], BASE_SIZES["intermediate_size"], 12)
    return checkpoint, corpus, lengths, flops


def make_corpus(folder: Path, rows: int, tokenizer, seed: int = 0) -> np.ndarray:
    """Writes `rows` texts in 4 Parquet files; returns their token lengths (with <s> and </s>).

    Texts are runs of words from the bundled sample corpus. Sentencepiece pieces never cross a space, so a text's
    token count is the sum of its words' counts, which lets each text be cut to its drawn length word by word.
    """
    sample = pq.read_table(ROOT / "textbatch" / "assets" / "sample_corpus").column("text").to_pylist()
    words = [w for text in sample if text for w in text.split()]
    counts = [len(ids) for ids in tokenizer(words, add_special_tokens=False)["input_ids"]]
    rng = np.random.default_rng(seed)
    targets = np.clip(np.round(rng.lognormal(np.log(48), 0.8, size=rows)), 8, 512).astype(int)
    texts, lengths = [], []
    for target in targets:
        chosen, total = [], 2  # <s> and </s>
        start = int(rng.integers(len(words)))
        for offset in range(len(words)):
            i = (start + offset) % len(words)
            if total + counts[i] > target:
                break
            chosen.append(words[i])
            total += counts[i]
        texts.append(" ".join(chosen))
        lengths.append(total)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for part, index in enumerate(np.array_split(np.arange(rows), 4)):
        table = pa.table({"id": [f"row-{i}" for i in index], "text": [texts[i] for i in index]})
        pq.write_table(table, folder / f"part-{part}.parquet")
    return np.asarray(lengths)


def tokenized(corpus: Path, checkpoint: Path) -> list[list[int]]:
    from textbatch.tokenizers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer.from_pretrained(str(checkpoint))
    texts = pq.read_table(corpus).column("text").to_pylist()
    return tokenizer(texts, truncation=True, max_length=512)["input_ids"]


# -- the systems; each runs in a process of its own (measure.run_isolated) ------------------------------------------


def run_textbatch(corpus: str, checkpoint: str, output: str, dtype: str, batch_tokens: int, cache: str) -> dict:
    import ray

    from textbatch.jobs.embed import EmbedOptions, run_embed

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    options = EmbedOptions(
        input=corpus, output=output, model=checkpoint, dtype=dtype, batch_tokens=batch_tokens, compilation_cache=cache
    )
    cpu = tree_cpu_seconds()
    summary = run_embed(options)
    cpu = tree_cpu_seconds() - cpu
    ray.shutdown()
    return {
        "tokens": summary.tokens,
        "tokens_per_second": summary.tokens_per_second,
        "padding_efficiency": summary.padding_efficiency,
        "seconds": summary.wall_seconds,
        "compile_seconds": summary.compile_seconds,
        "cpu_seconds": cpu,
        "profile": summary.format(),
    }


def time_batches(forward, encoded: list[list[int]], sort: bool, batch_size: int = 32) -> dict:
    """Runs `forward` (ids of one batch -> pooled embeddings) over batches of 32, in corpus or length order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i])) if sort else list(range(len(encoded)))
    forward([encoded[order[0]]])  # first-call set-up (thread pools, allocator) is not the model's speed
    real = padded = 0
    cpu = tree_cpu_seconds()
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start : start + batch_size]]
        forward(batch)
        real += sum(map(len, batch))
        padded += len(batch) * max(map(len, batch))
    seconds = time.perf_counter() - started
    cpu = tree_cpu_seconds() - cpu
    return {"tokens": real, "tokens_per_second": real / seconds, "padding_efficiency": real / padded, "seconds": seconds,
            "cpu_seconds": cpu}


def mean_pool(hidden: np.ndarray, lengths: list[int]) -> np.ndarray:
    mask = (np.arange(hidden.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


def transformers_forward(checkpoint: Path, bf16: bool):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    model = transformers.XLMRobertaModel.from_pretrained(checkpoint, add_pooling_layer=False).eval()

    def forward(batch: list[list[int]]):
        width = max(map(len, batch))
        ids = torch.tensor([row + [1] * (width - len(row)) for row in batch])
        mask = (ids != 1).long()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)

    return forward


@contextlib.contextmanager
def _vocabulary_padded_to_model_size():
    """The bench pairs the bundled 1,512-piece tokenizer with xlm-r-base's 250,002-row embedding; CTranslate2 insists
    the two sizes agree, so the vocabulary is padded with placeholders (ids are passed directly, never strings)."""
    from ctranslate2.converters import transformers as ct2_transformers

    loader = ct2_transformers.XLMRobertaLoader
    original = loader.get_vocabulary

    def padded(self, model, tokenizer):
        tokens = original(self, model, tokenizer)
        return tokens + [f"<unused{i}>" for i in range(len(tokens), model.config.vocab_size)]

    loader.get_vocabulary = padded
    try:
        yield
    finally:
        loader.get_vocabulary = original


def ctranslate2_available() -> bool:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        return False
    return True


def ctranslate2_forward(checkpoint: Path, workdir: Path, quantization: str):
    """CTranslate2's own converter on the same weights."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    converted = workdir / f"ct2-{quantization}"
    if not (converted / "model.bin").exists():
        # CTranslate2 4.8 reads config.position_embedding_type, which transformers 5 no longer writes.
        patched = workdir / "ct2-source"
        shutil.copytree(checkpoint, patched, dirs_exist_ok=True)
        config = json.loads((patched / "config.json").read_text())
        config["position_embedding_type"] = "absolute"
        (patched / "config.json").write_text(json.dumps(config))
        with _vocabulary_padded_to_model_size():
            TransformersConverter(str(patched)).convert(str(converted), quantization=quantization, force=True)
    encoder = ctranslate2.Encoder(str(converted), device="cpu", compute_type=quantization, intra_threads=os.cpu_count())

    def forward(batch: list[list[int]]):
        hidden = np.asarray(encoder.forward_batch(batch).last_hidden_state)
        return mean_pool(hidden, [len(row) for row in batch])

    return forward


def run_peer(kind: str, corpus: str, checkpoint: str, workdir: str, option: str, sort: bool) -> dict:
    """One peer over the corpus, pre-tokenised with the same tokenizer, batches of 32."""
    encoded = tokenized(Path(corpus), Path(checkpoint))
    if kind == "transformers":
        forward = transformers_forward(Path(checkpoint), bf16=option == "bf16")
    else:
        forward = ctranslate2_forward(Path(checkpoint), Path(workdir), option)
    return time_batches(forward, encoded, sort=sort)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--dtype", nargs="+", choices=("float32", "bfloat16"), default=["float32"])
    parser.add_argument("--batch-tokens", type=int, help="padded tokens per model call (default: the job's)")
    parser.add_argument("--torch-bf16", action="store_true", help="run transformers under bf16 autocast")
    parser.add_argument("--no-peers", action="store_true", help="only this project's job")
    parser.add_argument("--sorted-only", action="store_true", help="peers on length-sorted batches only")
    parser.add_argument("--workdir", default="/tmp/textbatch-bench")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    checkpoint, corpus, lengths, flops = prepare(workdir, args.rows)
    peaks = run_isolated(matmul_peaks)
    print(
        f"corpus: {args.rows} rows, {lengths.sum()} tokens, median length {np.median(lengths):.0f}; "
        f"{os.cpu_count()} CPUs; JAX matmul peak {peaks['float32'] / 1e9:.0f} GFLOP/s fp32, "
        f"{peaks['bfloat16'] / 1e9:.0f} bf16; load average {load_average():.1f}",
        flush=True,
    )

    runs: list[tuple[str, dict]] = []

    def record(name: str, result: dict) -> None:
        runs.append((name, result))
        print(
            f"  {name}: {result['tokens_per_second']:,.0f} tok/s in {result['seconds']:.1f} s "
            f"(load {result['load_before']:.1f} -> {result['load_after']:.1f})",
            flush=True,
        )

    steady = {}  # dtype -> the second rerun's tokens/s
    for dtype in args.dtype:
        cache = workdir / f"jax-cache-embed-{dtype}"
        shutil.rmtree(cache, ignore_errors=True)
        # A rerun finds the cold run's programs in the cache; as compiling got cheaper it may add padded shapes
        # (compiled then), so the second rerun is the steady state of a nightly job.
        for state in ("cold", "rerun", "second rerun"):
            result = run_isolated(
                run_textbatch, str(corpus), str(checkpoint), str(workdir / "output"), dtype, args.batch_tokens,
                str(cache),
            )
            record(f"textbatch job {dtype}, {state}", result)
        steady[dtype] = result["tokens_per_second"]
    for name, result in runs:
        print(f"{name}:\n    " + result["profile"].replace("\n", "\n    "))
    if not args.no_peers:
        peers = [("transformers", "bf16" if args.torch_bf16 else "fp32")]
        if ctranslate2_available():
            peers += [("CTranslate2", "float32"), ("CTranslate2", "int8")]
        else:
            print("(ctranslate2 is not importable: skipped)")
        for kind, option in peers:
            for sort in (True,) if args.sorted_only else (False, True):
                result = run_isolated(run_peer, kind, str(corpus), str(checkpoint), str(workdir), option, sort)
                record(f"{kind} {option}, {'length-sorted' if sort else 'unsorted'} batches of 32", result)

    rows = []
    for name, result in runs:
        rate = result["tokens_per_second"]
        rows.append(
            [
                name,
                f"{rate:,.0f}",
                *(f"{ours / rate:.2f}x" for ours in steady.values()),
                f"{result['padding_efficiency']:.0%}",
                f"{result['compile_seconds']:.1f}" if "compile_seconds" in result else "-",
                f"{result['seconds']:.1f}",
                f"{result['tokens'] / result['cpu_seconds']:,.0f}",
                gb(result["peak_rss"]),
                f"{flops / result['seconds'] / peaks['float32']:.0%}",
                f"{result['load_before']:.1f} / {result['load_after']:.1f}",
            ]
        )
    headers = ["run", "real tok/s", *(f"{dtype} job / this" for dtype in steady), "padding eff.", "compile s",
               "seconds", "tok / CPU-s", "peak RSS GB", "MFU (fp32 peak)", "load before / after"]
    print()
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()

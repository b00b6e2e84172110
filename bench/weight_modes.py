"""T5 weights in float32, bfloat16 and int8: parameter bytes and greedy tokens/s on this machine, one run.

    python bench/weight_modes.py                       # flan-t5-base sizes, 3 batches of 16 per mode
    python bench/weight_modes.py --sizes small --batches 5

Random weights of flan-t5-base sizes (d_model 768, d_ff 2048, 12 + 12 layers, 12 heads of 64, vocabulary 32128,
gated-gelu, untied lm_head), written once with save_pretrained and loaded per mode as a job would load them:
  fp32        from_pretrained(folder)
  bf16        dtype=bfloat16, param_dtype=bfloat16 (wo and the position tables stay float32: the bfloat16 rule)
  int8        load_in_8bit=True, float32 compute (every dense kernel int8)
  int8+bf16   load_in_8bit=True, dtype=bfloat16, param_dtype=bfloat16 (wo stays float32)
Greedy generation of batches of 16 prompts of 64 tokens, exactly 32 new tokens each (the benchmark protocol in
shared/ARCHITECTURE.md); tokens/s counts generated tokens. One untimed batch per mode first (compilation); then the
modes take turns batch by batch so that other work on the machine slows them alike. The agreement of each mode's
ids with fp32 is printed: whole sequences, and how many tokens come out the same before the first difference
(random weights give flat next-token distributions, where any perturbation flips a near-tie: a worst case).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from textbatch.models import FlaxT5ForConditionalGeneration, T5Config
from textbatch.models.quantize import params_bytes

SIZES = {
    "base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12),
    "small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6),
}
COMMON = dict(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
              relative_attention_num_buckets=32, relative_attention_max_distance=128)
MODES = {
    "fp32": {},
    "bf16": dict(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
    "int8": dict(load_in_8bit=True),
    "int8+bf16": dict(load_in_8bit=True, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16),
}
BATCH, SOURCE, NEW = 16, 64, 32


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", choices=sorted(SIZES), default="base")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per mode (default: %(default)s)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="weight-modes-") as folder:
        run(args, folder)


def run(args: argparse.Namespace, folder: str) -> None:
    config = T5Config(**SIZES[args.sizes], **COMMON)
    writer = FlaxT5ForConditionalGeneration(config, _do_init=False)
    params = jax.jit(lambda rng: writer.init_weights(rng, (1, 1)))(jax.random.PRNGKey(0))  # eager init is slow
    writer.save_pretrained(folder, params=params)
    del params
    rng = np.random.default_rng(0)
    batches = [rng.integers(2, 32000, (BATCH, SOURCE)).astype(np.int32) for _ in range(args.batches + 1)]
    options = dict(max_new_tokens=NEW, min_new_tokens=NEW)

    models, compile_seconds, outputs, seconds = {}, {}, {}, dict.fromkeys(MODES, 0.0)
    for mode, kwargs in MODES.items():
        models[mode] = FlaxT5ForConditionalGeneration.from_pretrained(folder, **kwargs)
        started = time.perf_counter()
        outputs[mode] = [models[mode].generate(batches[0], **options)]
        compile_seconds[mode] = time.perf_counter() - started
    for batch in batches[1:]:
        for mode, model in models.items():
            started = time.perf_counter()
            outputs[mode].append(model.generate(batch, **options))
            seconds[mode] += time.perf_counter() - started

    full_bytes = params_bytes(models["fp32"].params)
    print(f"T5 of flan-t5-{args.sizes} sizes, greedy, batches of {BATCH} x {SOURCE} tokens, {NEW} new tokens, "
          f"{args.batches} timed batches per mode")
    print("| mode | param bytes | vs fp32 | generated tok/s | first batch (compile) s | sequences equal to fp32 | "
          "tokens before the first difference |")
    print("|---|---|---|---|---|---|---|")
    reference = np.concatenate(outputs["fp32"])
    for mode, model in models.items():
        size = params_bytes(model.params)
        rate = args.batches * BATCH * NEW / seconds[mode]
        equal = np.concatenate(outputs[mode]) == reference  # [sequences, 1 + NEW]
        same = np.mean(np.all(equal, axis=1))
        agreeing = np.mean(np.where(equal.all(axis=1), NEW, np.argmin(equal, axis=1) - 1))  # the start token agrees
        print(f"| {mode} | {size / 2**20:.1f} MiB | {size / full_bytes:.3f} | {rate:.0f} | "
              f"{compile_seconds[mode]:.1f} | {same:.0%} | {agreeing:.1f} of {NEW} |")


if __name__ == "__main__":
    main()

"""FLAN-UL2 on one 8xA100-40GB host or one TPU v4-8 host, planned without downloading a single weight.

    python bench/plan_ul2.py                                  # the table below, for 512-token prompts, 128 new tokens
    python bench/plan_ul2.py --source-length 1024 --new-tokens 256 --num-beams 4

The UL2 config (google/flan-ul2: d_model 4096, d_ff 16384, 32 + 32 layers, 16 heads of 256, vocabulary 32128,
gated-silu, untied lm_head) -> the parameter shapes by `jax.eval_shape` (no weights) -> each parameter stored as
`from_pretrained` would store it (quantize.StoragePlan) and split over a (data, model) mesh by the same rules that
load it (sharding.per_device_bytes) -> bytes per device, then the largest batch whose generation state fits beside
them. The weights are exact; the activations are an estimate (below), so leave the margin the table leaves.

Modes (all compute in bfloat16, as one would on these devices):
  bf16         kernels and embeddings stored bfloat16, wo included (as transformers stores it); the relative
               position table stays float32 (quantize.py's float32 rules)
  int8         dense kernels int8 + per-channel scales, embeddings bfloat16, wo float32 and unquantised (the same rules)
  int8-all     as int8, wo quantised too (from_pretrained(..., keep_in_float32=()))

Hardware assumptions (say so when quoting the figures):
  8xA100-40GB  8 JAX devices of 40 GiB; 90% usable (set XLA_PYTHON_CLIENT_MEM_FRACTION=.9: JAX preallocates 75% by
               default), minus 1 GiB for the runtime and compiled programs
  TPU v4-8     4 chips of 32 GiB HBM, each 2 TensorCores run as one JAX device (megacore): 4 devices of 32 GiB;
               same 90% and 1 GiB

Activation estimate per sequence, per device (greedy or beam search, the decoding loop of generation.py):
  decoder KV caches  self-attention 2 x (new tokens + 1) and cross-attention 2 x source positions, x heads*d_kv,
                     x decoder layers, in bfloat16, split over the model axis with the heads
  encoder            its output (source x d_model, bf16) plus the largest layer's working set: the gated MLP's
                     three [source, d_ff / model] tensors in bf16 and wo's float32 input, or the attention scores
                     and probabilities [heads / model, source, source] in float32 + bf16, plus the float32 residual
  int8 adds one layer's dequantised kernels (bf16), once per device, not per sequence.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterator

import jax.numpy as jnp
from flax import traverse_util

from textbatch.models.quantize import QuantizedArray, StoragePlan, params_bytes
from textbatch.models.sharding import partition_spec, per_device_bytes
from textbatch.models.t5 import FlaxT5ForConditionalGeneration, T5Config

GIB = 2**30

UL2 = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=256,
    d_ff=16384,
    num_layers=32,
    num_decoder_layers=32,
    num_heads=16,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-silu",
    tie_word_embeddings=False,
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
)


@dataclasses.dataclass(frozen=True)
class Hardware:
    name: str
    devices: int
    memory: int  # bytes per JAX device
    usable_share: float = 0.9
    reserve: int = GIB  # runtime, compiled programs, fragmentation

    @property
    def usable(self) -> int:
        return int(self.memory * self.usable_share) - self.reserve


HARDWARE = (
    Hardware("8xA100-40GB", devices=8, memory=40 * GIB),
    Hardware("TPU v4-8", devices=4, memory=32 * GIB),
)

MODES = {
    "bf16": dict(param_dtype=jnp.bfloat16),
    "int8": dict(param_dtype=jnp.bfloat16, load_in_8bit=True),
    "int8-all": dict(param_dtype=jnp.bfloat16, load_in_8bit=True, keep_in_float32=()),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    source_length: int = 512
    new_tokens: int = 128
    num_beams: int = 1


@dataclasses.dataclass(frozen=True)
class Row:
    hardware: str
    mode: str
    data: int
    model: int
    param_bytes: int  # per device
    free_bytes: int  # per device, after weights and fixed overheads
    row_bytes: int  # per sequence on one data slice (beams included)
    max_batch: int  # prompts, over the whole host


class Ul2Shapes:
    """The UL2 parameter tree as shapes (eval_shape: nothing allocated) and its logical axes."""

    def __init__(self, sizes: dict | None = None):
        self.config = T5Config(**(sizes or UL2))
        model = FlaxT5ForConditionalGeneration(self.config, dtype=jnp.bfloat16, _do_init=False)
        self.flat = traverse_util.flatten_dict(model.params_shape_tree)
        self.axes = model.params_logical_axes
        self.keep, self.keep_strict = model.keep_in_float32, model.keep_in_float32_strict

    @property
    def parameter_count(self) -> int:
        return sum(math.prod(leaf.shape) for leaf in self.flat.values())

    def stored(self, mode: str) -> dict:
        options = dict(MODES[mode])
        keep = options.pop("keep_in_float32", self.keep)
        plan = StoragePlan.build(
            compute_dtype=jnp.bfloat16, keep_in_float32=keep, keep_in_float32_strict=self.keep_strict, **options
        )
        return plan.abstract_tree(self.flat)


def dequantised_layer_bytes(shapes: Ul2Shapes, stored: dict, model: int) -> int:
    """The bfloat16 copy of the int8 kernels of the largest block (decoder block 0), on one device."""
    total = 0
    for path, leaf in stored.items():
        if isinstance(leaf, QuantizedArray) and path[:3] == ("decoder", "block", "0"):
            spec = partition_spec(leaf.shape, shapes.axes[path], {"data": 1, "model": model})
            parts = model if "model" in spec else 1
            total += math.prod(leaf.shape) * 2 // parts
    return total


def row_bytes(config: T5Config, workload: Workload, model: int) -> int:
    """Estimated activation bytes of one sequence (all its beams) on one device; see the module docstring."""
    bf16, f32 = 2, 4
    inner = config.num_heads * config.d_kv
    head_split = model if config.num_heads % model == 0 else 1
    mlp_split = model if config.d_ff % model == 0 else 1
    source, target = workload.source_length, workload.new_tokens + 1
    caches = 2 * (source + target) * inner // head_split * config.num_decoder_layers * bf16
    mlp = source * config.d_ff // mlp_split * (3 * bf16 + f32)
    attention = config.num_heads // head_split * source * source * (f32 + bf16)
    encoder = source * config.d_model * (bf16 + 2 * f32) + max(mlp, attention)
    return caches * workload.num_beams + encoder  # the encoder runs once per prompt, before the beams


def mesh_shapes(devices: int) -> Iterator[tuple[int, int]]:
    for model in range(1, devices + 1):
        if devices % model == 0:
            yield devices // model, model


def plan(shapes: Ul2Shapes, workload: Workload, hardware=HARDWARE, modes=tuple(MODES)) -> list[Row]:
    rows = []
    for machine in hardware:
        for mode in modes:
            stored = shapes.stored(mode)
            for data, model in mesh_shapes(machine.devices):
                weights = per_device_bytes(stored, shapes.axes, {"data": data, "model": model})
                fixed = dequantised_layer_bytes(shapes, stored, model)
                free = machine.usable - weights - fixed
                per_row = row_bytes(shapes.config, workload, model)
                per_slice = max(free, 0) // per_row
                rows.append(Row(machine.name, mode, data, model, weights, free, per_row, int(per_slice * data)))
    return rows


def format_table(shapes: Ul2Shapes, rows: list[Row], workload: Workload) -> str:
    sizes = ", ".join(f"{mode} {params_bytes(shapes.stored(mode)) / GIB:.1f} GiB" for mode in MODES)
    lines = [
        f"FLAN-UL2: {shapes.parameter_count / 1e9:.2f} B parameters; whole model {sizes}; prompts of "
        f"{workload.source_length} tokens, {workload.new_tokens} new tokens, {workload.num_beams} beam(s)",
        "",
        f"| {'hardware':<12} | {'mode':<8} | mesh (data x model) | weights / device | free / device | "
        "per sequence | largest batch |",
        "|---|---|---|---|---|---|---|",
    ]
    best = {}
    for row in rows:
        key = (row.hardware, row.mode)
        if row.max_batch > 0 and (key not in best or row.max_batch > best[key].max_batch):
            best[key] = row
    for row in rows:
        fits = f"{row.max_batch}" if row.max_batch > 0 else "does not fit"
        mark = " *" if best.get((row.hardware, row.mode)) is row else ""
        lines.append(
            f"| {row.hardware:<12} | {row.mode:<8} | {row.data} x {row.model:<15} | {row.param_bytes / GIB:>13.2f} GiB"
            f" | {row.free_bytes / GIB:>10.2f} GiB | {row.row_bytes / 2**20:>8.1f} MiB | {fits}{mark} |"
        )
    lines += ["", "* the mesh with the largest batch for that hardware and mode (pass it as --mesh data=N,model=M)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None, shapes: Ul2Shapes | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-length", type=int, default=Workload.source_length, help="prompt tokens (padded)")
    parser.add_argument("--new-tokens", type=int, default=Workload.new_tokens, help="generated tokens per sequence")
    parser.add_argument("--num-beams", type=int, default=Workload.num_beams)
    args = parser.parse_args(argv)
    for name in ("source_length", "new_tokens", "num_beams"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    workload = Workload(args.source_length, args.new_tokens, args.num_beams)
    shapes = shapes or Ul2Shapes()
    table = format_table(shapes, plan(shapes, workload), workload)
    print(table)
    return table


if __name__ == "__main__":
    main()

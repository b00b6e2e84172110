"""The checks that need 8 devices, run in a process of their own by test_sharding.py (XLA_FLAGS must give 8 CPU
devices before JAX is imported, and the test session has already imported it with 1).

    python tests/models/sharding_checks.py OUT.json

Each check records a dict (name, ok, detail) in OUT.json; the test turns every record into an assertion.
One process runs them all: compiling is what costs, and a tiny model compiles once per mesh.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import gc
import json
import sys
import tempfile
import traceback

import jax
import numpy as np
from flax import traverse_util

from textbatch.models import (
    FlaubertConfig,
    FlaxFlaubertWithLMHeadModel,
    FlaxT5ForConditionalGeneration,
    FlaxXLMRobertaForMaskedLM,
    T5Config,
    XLMRobertaConfig,
)
from textbatch.models.quantize import QuantizedArray, StoragePlan
from textbatch.models.sharding import ParamPlacement, device_bytes, make_mesh, per_device_bytes

MESHES = ((8, 1), (4, 2), (2, 4), (1, 8))
TOLERANCE = 1e-5

# Odd sizes, but heads and MLP widths divisible by 8 so the widest model axis splits them; XLM-R's vocabulary (99)
# is not, so its embedding stays whole and the fallback is exercised.
T5 = T5Config(vocab_size=104, d_model=24, d_kv=5, d_ff=40, num_layers=2, num_decoder_layers=3, num_heads=8,
              feed_forward_proj="gated-gelu", tie_word_embeddings=False, relative_attention_num_buckets=8,
              relative_attention_max_distance=20, dropout_rate=0.0)
XLMR = XLMRobertaConfig(vocab_size=99, hidden_size=40, num_hidden_layers=2, num_attention_heads=8,
                        intermediate_size=56, max_position_embeddings=40, type_vocab_size=1)
FLAUBERT = FlaubertConfig(vocab_size=120, emb_dim=40, n_layers=2, n_heads=8, max_position_embeddings=40,
                          embed_init_std=40**-0.5, pre_norm=True)

results: list[dict] = []


def record(name: str, ok: bool, detail: str = "") -> None:
    results.append({"name": name, "ok": bool(ok), "detail": detail})


def check(name: str, function, *args) -> None:
    """Run one check; an exception is a failed check with its traceback (the other checks still run)."""
    try:
        function(*args)
    except Exception:  # noqa: BLE001
        record(name, False, traceback.format_exc())


def save(root: str, model_class, config, seed: int) -> str:
    folder = tempfile.mkdtemp(dir=root)
    model = model_class(config, seed=seed)
    model.save_pretrained(folder)
    del model
    gc.collect()  # its parameters would otherwise stay on the default device and count in the checks below
    return folder


def max_difference(a, b) -> float:
    """max |a - b| / (1 + |b|): an absolute difference near 0, a relative one for larger values."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))


def expected_bytes(model, mesh, load_in_8bit=False) -> int:
    flat = traverse_util.flatten_dict(model.params_shape_tree)
    stored = StoragePlan.build(compute_dtype=model.dtype, load_in_8bit=load_in_8bit).abstract_tree(flat)
    return per_device_bytes(stored, model.params_logical_axes, mesh)


def check_bytes(label: str, model, mesh, load_in_8bit=False) -> None:
    held = device_bytes(model.params)
    want = expected_bytes(model, mesh, load_in_8bit)
    total = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(model.params))
    ok = len(held) == 8 and all(value == want for value in held.values())
    if mesh.shape["model"] > 1:  # a model axis must leave each device well under a full copy
        ok = ok and max(held.values()) < total * (1.0 / mesh.shape["model"] + 0.35)
    record(f"{label}: bytes per device", ok, f"held {sorted(set(held.values()))}, expected {want}, full copy {total}")


# ---------------------------------------------------------------------------------------------------------------------
# Loading never puts a full copy of a split tensor on a device, at any point
# ---------------------------------------------------------------------------------------------------------------------

def check_loading_shard_by_shard(folder: str) -> None:
    mesh = make_mesh(2, 4)
    peaks = []
    original = ParamPlacement.place
    full_copies = []

    def place(self, path, leaf):
        placed = original(self, path, leaf)
        for array in jax.tree_util.tree_leaves(placed):
            shard = array.addressable_shards[0].data
            spec = array.sharding.spec
            if any(axis is not None for axis in spec) and shard.shape == array.shape:
                full_copies.append("/".join(path))
        buffers = {}  # a shard's data is itself a live array, a view of the same buffer: count each buffer once
        for array in jax.live_arrays():
            for shard in array.addressable_shards:
                if shard.device.id != 0:  # the default device also holds whatever else the process made
                    buffers[(shard.device.id, shard.data.unsafe_buffer_pointer())] = shard.data.nbytes
        live: dict = {}
        for (device, _), size in buffers.items():
            live[device] = live.get(device, 0) + size
        peaks.append(max(live.values()) if live else 0)
        return placed

    ParamPlacement.place = place
    try:
        model = FlaxT5ForConditionalGeneration.from_pretrained(folder, mesh=mesh)
    finally:
        ParamPlacement.place = original
    want = expected_bytes(model, mesh)
    record("loading: no split tensor placed whole", not full_copies, f"whole: {full_copies}")
    record("loading: device memory never exceeds the final shards", max(peaks) <= want,
           f"peak {max(peaks)} bytes on one device while loading; final {want}")
    kernel = model.params["encoder"]["block"]["0"]["layer"]["1"]["DenseReluDense"]["wi_0"]["kernel"]
    record("loading: an MLP kernel is split 4 ways on the model axis",
           kernel.addressable_shards[0].data.shape == (24, 10), f"shard shape {kernel.addressable_shards[0].data.shape}")
    check_bytes("T5 (2, 4)", model, mesh)
    del model


# ---------------------------------------------------------------------------------------------------------------------
# Sharded forward passes (and T5 generate) equal the unsharded ones
# ---------------------------------------------------------------------------------------------------------------------

rng = np.random.RandomState(0)
t5_ids = rng.randint(2, T5.vocab_size, (8, 11)).astype(np.int32)
t5_mask = np.ones_like(t5_ids)
t5_mask[3, 7:] = 0
t5_decoder = rng.randint(2, T5.vocab_size, (8, 5)).astype(np.int32)
xlmr_ids = rng.randint(3, XLMR.vocab_size, (6, 9)).astype(np.int32)  # 6 rows: split on data=2, whole on 4 and 8
xlmr_mask = np.ones_like(xlmr_ids)
xlmr_mask[1, 5:] = 0
flaubert_ids = rng.randint(4, FLAUBERT.vocab_size, (8, 7)).astype(np.int32)
flaubert_mask = np.ones_like(flaubert_ids)
flaubert_mask[2, 4:] = 0

FORWARD = {
    "T5": lambda m: m(t5_ids, t5_mask, decoder_input_ids=t5_decoder).logits,
    "XLM-R": lambda m: m(xlmr_ids, attention_mask=xlmr_mask).logits,
    "FlauBERT": lambda m: m(flaubert_ids, attention_mask=flaubert_mask).logits,
}


def greedy(model):
    return model.generate(t5_ids, t5_mask, max_new_tokens=7)


def check_family_on_mesh(family: str, model_class, folder: str, forward, shape, expected, expected_ids) -> None:
    mesh = make_mesh(*shape)
    model = model_class.from_pretrained(folder, mesh=mesh)
    difference = max_difference(forward(model), expected)
    record(f"{family} {shape}: outputs equal unsharded", difference <= TOLERANCE, f"largest difference {difference:.2e}")
    if shape in ((8, 1), (1, 8)):
        check_bytes(f"{family} {shape}", model, mesh)
    if expected_ids is not None:
        ids = greedy(model)
        record(f"{family} {shape}: generate gives the same ids",
               ids.shape == expected_ids.shape and bool((ids == expected_ids).all()),
               f"{ids.tolist()} vs {expected_ids.tolist()}")


# ---------------------------------------------------------------------------------------------------------------------
# int8 kernels shard like the kernels; device_map="auto" widens the model axis until the weights fit
# ---------------------------------------------------------------------------------------------------------------------


def check_int8_on_mesh(folder: str) -> None:
    unsharded = FlaxT5ForConditionalGeneration.from_pretrained(folder, load_in_8bit=True)
    expected = np.asarray(unsharded(t5_ids, t5_mask, decoder_input_ids=t5_decoder).logits)
    expected_ids = greedy(unsharded)
    mesh = make_mesh(2, 4)
    model = FlaxT5ForConditionalGeneration.from_pretrained(folder, mesh=mesh, load_in_8bit=True)
    kernel = model.params["decoder"]["block"]["1"]["layer"]["0"]["SelfAttention"]["q"]["kernel"]
    record("int8 (2, 4): kernels are int8 values split on the model axis with their scales",
           isinstance(kernel, QuantizedArray) and kernel.values.dtype == np.int8
           and kernel.values.addressable_shards[0].data.shape == (24, 10)
           and kernel.scale.addressable_shards[0].data.shape == (10,), repr(jax.tree_util.tree_map(np.shape, kernel)))
    difference = max_difference(model(t5_ids, t5_mask, decoder_input_ids=t5_decoder).logits, expected)
    record("int8 (2, 4): outputs equal unsharded int8", difference <= TOLERANCE, f"largest difference {difference:.2e}")
    record("int8 (2, 4): generate gives the same ids as unsharded int8", bool((greedy(model) == expected_ids).all()))
    check_bytes("T5 int8 (2, 4)", model, mesh, load_in_8bit=True)


def check_device_map_auto(folder: str) -> None:
    model = FlaxT5ForConditionalGeneration(T5, _do_init=False)
    flat = traverse_util.flatten_dict(model.params_shape_tree)
    stored = StoragePlan.build(compute_dtype=np.float32).abstract_tree(flat)
    axes = model.params_logical_axes
    whole = per_device_bytes(stored, axes, {"data": 8, "model": 1})
    split4 = per_device_bytes(stored, axes, {"data": 2, "model": 4})
    # A budget (60% of the memory) between the 4-way and 2-way split needs the model axis at 4.
    memory = int((split4 + 1) / 0.6) + 1
    loaded = FlaxT5ForConditionalGeneration.from_pretrained(folder, device_map="auto", max_memory_per_device=memory)
    record("device_map='auto' picks the narrowest model axis that fits", dict(loaded.mesh.shape) == {"data": 2, "model": 4},
           f"mesh {dict(loaded.mesh.shape)}; weights {whole} bytes whole, {split4} split 4 ways")
    roomy = FlaxT5ForConditionalGeneration.from_pretrained(folder, device_map="auto", max_memory_per_device=whole * 2)
    record("device_map='auto' replicates weights that fit whole", dict(roomy.mesh.shape) == {"data": 8, "model": 1},
           f"mesh {dict(roomy.mesh.shape)}")


def main(out: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sharding-checks-") as root:
        run_checks(root)
    with open(out, "w") as handle:
        json.dump({"devices": jax.device_count(), "results": results}, handle, indent=1)


def run_checks(root: str) -> None:
    t5_folder = save(root, FlaxT5ForConditionalGeneration, T5, seed=1)
    check("loading places each tensor straight onto its shards", check_loading_shard_by_shard, t5_folder)
    families = {
        "T5": (FlaxT5ForConditionalGeneration, t5_folder),
        "XLM-R": (FlaxXLMRobertaForMaskedLM, save(root, FlaxXLMRobertaForMaskedLM, XLMR, seed=2)),
        "FlauBERT": (FlaxFlaubertWithLMHeadModel, save(root, FlaxFlaubertWithLMHeadModel, FLAUBERT, seed=3)),
    }
    for family, (model_class, folder) in families.items():
        reference = model_class.from_pretrained(folder)
        expected = np.asarray(FORWARD[family](reference))
        expected_ids = greedy(reference) if family == "T5" else None
        del reference
        for shape in MESHES:
            check(f"{family} {shape}", check_family_on_mesh, family, model_class, folder, FORWARD[family], shape,
                  expected, expected_ids)
    check("T5 int8 on (2, 4)", check_int8_on_mesh, t5_folder)
    check("device_map='auto'", check_device_map_auto, t5_folder)


if __name__ == "__main__":
    main(sys.argv[1])

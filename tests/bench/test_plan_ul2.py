"""bench/plan_ul2.py: the FLAN-UL2 plan is built from shapes alone and its arithmetic holds together."""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest

from tests.bench.scripts import bench_script
from textbatch.models.quantize import params_bytes

GIB = 2**30


@pytest.fixture(scope="module")
def plan_ul2():
    with bench_script("plan_ul2") as module:
        yield module


@pytest.fixture(scope="module")
def shapes(plan_ul2):
    return plan_ul2.Ul2Shapes()  # 64 layers traced by eval_shape: no weights


def test_ul2_shapes_without_weights(shapes):
    # Per layer: attention 4 x 4096 x 4096 (decoder: 2 attentions) and gated MLP 3 x 4096 x 16384; two 32128 x 4096
    # tables (shared, lm_head); RMS norm scales and the relative position tables are the rest.
    attention, mlp, table = 4 * 4096 * 4096, 3 * 4096 * 16384, 32128 * 4096
    expected = 32 * (attention + mlp) + 32 * (2 * attention + mlp) + 2 * table
    assert math.isclose(shapes.parameter_count, expected, rel_tol=1e-4)
    assert all(type(leaf).__name__ == "ShapeDtypeStruct" for leaf in shapes.flat.values())
    assert shapes.flat[("decoder", "block", "31", "layer", "2", "DenseReluDense", "wi_1", "kernel")].shape == (
        4096, 16384)


def test_modes_store_what_from_pretrained_would(shapes):
    count = shapes.parameter_count
    wo = 64 * 16384 * 4096
    bf16, int8, int8_all = (params_bytes(shapes.stored(mode)) for mode in ("bf16", "int8", "int8-all"))
    assert math.isclose(bf16, 2 * count, rel_tol=1e-3)  # wo in bfloat16 too, as transformers stores it
    # int8: a byte a parameter, but wo (float32, unquantised under int8 in bfloat16 runs) and the shared table (bf16)
    assert math.isclose(int8, count + 3 * wo + 32128 * 4096, rel_tol=1e-2)
    assert int8 < bf16 and int8_all < int8
    assert 0.5 < int8_all / (2 * count) < 0.52  # about half of an all-bfloat16 model: the tables stay bfloat16


def test_per_device_weights_shrink_with_the_model_axis(plan_ul2, shapes):
    rows = plan_ul2.plan(shapes, plan_ul2.Workload())
    a100_bf16 = {row.model: row for row in rows if row.hardware == "8xA100-40GB" and row.mode == "bf16"}
    assert sorted(a100_bf16) == [1, 2, 4, 8]
    whole = a100_bf16[1].param_bytes
    for model, row in a100_bf16.items():
        assert whole / model <= row.param_bytes < whole / model + 0.05 * whole  # norms stay whole: a sliver
    assert a100_bf16[1].max_batch == 0  # 44.5 GiB of weights cannot sit on one 40 GiB device
    assert a100_bf16[8].max_batch > a100_bf16[2].max_batch > 0
    tpu = {(row.mode, row.model): row for row in rows if row.hardware == "TPU v4-8"}
    assert sorted({model for _, model in tpu}) == [1, 2, 4]  # 4 chips, one JAX device each
    assert tpu[("int8", 4)].max_batch > tpu[("bf16", 4)].max_batch > 0


def test_largest_batch_is_what_fits_beside_the_weights(plan_ul2, shapes):
    workload = plan_ul2.Workload(source_length=256, new_tokens=64, num_beams=2)
    for row in plan_ul2.plan(shapes, workload, modes=("int8",)):
        usable = next(machine for machine in plan_ul2.HARDWARE if machine.name == row.hardware).usable
        per_slice = row.max_batch // row.data
        if row.max_batch:
            assert row.free_bytes < usable - row.param_bytes  # one dequantised layer takes room too
            assert per_slice * row.row_bytes <= row.free_bytes < (per_slice + 1) * row.row_bytes
    longer = plan_ul2.row_bytes(shapes.config, plan_ul2.Workload(512, 128, 1), 4)
    assert longer > plan_ul2.row_bytes(shapes.config, plan_ul2.Workload(256, 128, 1), 4)
    assert plan_ul2.row_bytes(shapes.config, plan_ul2.Workload(512, 128, 1), 8) < longer


def test_command_line_prints_both_machines_and_modes(plan_ul2, shapes, capsys):
    table = plan_ul2.main(["--source-length", "128", "--new-tokens", "32"], shapes=shapes)
    assert table == capsys.readouterr().out.strip()
    for text in ("8xA100-40GB", "TPU v4-8", "| bf16 ", "| int8 ", "int8-all", "does not fit", "prompts of 128 tokens"):
        assert text in table
    with pytest.raises(SystemExit):
        plan_ul2.main(["--num-beams", "0"], shapes=shapes)


def test_stored_modes_use_bfloat16_compute(shapes):
    stored = shapes.stored("int8")
    assert stored[("shared", "embedding")].dtype == jnp.bfloat16
    assert stored[("encoder", "block", "0", "layer", "1", "DenseReluDense", "wo", "kernel")].dtype == jnp.float32

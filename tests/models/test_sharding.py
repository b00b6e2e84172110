"""Logical axes -> mesh: the rules (pure), every model's parameters named, and — in a process with 8 CPU devices
(sharding_checks.py) — sharded loading, forward passes and generate equal to the unsharded ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec as P

from textbatch import models
from textbatch.models import (
    FlaubertConfig,
    FlaxFlaubertModel,
    FlaxT5ForConditionalGeneration,
    T5Config,
    XLMRobertaConfig,
)
from textbatch.models.quantize import QuantizedArray
from textbatch.models.sharding import (
    LOGICAL_AXIS_RULES,
    ShardingError,
    choose_model_axis,
    make_mesh,
    parse_mesh,
    partition_spec,
    per_device_bytes,
    resolve_mesh,
    shard_batch,
)

CHECKS = Path(__file__).with_name("sharding_checks.py")
MESH_2x4 = {"data": 2, "model": 4}

TINY = {
    "XLMRoberta": XLMRobertaConfig(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=37, max_position_embeddings=40, num_labels=2, is_decoder=True,
                                   add_cross_attention=True),
    "T5": T5Config(vocab_size=99, d_model=24, d_kv=5, d_ff=37, num_layers=2, num_decoder_layers=1, num_heads=3,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "Flaubert": FlaubertConfig(vocab_size=99, emb_dim=24, n_layers=2, n_heads=4, max_position_embeddings=40,
                               n_langs=2, num_labels=2, tie_word_embeddings=False),
}


def _model_classes():
    for name in models.__all__:
        value = getattr(models, name)
        if name.startswith("Flax") and not name.startswith("FlaxAuto") and hasattr(value, "module_class"):
            family = next(prefix for prefix in TINY if name.removeprefix("Flax").startswith(prefix))
            yield pytest.param(value, TINY[family], id=name)


@pytest.mark.parametrize(("model_class", "config"), list(_model_classes()))
def test_every_parameter_names_a_known_logical_axis_per_dimension(model_class, config):
    model = model_class(config, _do_init=False)
    shapes = traverse_util.flatten_dict(model.params_shape_tree)
    axes = model.params_logical_axes
    assert set(axes) == set(shapes)
    known = dict(LOGICAL_AXIS_RULES)
    unnamed = [path for path, names in axes.items() if names is None]
    assert not unnamed, f"parameters whose module names no logical axes: {unnamed}"
    for path, names in axes.items():
        assert all(name in known for name in names), (path, names)
        partition_spec(shapes[path].shape, names, MESH_2x4, where="/".join(path))  # one name per dimension


def test_the_big_matrices_split_on_the_model_axis_the_small_ones_stay_whole():
    model = FlaxT5ForConditionalGeneration(TINY["T5"], _do_init=False)
    axes = model.params_logical_axes
    layer = ("encoder", "block", "0", "layer")
    assert axes[(*layer, "0", "SelfAttention", "q", "kernel")] == ("embed", "heads")
    assert axes[(*layer, "0", "SelfAttention", "o", "kernel")] == ("heads", "embed")
    assert axes[(*layer, "1", "DenseReluDense", "wi_1", "kernel")] == ("embed", "mlp")
    assert axes[(*layer, "1", "DenseReluDense", "wo", "kernel")] == ("mlp", "embed")
    assert axes[("shared", "embedding")] == ("vocab", "embed")
    assert axes[("lm_head", "kernel")] == ("embed", "vocab")
    assert axes[(*layer, "1", "layer_norm", "weight")] == ("embed",)
    assert partition_spec((24, 40), ("embed", "heads"), MESH_2x4) == P(None, "model")
    assert partition_spec((40, 24), ("heads", "embed"), MESH_2x4) == P("model", None)
    assert partition_spec((24,), ("embed",), MESH_2x4) == P(None)


def test_partition_spec_keeps_undivisible_dimensions_whole_and_uses_each_mesh_axis_once():
    assert partition_spec((99, 24), ("vocab", "embed"), MESH_2x4) == P(None, None)  # 99 rows do not split 4 ways
    assert partition_spec((100, 24), ("vocab", "embed"), MESH_2x4) == P("model", None)
    assert partition_spec((8, 40), ("heads", "mlp"), MESH_2x4) == P("model", None)  # "model" once per tensor
    assert partition_spec((8, 40), ("batch", "mlp"), MESH_2x4) == P("data", "model")
    assert partition_spec((8, 40), ("heads", "mlp"), {"data": 8, "model": 1}) == P(None, None)
    assert partition_spec((8,), None, MESH_2x4) == P()


def test_partition_spec_errors_name_the_parameter():
    with pytest.raises(ShardingError, match="layer/q/kernel.*'hedas'.*LOGICAL_AXIS_RULES"):
        partition_spec((8, 8), ("embed", "hedas"), MESH_2x4, where="layer/q/kernel")
    with pytest.raises(ShardingError, match="x/kernel has shape \\(8, 8\\) but its module names 1 axes"):
        partition_spec((8, 8), ("embed",), MESH_2x4, where="x/kernel")
    with pytest.raises(ShardingError, match="mesh axes must be"):
        partition_spec((8, 8), ("embed", "mlp"), {"rows": 2})


def test_per_device_bytes_counts_each_devices_share():
    stored = {
        ("mlp", "kernel"): jax.ShapeDtypeStruct((24, 40), np.float32),  # split 4 ways: 960 bytes each
        ("norm", "scale"): jax.ShapeDtypeStruct((24,), np.float32),  # whole: 96
        ("q", "kernel"): QuantizedArray(  # int8 values split 4 ways (240) + scales split 4 ways (40)
            values=jax.ShapeDtypeStruct((24, 40), np.int8), scale=jax.ShapeDtypeStruct((40,), np.float32)
        ),
        ("table", "embedding"): jax.ShapeDtypeStruct((99, 24), np.float32),  # 99 rows stay whole: 9504
    }
    axes = {("mlp", "kernel"): ("embed", "mlp"), ("norm", "scale"): ("embed",), ("q", "kernel"): ("embed", "heads"),
            ("table", "embedding"): ("vocab", "embed")}
    assert per_device_bytes(stored, axes, MESH_2x4) == 960 + 96 + 240 + 40 + 9504
    assert per_device_bytes(stored, axes, {"data": 8, "model": 1}) == 3840 + 96 + 960 + 160 + 9504


def test_choose_model_axis_takes_the_narrowest_split_that_fits():
    stored = {("w", "kernel"): jax.ShapeDtypeStruct((16, 48), np.float32)}  # 3072 bytes
    axes = {("w", "kernel"): ("embed", "mlp")}
    assert choose_model_axis(stored, axes, 8, None) == 1
    assert choose_model_axis(stored, axes, 8, 3072) == 1
    assert choose_model_axis(stored, axes, 8, 3071) == 2
    assert choose_model_axis(stored, axes, 8, 768) == 4
    assert choose_model_axis(stored, axes, 6, 1024) == 3  # divisors of 6: 1, 2, 3, 6
    with pytest.raises(ShardingError, match="do not fit on 8 device"):
        choose_model_axis(stored, axes, 8, 383)


def test_parse_mesh_and_make_mesh():
    assert parse_mesh("data=2,model=4") == {"data": 2, "model": 4}
    assert parse_mesh(" model=8 ") == {"model": 8}
    for bad in ("data=2,data=3", "rows=2", "data=0", "", "data=two"):
        with pytest.raises(ShardingError, match="data=N,model=M"):
            parse_mesh(bad)
    mesh = make_mesh()
    assert dict(mesh.shape) == {"data": jax.device_count(), "model": 1}
    with pytest.raises(ShardingError, match="does not cover the 1 devices"):
        make_mesh(2, 1)


def test_resolve_mesh_refuses_what_it_cannot_do():
    with pytest.raises(ShardingError, match="not both"):
        resolve_mesh(make_mesh(), "auto", {}, {})
    with pytest.raises(ShardingError, match="device_map='balanced' is not supported"):
        resolve_mesh(None, "balanced", {}, {})
    with pytest.raises(ShardingError, match="must be a jax.sharding.Mesh"):
        resolve_mesh({"data": 1}, None, {}, {})
    assert resolve_mesh(None, None, {}, {}) is None


def test_shard_batch_leaves_inputs_alone_without_a_mesh():
    arrays = {"input_ids": np.zeros((3, 4), np.int32)}
    assert shard_batch(arrays, None)["input_ids"] is arrays["input_ids"]


def test_a_one_device_mesh_and_device_map_auto_on_a_cpu_run_like_no_mesh(tmp_path):
    config = FlaubertConfig(vocab_size=50, emb_dim=16, n_layers=1, n_heads=2, max_position_embeddings=20)
    FlaxFlaubertModel(config, seed=4).save_pretrained(tmp_path)
    plain = FlaxFlaubertModel.from_pretrained(tmp_path)
    meshed = FlaxFlaubertModel.from_pretrained(tmp_path, mesh=make_mesh(1, 1))
    assert plain.mesh is None and dict(meshed.mesh.shape) == {"data": 1, "model": 1}
    ids = np.arange(2, 16, dtype=np.int32).reshape(2, 7)
    np.testing.assert_array_equal(np.asarray(plain(ids).last_hidden_state), np.asarray(meshed(ids).last_hidden_state))
    automatic = FlaxFlaubertModel.from_pretrained(tmp_path, device_map="auto")  # CPUs report no memory size
    assert dict(automatic.mesh.shape) == {"data": jax.device_count(), "model": 1}


# ---------------------------------------------------------------------------------------------------------------------
# The 8-device checks, in their own process
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_device_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "results.json"
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run([sys.executable, str(CHECKS), str(out)], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0 and out.exists(), f"sharding_checks.py failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return json.loads(out.read_text())


def test_on_8_devices_sharded_models_equal_unsharded_and_load_shard_by_shard(eight_device_results):
    assert eight_device_results["devices"] == 8
    records = eight_device_results["results"]
    failed = [f"{record['name']}: {record['detail']}" for record in records if not record["ok"]]
    assert not failed, "\n\n".join(failed)
    names = {record["name"] for record in records}
    for family in ("T5", "XLM-R", "FlauBERT"):
        for shape in ((8, 1), (4, 2), (2, 4), (1, 8)):
            assert f"{family} {shape}: outputs equal unsharded" in names
    for shape in ((8, 1), (4, 2), (2, 4), (1, 8)):
        assert f"T5 {shape}: generate gives the same ids" in names
    assert "loading: device memory never exceeds the final shards" in names
    assert "device_map='auto' picks the narrowest model axis that fits" in names
    assert len(records) >= 30

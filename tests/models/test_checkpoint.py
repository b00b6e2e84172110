"""Checkpoint reading and writing: every format, prefixes, strictness, and transformers as the reference.

The Flax tree a real model expects is derived here from the PyTorch module types (Linear -> kernel [in, out] + bias,
Embedding -> embedding, LayerNorm -> scale + bias), independently of the renaming code under test.
"""

import logging
import sys

import fsspec
import jax
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import serialization, traverse_util
from safetensors.torch import save_file
from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification, XLMRobertaModel

from textbatch.models.checkpoint import (
    CheckpointError,
    flax_to_pytorch,
    kernel_from_weight,
    load_flax_params,
    plan_renames,
    pytorch_to_flax,
    save_flax_params,
    weight_from_kernel,
)
from textbatch.storage import Folder

REVISION = "89abcdef0123456789abcdef0123456789abcdef"


# --- fixtures ----------------------------------------------------------------------------------------------------


def tiny_config(**overrides):
    values = dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, type_vocab_size=1, num_labels=5,
    )
    values.update(overrides)
    return XLMRobertaConfig(**values)


def flax_reference(model, dtype=np.float32):
    """(expected tree, flax params) of a PyTorch model, from its module types."""
    expected, params = {}, {}
    for module_name, module in model.named_modules():
        base = tuple(module_name.split(".")) if module_name else ()
        if isinstance(module, torch.nn.Linear):
            leaves = {"kernel": module.weight.detach().numpy().T, "bias": module.bias.detach().numpy()}
        elif isinstance(module, torch.nn.Embedding):
            leaves = {"embedding": module.weight.detach().numpy()}
        elif isinstance(module, torch.nn.LayerNorm):
            leaves = {"scale": module.weight.detach().numpy(), "bias": module.bias.detach().numpy()}
        else:
            continue
        for leaf, value in leaves.items():
            expected[base + (leaf,)] = jax.ShapeDtypeStruct(value.shape, dtype)
            params[base + (leaf,)] = np.array(value, dtype=dtype)
    return expected, params


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(3)
    return XLMRobertaModel(tiny_config()).eval()


@pytest.fixture(scope="module")
def head_model():
    torch.manual_seed(4)
    return XLMRobertaForTokenClassification(tiny_config()).eval()


def assert_same_params(got, want):
    assert set(got) == set(want)
    for path, value in want.items():
        assert got[path].dtype == value.dtype, path
        np.testing.assert_array_equal(got[path], value, err_msg="/".join(path))


def write_msgpack(folder_path, flat_params):
    nested = traverse_util.unflatten_dict(flat_params)
    folder_path.mkdir(parents=True, exist_ok=True)
    (folder_path / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(nested))


# --- the name mapping, on its own ----------------------------------------------------------------------------------


def test_leaf_rules_follow_the_expected_tree():
    rng = np.random.default_rng(0)
    tensors = {
        "embeddings.word_embeddings.weight": rng.normal(size=(7, 5)).astype(np.float32),
        "embeddings.LayerNorm.weight": rng.normal(size=(5,)).astype(np.float32),
        "embeddings.LayerNorm.bias": rng.normal(size=(5,)).astype(np.float32),
        "encoder.layer.3.attention.self.query.weight": rng.normal(size=(3, 5)).astype(np.float32),  # [out, in]
        "encoder.layer.3.attention.self.query.bias": rng.normal(size=(3,)).astype(np.float32),
        "legacy.LayerNorm.gamma": rng.normal(size=(3,)).astype(np.float32),
        "legacy.LayerNorm.beta": rng.normal(size=(3,)).astype(np.float32),
        "custom.weight": rng.normal(size=(2, 3)).astype(np.float32),  # a module whose own leaf is "weight"
    }
    expected = {
        ("embeddings", "word_embeddings", "embedding"): jax.ShapeDtypeStruct((7, 5), np.float32),
        ("embeddings", "LayerNorm", "scale"): jax.ShapeDtypeStruct((5,), np.float32),
        ("embeddings", "LayerNorm", "bias"): jax.ShapeDtypeStruct((5,), np.float32),
        ("encoder", "layer", "3", "attention", "self", "query", "kernel"): jax.ShapeDtypeStruct((5, 3), np.float32),
        ("encoder", "layer", "3", "attention", "self", "query", "bias"): jax.ShapeDtypeStruct((3,), np.float32),
        ("legacy", "LayerNorm", "scale"): jax.ShapeDtypeStruct((3,), np.float32),
        ("legacy", "LayerNorm", "bias"): jax.ShapeDtypeStruct((3,), np.float16),
        ("custom", "weight"): jax.ShapeDtypeStruct((2, 3), np.float32),
    }
    flat = pytorch_to_flax(tensors, expected, "roberta")

    query = ("encoder", "layer", "3", "attention", "self", "query", "kernel")
    np.testing.assert_array_equal(flat[query], tensors["encoder.layer.3.attention.self.query.weight"].T)
    np.testing.assert_array_equal(flat[("embeddings", "word_embeddings", "embedding")],
                                  tensors["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(flat[("legacy", "LayerNorm", "scale")], tensors["legacy.LayerNorm.gamma"])
    assert flat[("legacy", "LayerNorm", "bias")].dtype == np.float16
    np.testing.assert_array_equal(flat[("custom", "weight")], tensors["custom.weight"])
    assert flat[query].flags["C_CONTIGUOUS"]


def test_flax_to_pytorch_inverts_pytorch_to_flax():
    rng = np.random.default_rng(1)
    flat = {
        ("roberta", "encoder", "layer", "0", "output", "dense", "kernel"): rng.normal(size=(7, 3)).astype(np.float32),
        ("roberta", "encoder", "layer", "0", "output", "dense", "bias"): rng.normal(size=(3,)).astype(np.float32),
        ("roberta", "embeddings", "word_embeddings", "embedding"): rng.normal(size=(11, 3)).astype(np.float32),
        ("roberta", "embeddings", "LayerNorm", "scale"): rng.normal(size=(3,)).astype(np.float32),
        ("classifier", "kernel"): rng.normal(size=(3, 5)).astype(np.float32),
    }
    torch_names = flax_to_pytorch(flat)
    assert sorted(torch_names) == sorted([
        "roberta.encoder.layer.0.output.dense.weight", "roberta.encoder.layer.0.output.dense.bias",
        "roberta.embeddings.word_embeddings.weight", "roberta.embeddings.LayerNorm.weight", "classifier.weight",
    ])
    assert torch_names["classifier.weight"].shape == (5, 3)
    expected = {path: jax.ShapeDtypeStruct(value.shape, value.dtype) for path, value in flat.items()}
    assert_same_params(pytorch_to_flax(torch_names, expected, "roberta"), flat)


def test_kernel_layout_for_windows():
    weight = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # PyTorch conv [out, in, window]
    kernel = kernel_from_weight(weight)
    assert kernel.shape == (4, 3, 2) and kernel[1, 2, 0] == weight[0, 2, 1]
    np.testing.assert_array_equal(weight_from_kernel(kernel), weight)


def test_prefix_is_stripped_and_added():
    shapes = {"roberta.pooler.dense.bias": (3,), "classifier.bias": (2,), "encoder.x.bias": (4,)}
    base_tree = {("pooler", "dense", "bias"): jax.ShapeDtypeStruct((3,), np.float32),
                 ("roberta", "encoder", "x", "bias"): jax.ShapeDtypeStruct((4,), np.float32),
                 ("classifier", "bias"): jax.ShapeDtypeStruct((2,), np.float32)}
    plan = plan_renames(shapes, base_tree, "roberta")
    assert plan["roberta.pooler.dense.bias"].path == ("pooler", "dense", "bias")  # stripped
    assert plan["encoder.x.bias"].path == ("roberta", "encoder", "x", "bias")  # added
    assert plan["classifier.bias"].path == ("classifier", "bias")  # as written


def test_names_as_written_win_over_prefix_adjusted(caplog):
    shapes = {"roberta.pooler.bias": (3,), "pooler.bias": (3,)}
    expected = {("pooler", "bias"): jax.ShapeDtypeStruct((3,), np.float32)}
    with caplog.at_level(logging.DEBUG, logger="textbatch.models.checkpoint"):
        plan = plan_renames(shapes, expected, "roberta")
    assert plan == {"pooler.bias": plan["pooler.bias"]} and plan["pooler.bias"].path == ("pooler", "bias")
    assert "roberta.pooler.bias" in caplog.text


def test_plan_names_missing_and_misshaped_tensors():
    expected = {("dense", "kernel"): jax.ShapeDtypeStruct((4, 3), np.float32),
                ("dense", "bias"): jax.ShapeDtypeStruct((3,), np.float32)}
    with pytest.raises(CheckpointError, match=r"dense\.bias \(dense/bias\)"):
        plan_renames({"dense.weight": (3, 4)}, expected, "")
    wrong_shape = r"dense\.weight in the checkpoint has shape \[4, 3\] \(kernel \[3, 4\]\), the model expects \[4, 3\]"
    with pytest.raises(CheckpointError, match=wrong_shape):
        plan_renames({"dense.weight": (4, 3), "dense.bias": (3,)}, expected, "")
    plan = plan_renames({"dense.weight": (3, 4)}, expected, "", may_be_missing=lambda path: path[-1] == "bias")
    assert list(plan) == ["dense.weight"]


# --- formats, with transformers' own files ---------------------------------------------------------------------------


def save_format(model, fmt, path):
    if fmt == "safetensors":
        model.save_pretrained(path)
    elif fmt == "sharded":
        model.save_pretrained(path, max_shard_size="20KB")
        assert len(list(path.glob("model-*.safetensors"))) > 1
    elif fmt == "bin":
        path.mkdir(parents=True, exist_ok=True)
        state = dict(model.state_dict())
        if "embeddings.position_embeddings.weight" in state:  # an old checkpoint's buffer
            state["embeddings.position_ids"] = torch.arange(40)[None]
        torch.save(state, path / "pytorch_model.bin")
    elif fmt == "msgpack":
        write_msgpack(path, flax_reference(model)[1])
    else:
        raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["safetensors", "sharded", "bin", "msgpack"])
def test_every_format_loads_a_transformers_model(base_model, tmp_path, fmt, caplog):
    save_format(base_model, fmt, tmp_path / "ckpt")
    expected, want = flax_reference(base_model)
    with caplog.at_level(logging.DEBUG, logger="textbatch.models.checkpoint"):
        got = load_flax_params(Folder.open(tmp_path / "ckpt"), expected, "roberta")
    assert_same_params(got, want)
    if fmt == "bin":
        assert "embeddings.position_ids" in caplog.text  # skipped, said so


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "msgpack"])
def test_head_checkpoint_loads_into_base_model(head_model, tmp_path, fmt, caplog):
    save_format(head_model, fmt, tmp_path / "head")
    _, head_params = flax_reference(head_model)
    base_expected = {path[1:]: jax.ShapeDtypeStruct(v.shape, np.float32)
                     for path, v in head_params.items() if path[0] == "roberta"}
    with caplog.at_level(logging.DEBUG, logger="textbatch.models.checkpoint"):
        got = load_flax_params(Folder.open(tmp_path / "head"), base_expected, "roberta")
    assert_same_params(got, {path[1:]: v for path, v in head_params.items() if path[0] == "roberta"})
    assert "classifier" in caplog.text


def test_base_checkpoint_loads_into_head_model(base_model, head_model, tmp_path):
    base_model.save_pretrained(tmp_path / "base")
    head_expected, _ = flax_reference(head_model)
    _, base_params = flax_reference(base_model)
    folder = Folder.open(tmp_path / "base")

    with pytest.raises(CheckpointError, match=r"model\.safetensors: classifier\.weight"):
        load_flax_params(folder, head_expected, "roberta")
    got = load_flax_params(folder, head_expected, "roberta", may_be_missing=lambda path: path[0] == "classifier")
    assert_same_params(got, {("roberta",) + path: v for path, v in base_params.items() if path[0] != "pooler"})


def test_bfloat16_checkpoints(base_model, tmp_path):
    expected32, want32 = flax_reference(base_model)
    torch.save({k: v.to(torch.bfloat16) for k, v in base_model.state_dict().items()}, tmp_path / "pytorch_model.bin")
    got = load_flax_params(Folder.open(tmp_path), expected32, "roberta")
    for path, value in want32.items():
        np.testing.assert_array_equal(got[path], value.astype(ml_dtypes.bfloat16).astype(np.float32))

    expected16 = {path: jax.ShapeDtypeStruct(s.shape, jax.numpy.bfloat16) for path, s in expected32.items()}
    got16 = load_flax_params(Folder.open(tmp_path), expected16, "roberta")
    out = Folder.open(tmp_path / "saved", create=True)
    save_flax_params(out, got16)
    again = load_flax_params(out, expected16, "roberta")
    assert_same_params(again, got16)
    assert again[("pooler", "dense", "kernel")].dtype == ml_dtypes.bfloat16


def test_local_safetensors_are_mapped_but_params_own_their_memory(base_model, tmp_path):
    base_model.save_pretrained(tmp_path)
    expected, want = flax_reference(base_model)
    expected16 = {path: jax.ShapeDtypeStruct(s.shape, jax.numpy.bfloat16) for path, s in expected.items()}
    for wanted_dtype in (expected, expected16):
        got = load_flax_params(Folder.open(tmp_path), wanted_dtype, "roberta")
        for path, value in want.items():
            np.testing.assert_array_equal(got[path], value.astype(wanted_dtype[path].dtype))
            assert got[path].flags.owndata and got[path].flags.writeable, path  # no view of the mapped file


def test_safetensors_preferred_over_pytorch_bin(base_model, tmp_path):
    base_model.save_pretrained(tmp_path)
    torch.save({k: v + 1 for k, v in base_model.state_dict().items()}, tmp_path / "pytorch_model.bin")
    expected, want = flax_reference(base_model)
    assert_same_params(load_flax_params(Folder.open(tmp_path), expected, "roberta"), want)


# --- saving, with transformers as the judge ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [XLMRobertaModel, XLMRobertaForTokenClassification])
def test_saved_params_load_in_transformers(model_class, base_model, head_model, tmp_path):
    source = base_model if model_class is XLMRobertaModel else head_model
    _, params = flax_reference(source)
    folder = Folder.open(tmp_path / "saved", create=True)
    save_flax_params(folder, params)
    source.config.save_pretrained(tmp_path / "saved")

    reloaded = model_class.from_pretrained(tmp_path / "saved").eval()
    want = source.state_dict()
    got = reloaded.state_dict()
    assert set(got) == set(want)
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)


# --- where the folder is ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://ckpt-test/tiny", "file://{tmp}/url-folder"])
def test_save_and_load_through_urls(base_model, tmp_path, url):
    expected, params = flax_reference(base_model)
    folder = Folder.open(url.format(tmp=tmp_path), create=True)
    save_flax_params(folder, params)
    assert_same_params(load_flax_params(Folder.open(url.format(tmp=tmp_path)), expected, "roberta"), params)
    if url.startswith("memory"):
        fsspec.filesystem("memory").rm("/ckpt-test", recursive=True)


def test_remote_sharded_and_bin_checkpoints(base_model, tmp_path):
    expected, want = flax_reference(base_model)
    memory = fsspec.filesystem("memory")
    for fmt in ("sharded", "bin"):
        save_format(base_model, fmt, tmp_path / fmt)
        memory.put(str(tmp_path / fmt), f"/ckpt-remote/{fmt}", recursive=True)
        assert_same_params(load_flax_params(Folder.open(f"memory://ckpt-remote/{fmt}"), expected, "roberta"), want)
    memory.rm("/ckpt-remote", recursive=True)


def test_hub_id_loads_offline_from_cache(base_model, tmp_path, monkeypatch):
    repo = tmp_path / "cache" / "models--tiny-org--xlmr"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    base_model.save_pretrained(repo / "snapshots" / REVISION)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))

    expected, want = flax_reference(base_model)
    assert_same_params(load_flax_params(Folder.open("tiny-org/xlmr"), expected, "roberta"), want)


# --- broken and mismatched checkpoints ------------------------------------------------------------------------------


def truncate(path, keep_fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


@pytest.mark.parametrize("where", ["local", "memory"])
def test_truncated_safetensors_names_the_file(base_model, tmp_path, where):
    base_model.save_pretrained(tmp_path / "ckpt")
    truncate(tmp_path / "ckpt" / "model.safetensors")
    expected, _ = flax_reference(base_model)
    if where == "local":
        folder = Folder.open(tmp_path / "ckpt")
    else:
        fsspec.filesystem("memory").put(str(tmp_path / "ckpt"), "/ckpt-trunc", recursive=True)
        folder = Folder.open("memory://ckpt-trunc")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated"):
        load_flax_params(folder, expected, "roberta")
    if where == "memory":
        fsspec.filesystem("memory").rm("/ckpt-trunc", recursive=True)


def test_truncated_or_corrupt_other_formats_name_the_file(base_model, tmp_path):
    expected, _ = flax_reference(base_model)
    save_format(base_model, "bin", tmp_path / "bin")
    truncate(tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin is truncated"):
        load_flax_params(Folder.open(tmp_path / "bin"), expected, "roberta")

    save_format(base_model, "msgpack", tmp_path / "msgpack")
    truncate(tmp_path / "msgpack" / "flax_model.msgpack")
    with pytest.raises(CheckpointError, match=r"flax_model\.msgpack is truncated"):
        load_flax_params(Folder.open(tmp_path / "msgpack"), expected, "roberta")

    save_format(base_model, "sharded", tmp_path / "sharded")
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"{shard.name}.*model\.safetensors\.index\.json"):
        load_flax_params(Folder.open(tmp_path / "sharded"), expected, "roberta")


def test_missing_tensor_names_tensor_and_file(base_model, tmp_path):
    state = {k: v.contiguous() for k, v in base_model.state_dict().items()}
    del state["encoder.layer.1.attention.self.value.weight"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    expected, _ = flax_reference(base_model)
    with pytest.raises(CheckpointError) as raised:
        load_flax_params(Folder.open(tmp_path), expected, "roberta")
    message = str(raised.value)
    assert "encoder.layer.1.attention.self.value.weight" in message
    assert str(tmp_path / "model.safetensors") in message


def test_wrong_shape_names_tensor_and_file(base_model, tmp_path):
    base_model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    torch.manual_seed(0)
    expected, _ = flax_reference(XLMRobertaModel(tiny_config(intermediate_size=38)))
    with pytest.raises(CheckpointError) as raised:
        load_flax_params(Folder.open(tmp_path / "sharded"), expected, "roberta")
    message = str(raised.value)
    assert "encoder.layer.0.intermediate.dense.weight" in message  # the first mis-shaped tensor
    assert "model-0000" in message and ".safetensors" in message  # the shard holding it
    assert "[38, 32]" in message or "[32, 38]" in message


def test_no_weights_file_lists_what_was_looked_for(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as raised:
        load_flax_params(Folder.open(tmp_path), {}, "roberta")
    for name in ("model.safetensors", "model.safetensors.index.json", "flax_model.msgpack", "pytorch_model.bin"):
        assert name in str(raised.value)
    assert str(tmp_path) in str(raised.value)


def test_pytorch_bin_without_torch_says_what_to_install(base_model, tmp_path, monkeypatch):
    save_format(base_model, "bin", tmp_path)
    expected, _ = flax_reference(base_model)
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r"pip install textbatch\[torch\]"):
        load_flax_params(Folder.open(tmp_path), expected, "roberta")



def test_msgpack_wrapped_in_params(base_model, tmp_path):
    expected, want = flax_reference(base_model)
    (tmp_path / "flax_model.msgpack").write_bytes(
        serialization.msgpack_serialize({"params": traverse_util.unflatten_dict(want)})
    )
    assert_same_params(load_flax_params(Folder.open(tmp_path), expected, "roberta"), want)

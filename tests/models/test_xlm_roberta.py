"""FlaxXLMRobertaModel against transformers' XLMRobertaModel (PyTorch) with the same weights and inputs."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from tests.models.xlmr_reference import CONFIGS, max_diff, padded_batch, reference_model
from textbatch.models import FlaxXLMRobertaModel, XLMRobertaConfig


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    reference = reference_model(CONFIGS[request.param])
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    return reference, FlaxXLMRobertaModel.from_pretrained(folder), folder


def test_every_output_field_matches_with_padding(pair):
    reference, model, _ = pair
    input_ids, mask = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = reference(
            torch.tensor(input_ids), attention_mask=torch.tensor(mask), output_hidden_states=True, output_attentions=True
        )
    ours = model(input_ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4
    assert max_diff(ours.pooler_output, expected.pooler_output) < 1e-4
    assert len(ours.hidden_states) == len(expected.hidden_states) == model.config.num_hidden_layers + 1
    for got, want in zip(ours.hidden_states, expected.hidden_states):
        assert max_diff(got, want) < 1e-4
    assert len(ours.attentions) == len(expected.attentions) == model.config.num_hidden_layers
    for got, want in zip(ours.attentions, expected.attentions):
        assert max_diff(got, want) < 1e-4


def test_token_type_ids_and_explicit_position_ids(pair):
    reference, model, _ = pair
    input_ids, mask = padded_batch(model.config.vocab_size, seed=2)
    token_type_ids = np.zeros_like(input_ids)
    if model.config.type_vocab_size > 1:
        token_type_ids[:, 5:] = 1
    position_ids = np.tile(np.arange(7, 7 + input_ids.shape[1]), (3, 1))
    with torch.no_grad():
        expected = reference(
            torch.tensor(input_ids),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(token_type_ids),
            position_ids=torch.tensor(position_ids),
        )
    ours = model(input_ids, attention_mask=mask, token_type_ids=token_type_ids, position_ids=position_ids)
    assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4
    assert max_diff(ours.pooler_output, expected.pooler_output) < 1e-4


def test_head_mask(pair):
    """transformers 5 dropped head_mask; masking head h of a layer equals scaling that head's columns of the
    attention output projection, so the reference gets the mask through its weights instead."""
    reference, model, _ = pair
    cfg = model.config
    head_mask = np.random.RandomState(3).choice([0.0, 0.5, 1.0], size=(cfg.num_hidden_layers, cfg.num_attention_heads))
    head_mask[0, 0] = 0.0
    masked_reference = copy.deepcopy(reference)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    with torch.no_grad():
        for layer, layer_mask in zip(masked_reference.encoder.layer, head_mask):
            scale = torch.tensor(np.repeat(layer_mask, head_dim), dtype=torch.float32)
            layer.attention.output.dense.weight.mul_(scale[None, :])
    input_ids, mask = padded_batch(cfg.vocab_size)
    with torch.no_grad():
        expected = masked_reference(
            torch.tensor(input_ids), attention_mask=torch.tensor(mask), output_hidden_states=True, output_attentions=True
        )
    ours = model(input_ids, attention_mask=mask, head_mask=head_mask, output_hidden_states=True, output_attentions=True)
    assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4
    for got, want in zip(ours.hidden_states, expected.hidden_states):
        assert max_diff(got, want) < 1e-4
    for got, want, layer_mask in zip(ours.attentions, expected.attentions, head_mask):
        assert max_diff(got, want * torch.tensor(layer_mask, dtype=torch.float32)[None, :, None, None]) < 1e-4

    one_mask_for_all_layers = model(input_ids, attention_mask=mask, head_mask=head_mask[0])
    every_layer = model(input_ids, attention_mask=mask, head_mask=np.tile(head_mask[0], (cfg.num_hidden_layers, 1)))
    np.testing.assert_allclose(one_mask_for_all_layers.last_hidden_state, every_layer.last_hidden_state, atol=1e-6)
    with pytest.raises(ValueError, match="head_mask must have shape"):
        model(input_ids, head_mask=np.ones((cfg.num_attention_heads + 1,)))


def test_bfloat16_stays_close_to_float32(pair):
    """bf16 keeps 8 mantissa bits (relative step 2**-8 ~ 0.004). Softmax and LayerNorm statistics run in float32, so
    errors come from bf16 matmul inputs only and stay at a few steps of the unit-variance LayerNorm outputs: a max
    error of 0.1 and a per-token cosine of 0.999 catch any float16-style overflow or a softmax computed in bf16."""
    reference, model, folder = pair
    bf16 = FlaxXLMRobertaModel.from_pretrained(folder, dtype=jnp.bfloat16)
    input_ids, mask = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = reference(torch.tensor(input_ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    ours = bf16(input_ids, attention_mask=mask).last_hidden_state
    assert ours.dtype == jnp.bfloat16
    ours = np.asarray(ours, dtype=np.float32)
    assert np.max(np.abs(ours - expected)) < 0.1
    cosine = np.sum(ours * expected, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert cosine.min() > 0.999


def test_return_dict_false_gives_a_tuple(pair):
    _, model, _ = pair
    input_ids, mask = padded_batch(model.config.vocab_size)
    as_tuple = model(input_ids, attention_mask=mask, return_dict=False)
    as_output = model(input_ids, attention_mask=mask)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    np.testing.assert_array_equal(as_tuple[0], as_output.last_hidden_state)
    np.testing.assert_array_equal(as_output[1], as_output["pooler_output"])


def test_save_pretrained_loads_in_transformers(pair, tmp_path):
    reference, model, _ = pair
    model.save_pretrained(tmp_path)
    reloaded = transformers.XLMRobertaModel.from_pretrained(tmp_path).eval()
    input_ids, mask = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        want = reference(torch.tensor(input_ids), attention_mask=torch.tensor(mask)).last_hidden_state
        got = reloaded(torch.tensor(input_ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert max_diff(got.numpy(), want) < 1e-6
    assert FlaxXLMRobertaModel.from_pretrained(tmp_path).config.to_dict()["architectures"] == ["XLMRobertaModel"]


def test_config_keeps_unknown_keys_and_rejects_bad_sizes():
    config = XLMRobertaConfig(hidden_size=32, num_attention_heads=4, my_custom_key="kept")
    assert config.to_dict()["my_custom_key"] == "kept"
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        XLMRobertaConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="position_embedding_type"):
        XLMRobertaConfig(position_embedding_type="relative_key")


def test_dropout_needs_an_rng_and_changes_outputs_only_in_training(pair):
    _, model, _ = pair
    input_ids, mask = padded_batch(model.config.vocab_size)
    with pytest.raises(ValueError, match="dropout_rng"):
        model(input_ids, train=True)
    trained = model(input_ids, attention_mask=mask, train=True, dropout_rng=jax.random.PRNGKey(0)).last_hidden_state
    assert not np.allclose(trained, model(input_ids, attention_mask=mask).last_hidden_state)

"""FlaxXLMRobertaForCausalLM: the full pass against transformers' XLMRobertaForCausalLM, with and without
cross-attention, and decoding with the static-shape KV cache equal to the full pass."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest
import torch
import transformers

from tests.models.xlmr_reference import CONFIGS, max_diff, padded_batch, reference_model
from textbatch.models import FlaxXLMRobertaForCausalLM, FlaxXLMRobertaModel, XLMRobertaConfig

CONFIG = CONFIGS["h24-l2-types1"]
HIDDEN, VOCAB = CONFIG["hidden_size"], CONFIG["vocab_size"]
ENCODER_LEN = 6


def encoder_inputs(batch: int, seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    mask = np.ones((batch, ENCODER_LEN), np.int64)
    mask[-1, 4:] = 0  # the last row's encoder output is padded
    states = rng.randn(batch, ENCODER_LEN, HIDDEN).astype(np.float32)
    return {"encoder_hidden_states": states, "encoder_attention_mask": mask}


@pytest.fixture(scope="module", params=["decoder-only", "cross-attention"])
def pair(request, tmp_path_factory):
    cross = request.param == "cross-attention"
    reference = reference_model(
        CONFIG, model_class=transformers.XLMRobertaForCausalLM, is_decoder=True, add_cross_attention=cross,
        initializer_range=0.2,
    )
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    return reference, FlaxXLMRobertaForCausalLM.from_pretrained(folder), folder


def extra_inputs(model, batch: int) -> dict[str, np.ndarray]:
    return encoder_inputs(batch) if model.config.add_cross_attention else {}


def reference_outputs(reference, input_ids, mask, extra, **kwargs):
    with torch.no_grad():
        tensors = {key: torch.tensor(value) for key, value in extra.items()}
        input_ids, mask = torch.tensor(input_ids), torch.tensor(mask)
        return reference(input_ids, attention_mask=mask, use_cache=False, **tensors, **kwargs)


def test_full_pass_matches_with_padding(pair):
    reference, model, _ = pair
    input_ids, mask = padded_batch(VOCAB, rows=3, length=9)
    extra = extra_inputs(model, 3)
    expected = reference_outputs(reference, input_ids, mask, extra, output_hidden_states=True, output_attentions=True)
    ours = model(input_ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, **extra)
    assert max_diff(ours.logits, expected.logits) < 1e-4
    pairs = zip(ours.hidden_states + ours.attentions, expected.hidden_states + expected.attentions, strict=True)
    for got, want in pairs:
        assert max_diff(got, want) < 1e-4
    assert np.all(np.triu(np.asarray(ours.attentions[0][0, 0]), k=1) == 0)  # nothing attends to later tokens
    if model.config.add_cross_attention:
        assert len(ours.cross_attentions) == len(expected.cross_attentions) == model.config.num_hidden_layers
        for got, want in zip(ours.cross_attentions, expected.cross_attentions, strict=True):
            assert got.shape == (3, model.config.num_attention_heads, 9, ENCODER_LEN)
            assert max_diff(got, want) < 1e-4
        assert np.all(np.asarray(ours.cross_attentions[0])[-1, :, :, 4:] == 0)  # padded encoder positions get none
    else:
        assert ours.cross_attentions is None and ours.past_key_values is None


def test_decoding_with_the_cache_equals_the_full_pass(pair):
    """One token at a time from an empty cache, with right-padded rows: every position's logits equal the full pass
    (ours and the reference's). The decode step runs under jit, cache index and all. (A multi-token prompt goes
    through the cache in test_generation_inputs_handle_left_padding.)"""
    reference, model, _ = pair
    input_ids, mask = padded_batch(VOCAB, rows=3, length=9)
    extra = extra_inputs(model, 3)
    max_length = 12
    cache_mask = np.ones((3, max_length), np.int32)
    cache_mask[:, :9] = mask  # the cache covers padding and future positions: padding stays masked

    step = jax.jit(lambda ids, cache: model(ids, attention_mask=cache_mask, past_key_values=cache, **extra))
    cache, pieces = model.init_cache(3, max_length), []
    for position in range(9):
        out = step(input_ids[:, position : position + 1], cache)
        cache = out.past_key_values
        pieces.append(out.logits)
    decoded = np.concatenate(pieces, axis=1)

    # (the same flags as the full-pass test, so its compiled program is reused)
    full = model(input_ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, **extra).logits
    np.testing.assert_allclose(decoded, full, atol=1e-5)
    assert max_diff(decoded, reference_outputs(reference, input_ids, mask, extra).logits) < 1e-4
    first_layer = out.past_key_values["roberta"]["encoder"]["layer"]["0"]["attention"]["self"]
    assert int(first_layer["cache_index"]) == 9


def test_generation_inputs_handle_left_padding(pair):
    """prepare_inputs_for_generation / update_inputs_for_generation: positions skip the left padding, so each new
    token's logits equal the reference's full pass over the left-padded sequence."""
    reference, model, _ = pair
    rng = np.random.RandomState(7)
    sequence = rng.randint(3, VOCAB, size=(2, 8))
    sequence[:, 0] = 0
    mask = np.ones_like(sequence)
    sequence[1, :3], mask[1, :3] = 1, 0  # row 1: three pads, then <s> and its tokens
    sequence[1, 3] = 0
    extra = extra_inputs(model, 2)

    kwargs = model.prepare_inputs_for_generation(sequence[:, :5], max_length=10, attention_mask=mask[:, :5], **extra)
    out = model(sequence[:, :5], **kwargs)
    pieces = [out.logits]
    for position in range(5, 8):
        kwargs = model.update_inputs_for_generation(out, kwargs)
        out = model(sequence[:, position : position + 1], **kwargs)
        pieces.append(out.logits)
    decoded = np.concatenate(pieces, axis=1)
    expected = reference_outputs(reference, sequence, mask, extra).logits.numpy()
    real = mask.astype(bool)  # the reference's fully masked padding rows are not compared
    assert np.max(np.abs(decoded[real] - expected[real])) < 1e-4


def test_init_cache_shapes_and_mistakes(pair):
    _, model, _ = pair
    cache = model.init_cache(2, 7)
    layers = cache["roberta"]["encoder"]["layer"]
    assert sorted(layers) == [str(i) for i in range(model.config.num_hidden_layers)]
    heads = model.config.num_attention_heads
    for layer in layers.values():
        assert layer["attention"]["self"]["cached_key"].shape == (2, 7, heads, HIDDEN // heads)
        assert int(layer["attention"]["self"]["cache_index"]) == 0
    extra = extra_inputs(model, 2)
    ids = np.full((2, 3), 5)
    with pytest.raises(ValueError, match=r"attention_mask covers the whole cache: expected shape \(2, 7\)"):
        model(ids, attention_mask=np.ones((2, 3)), past_key_values=cache, **extra)
    out = model(ids, past_key_values=cache, **extra)
    out = model(ids, past_key_values=out.past_key_values, **extra)
    with pytest.raises(ValueError, match="The KV cache holds 7 positions and 6 are used"):
        model(ids, past_key_values=out.past_key_values, **extra)
    with pytest.raises(ValueError, match="more positions than the model has"):
        model.init_cache(1, model.config.max_position_embeddings)


def test_save_pretrained_loads_in_transformers(pair, tmp_path):
    reference, model, _ = pair
    model.save_pretrained(tmp_path)
    reloaded, info = transformers.XLMRobertaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    original = reference.state_dict()
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert reloaded.config.is_decoder and reloaded.config.add_cross_attention == model.config.add_cross_attention


def test_an_encoder_checkpoint_warm_starts_a_decoder_with_cross_attention(tmp_path, caplog):
    """As in the reference, the missing cross-attention weights are initialised, with a warning naming them."""
    reference_model(CONFIG, model_class=transformers.XLMRobertaForMaskedLM).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="textbatch.models.modeling"):
        model = FlaxXLMRobertaForCausalLM.from_pretrained(tmp_path, is_decoder=True, add_cross_attention=True)
    assert "roberta/encoder/layer/1/crossattention/self/query/kernel" in caplog.text
    assert "roberta/encoder/layer/1/attention/self/query/kernel" not in caplog.text
    layer = model.params["roberta"]["encoder"]["layer"]["1"]
    assert layer["crossattention"]["output"]["LayerNorm"]["scale"].shape == (HIDDEN,)


def test_decoder_mistakes_are_clear_errors():
    config = dict(CONFIG, max_position_embeddings=40)
    with pytest.raises(ValueError, match="add_cross_attention=True needs config.is_decoder=True"):
        FlaxXLMRobertaForCausalLM(XLMRobertaConfig(**config, add_cross_attention=True), _do_init=False)
    encoder_only = FlaxXLMRobertaModel(XLMRobertaConfig(**config), _do_init=False)
    with pytest.raises(ValueError, match="has no KV cache"):
        encoder_only.init_cache(1, 4)
    with pytest.raises(ValueError, match="no cross-attention layers"):
        encoder_only(np.zeros((1, 3), np.int32), params={}, **encoder_inputs(1))
    with pytest.raises(ValueError, match="past_key_values need a decoder"):
        encoder_only(np.zeros((1, 3), np.int32), params={}, past_key_values={})

"""T5 in Flax against transformers' T5 (PyTorch) with the same weights: forward, encoder, cached decoding, loading."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from tests.models.test_t5_reference import (
    build_checkpoint,
    load_reference,
    padded_batch,
)
from textbatch.models.checkpoint import CheckpointError
from textbatch.models.t5 import (
    FlaxT5EncoderModel,
    FlaxT5ForConditionalGeneration,
    FlaxT5Model,
    T5Config,
    T5DenseActDense,
    relative_position_bucket,
)

TOLERANCE = 1e-4


def max_diff(ours, theirs) -> float:
    return float(np.max(np.abs(np.asarray(ours, dtype=np.float32) - theirs.detach().numpy())))


def decoder_batch(vocab_size: int, length: int = 17, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Decoder inputs starting with the start token 0; the last row is padded from position 11."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(2, vocab_size, size=(3, length))
    ids[:, 0] = 0
    mask = np.ones_like(ids)
    mask[2, 11:] = 0
    return ids, mask


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(reference, ours, folder) per CONFIGS name, built on first use and shared by the module's tests."""
    built = {}

    def get(name):
        if name not in built:
            folder = build_checkpoint(tmp_path_factory.mktemp(name), name, lm_head_scale=2.0)
            built[name] = load_reference(folder), FlaxT5ForConditionalGeneration.from_pretrained(folder), folder
        return built[name]

    return get


@pytest.fixture(params=["v1_0", "v1_1"])
def pair(request, checkpoints):
    """v1.0 (relu, tied, scaled) and v1.1 (gated-gelu, untied, more decoder layers than encoder layers)."""
    return checkpoints(request.param)


@pytest.fixture
def v11(checkpoints):
    return checkpoints("v1_1")


def test_config_reads_both_generations():
    v10 = T5Config.from_dict({"model_type": "t5", "feed_forward_proj": "relu", "num_layers": 3})
    assert (v10.is_gated_act, v10.dense_act_fn, v10.num_decoder_layers, v10.scale_decoder_outputs) == (
        False, "relu", 3, True
    )
    flan = T5Config.from_dict({"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "num_decoder_layers": 2})
    assert (flan.is_gated_act, flan.dense_act_fn, flan.num_decoder_layers, flan.scale_decoder_outputs) == (
        True, "gelu_new", 2, False
    )
    # what transformers 5 writes for a v1.1 model: tied flag forced on, the scaling recorded separately
    saved = T5Config.from_dict({"feed_forward_proj": "gated-silu", "tie_word_embeddings": True,
                                "scale_decoder_outputs": False})
    assert (saved.dense_act_fn, saved.scale_decoder_outputs) == ("silu", False)
    aliased = T5Config(hidden_size=48, num_attention_heads=3, num_hidden_layers=4, head_dim=16)
    assert (aliased.d_model, aliased.num_heads, aliased.num_layers, aliased.d_kv) == (48, 3, 4, 16)
    assert (aliased.hidden_size, aliased.num_decoder_layers) == (48, 4) and "hidden_size" not in aliased.to_dict()
    with pytest.raises(ValueError, match="feed_forward_proj='gelu-gated'"):
        T5Config(feed_forward_proj="gelu-gated")
    with pytest.raises(ValueError, match="activation 'nope'"):
        T5Config(feed_forward_proj="gated-nope")
    with pytest.raises(ValueError, match="model_type='bert'"):
        T5Config.from_dict({"model_type": "bert"})


def test_relative_position_buckets_equal_the_reference():
    """Including distances on bucket boundaries (16, 32, 64 ...), where float32 rounding decides."""
    from transformers.models.t5.modeling_t5 import T5Attention

    relative = torch.arange(-1100, 1100)
    bucket = jax.jit(relative_position_bucket, static_argnums=(1, 2, 3))
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (10, 20), (12, 25), (7, 30), (128, 1024)):
            want = T5Attention._relative_position_bucket(relative, bidirectional, buckets, distance).numpy()
            got = np.asarray(bucket(jnp.asarray(relative.numpy(), jnp.int32), bidirectional, buckets, distance))
            np.testing.assert_array_equal(got, want, err_msg=f"{bidirectional} {buckets} {distance}")


@pytest.mark.parametrize("name", ["v1_0", "v1_1", "ul2_silu"])  # ul2_silu: gated-silu, 1 encoder + 2 decoder layers
def test_forward_with_padding_every_output_field(checkpoints, name):
    reference, model, _ = checkpoints(name)
    vocab = model.config.vocab_size
    input_ids, mask = padded_batch(vocab)
    decoder_ids, decoder_mask = decoder_batch(vocab)
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(input_ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(decoder_ids),
            decoder_attention_mask=torch.tensor(decoder_mask),
            output_hidden_states=True,
            output_attentions=True,
        )
    ours = model(
        input_ids,
        attention_mask=mask,
        decoder_input_ids=decoder_ids,
        decoder_attention_mask=decoder_mask,
        output_hidden_states=True,
        output_attentions=True,
    )
    assert float(np.std(np.asarray(ours.logits))) > 1.0  # logits spread out: the comparison is not of near-zeros
    assert max_diff(ours.logits, expected.logits) < TOLERANCE
    assert max_diff(ours.encoder_last_hidden_state, expected.encoder_last_hidden_state) < TOLERANCE
    for field in ("encoder_hidden_states", "decoder_hidden_states", "encoder_attentions", "decoder_attentions",
                  "cross_attentions"):
        got, want = getattr(ours, field), getattr(expected, field)
        assert len(got) == len(want) > 0, field
        for index, (a, b) in enumerate(zip(got, want)):
            assert max_diff(a, b) < TOLERANCE, (field, index)
    assert len(ours.encoder_hidden_states) == model.config.num_layers + 1
    assert len(ours.decoder_hidden_states) == model.config.num_decoder_layers + 1


def test_return_dict_false_gives_the_tuple_view(v11):
    _, model, _ = v11
    input_ids, mask = padded_batch(model.config.vocab_size)
    decoder_ids, _ = decoder_batch(model.config.vocab_size)
    as_tuple = model(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids, return_dict=False)
    full = model(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert len(as_tuple) == 2
    np.testing.assert_array_equal(as_tuple[0], full.logits)
    np.testing.assert_array_equal(as_tuple[1], full.encoder_last_hidden_state)
    with pytest.raises(ValueError, match="needs decoder_input_ids"):
        model(input_ids)


def test_encoder_model(pair):
    reference, _, folder = pair
    input_ids, mask = padded_batch(reference.config.vocab_size)
    encoder_reference = load_reference(folder, transformers.T5EncoderModel)
    with torch.no_grad():
        expected = encoder_reference(input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask))
    encoder = FlaxT5EncoderModel.from_pretrained(folder)  # from the full checkpoint: the decoder is skipped
    assert "decoder" not in encoder.params and "lm_head" not in encoder.params
    assert max_diff(encoder(input_ids, attention_mask=mask).last_hidden_state, expected.last_hidden_state) < TOLERANCE


def test_base_model_without_lm_head(v11):
    """FlaxT5Model shares every module with the full model, so one configuration is enough."""
    reference, _, folder = v11
    input_ids, mask = padded_batch(reference.config.vocab_size)
    decoder_ids, _ = decoder_batch(reference.config.vocab_size)
    with torch.no_grad():
        expected = load_reference(folder, transformers.T5Model)(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(decoder_ids)
        )
    got = FlaxT5Model.from_pretrained(folder)(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert max_diff(got.last_hidden_state, expected.last_hidden_state) < TOLERANCE
    assert max_diff(got.encoder_last_hidden_state, expected.encoder_last_hidden_state) < TOLERANCE


def test_cached_decoding_step_by_step_equals_the_full_forward(pair):
    """encode once, init_cache, then one token per decode call, as generation runs it."""
    reference, model, _ = pair
    vocab = model.config.vocab_size
    input_ids, mask = padded_batch(vocab)
    decoder_ids, _ = decoder_batch(vocab, length=9)
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(decoder_ids)
        ).logits.numpy()
    encoded = model.encode(input_ids, attention_mask=mask)
    cache = model.init_cache(3, 12, encoded)  # longer than used: the unused tail must stay masked
    steps = []
    for position in range(decoder_ids.shape[1]):
        out = model.decode(decoder_ids[:, position : position + 1], encoded, encoder_attention_mask=mask,
                           past_key_values=cache)
        cache = out.past_key_values
        steps.append(np.asarray(out.logits[:, 0]))
    assert np.max(np.abs(np.stack(steps, axis=1) - expected)) < TOLERANCE
    # without a cache, decode is the decoder half of the full call
    plain = model.decode(decoder_ids, encoded, encoder_attention_mask=mask)
    assert plain.past_key_values is None
    assert np.max(np.abs(np.asarray(plain.logits) - expected)) < TOLERANCE


def test_init_cache_checks_the_batch(v11):
    _, model, _ = v11
    input_ids, mask = padded_batch(model.config.vocab_size)
    with pytest.raises(ValueError, match="batch_size=2 but the encoder outputs hold 3 rows"):
        model.init_cache(2, 5, model.encode(input_ids, attention_mask=mask))


def test_save_pretrained_is_loaded_by_transformers_and_by_us(pair, tmp_path):
    reference, model, _ = pair
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "np") as handle:
        names = set(handle.keys())
    assert ("lm_head.weight" in names) is (not model.config.tie_word_embeddings)
    reloaded_reference = load_reference(tmp_path)
    reloaded = FlaxT5ForConditionalGeneration.from_pretrained(tmp_path)
    input_ids, mask = padded_batch(model.config.vocab_size)
    decoder_ids, _ = decoder_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(decoder_ids)
        ).logits
        again = reloaded_reference(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(decoder_ids)
        ).logits
    assert torch.allclose(again, expected, atol=1e-6)
    ours = reloaded(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    assert max_diff(ours, expected) < TOLERANCE


def test_a_checkpoint_with_its_own_lm_head_is_untied_even_if_the_config_says_tied(tmp_path):
    """transformers 5 writes tie_word_embeddings=true for every T5 and then keeps a distinct lm_head.weight
    untied when loading; so do we."""
    folder = build_checkpoint(tmp_path, "v1_1", lm_head_scale=2.0)
    values = json.loads((folder / "config.json").read_text())
    values.update(tie_word_embeddings=True, scale_decoder_outputs=False)
    (folder / "config.json").write_text(json.dumps(values))
    model = FlaxT5ForConditionalGeneration.from_pretrained(folder)
    assert not model.config.tie_word_embeddings and not model.config.scale_decoder_outputs
    reference = load_reference(folder)
    input_ids, mask = padded_batch(model.config.vocab_size)
    decoder_ids, _ = decoder_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(decoder_ids)
        ).logits
    assert max_diff(model(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits, expected) < TOLERANCE


def test_untied_config_without_lm_head_fails_naming_it(tmp_path):
    folder = build_checkpoint(tmp_path, "v1_0")
    values = json.loads((folder / "config.json").read_text())
    values["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(values))
    with pytest.raises(CheckpointError, match=r"lm_head\.weight"):
        FlaxT5ForConditionalGeneration.from_pretrained(folder)


def test_parameter_names_mirror_the_pytorch_checkpoint(pair):
    reference, model, _ = pair
    from flax import traverse_util

    from textbatch.models.checkpoint import pytorch_name

    ours = {pytorch_name(path) for path in traverse_util.flatten_dict(model.params)}
    theirs = {name for name, _ in reference.named_parameters()} - {
        "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"
    }
    if model.config.tie_word_embeddings:
        theirs.discard("lm_head.weight")
    assert ours == theirs


def test_feed_forward_output_projection_stays_float32_in_half_precision():
    """In bf16 / fp16 the model computes in half precision except `wo`: its inputs are cast up and its output is
    float32 (activations past 65504 would overflow fp16 there, as with FLAN-T5)."""
    config = T5Config(d_model=8, d_ff=16, feed_forward_proj="gated-gelu")
    hidden = jnp.full((1, 2, 8), 1.0, dtype=jnp.float16)
    module = T5DenseActDense(config, jnp.float16)
    params = module.init(jax.random.PRNGKey(0), hidden)["params"]
    # gelu(8) * 8 = 64 per feature fits fp16; 16 features * 64 * 100 in wo does not
    params = jax.tree_util.tree_map(lambda p: jnp.ones_like(p), params)
    params["wo"]["kernel"] = params["wo"]["kernel"] * 100.0
    out = jax.jit(module.apply)({"params": params}, hidden)
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    assert float(out[0, 0, 0]) > 65504  # what an fp16 wo would have turned into inf

    class HalfWo(nn.Module):  # the same computation with wo in fp16, to show the test can fail
        @nn.compact
        def __call__(self, x):
            up = nn.Dense(16, use_bias=False, dtype=jnp.float16, name="wi_0")(x)
            gate = nn.Dense(16, use_bias=False, dtype=jnp.float16, name="wi_1")(x)
            return nn.Dense(8, use_bias=False, dtype=jnp.float16, name="wo")(jax.nn.gelu(up) * gate)

    half = jax.jit(HalfWo().apply)({"params": params}, hidden)
    assert not bool(jnp.all(jnp.isfinite(half)))


def test_bfloat16_model_runs_close_to_float32(v11):
    _, model, folder = v11
    half = FlaxT5ForConditionalGeneration.from_pretrained(folder, dtype=jnp.bfloat16)
    kernel = half.params["encoder"]["block"]["0"]["layer"]["1"]["DenseReluDense"]["wo"]["kernel"]
    assert kernel.dtype == jnp.float32  # parameters stay float32; bf16 is the compute dtype
    input_ids, mask = padded_batch(model.config.vocab_size)
    decoder_ids, _ = decoder_batch(model.config.vocab_size)
    full = np.asarray(model(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits)
    low = half(input_ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    assert low.dtype == jnp.bfloat16
    low = np.asarray(low, dtype=np.float32)
    assert np.max(np.abs(low - full)) < 0.1 * np.max(np.abs(full))
    assert np.mean(np.argmax(low, -1) == np.argmax(full, -1)) > 0.9

"""FlaxFlaubertModel and FlaubertConfig against transformers' FlaubertModel (PyTorch), same weights and inputs.

Three odd-sized configs cover: post-norm with learned positions; pre-norm with sinusoidal positions, three
languages and ReLU; causal with two languages (and its incremental cache). transformers 5 crashes with pre_norm=True
unless given a cache it can index per layer (see flaubert_reference.IndexableCache), and cannot return attentions
then, so pre-norm attentions are checked for shape and normalisation only.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from tests.models.flaubert_reference import (
    max_diff,
    padded_ids,
    reference_model,
    run_reference,
)
from textbatch.models.flaubert import (
    FlaubertConfig,
    FlaxFlaubertModel,
    _expand_head_mask,
    sinusoidal_positions,
)

CONFIGS = {
    # layerdrop does nothing at inference (every parity test shows it); only train=True uses it.
    "postnorm-learned": dict(emb_dim=36, n_heads=6, n_layers=3, vocab_size=101, layerdrop=0.5),
    "prenorm-sinusoidal-langs-relu": dict(
        emb_dim=28, n_heads=4, n_layers=2, vocab_size=97, pre_norm=True, sinusoidal_embeddings=True, n_langs=3,
        gelu_activation=False, layer_norm_eps=1e-6,
    ),
    "causal-langs": dict(emb_dim=20, n_heads=5, n_layers=2, vocab_size=89, causal=True, n_langs=2),
}


_BUILT: dict = {}  # one reference / model / folder per config for the whole module: each model compiles per call shape


def _build(name: str, tmp_path_factory):
    if name not in _BUILT:
        reference = reference_model(CONFIGS[name])
        folder = tmp_path_factory.mktemp(name)
        reference.save_pretrained(folder)
        _BUILT[name] = reference, FlaxFlaubertModel.from_pretrained(folder), folder
    return _BUILT[name]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    return _build(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def postnorm(tmp_path_factory):
    """The tests that do not depend on the architecture's switches run on one config only."""
    return _build("postnorm-learned", tmp_path_factory)


def languages(config, shape, seed=5):
    return np.random.RandomState(seed).randint(0, config.n_langs, size=shape) if config.n_langs > 1 else None


def test_every_output_field_matches_with_padding(pair):
    reference, model, _ = pair
    cfg = model.config
    ids = padded_ids(cfg.vocab_size)
    langs = languages(cfg, ids.shape)
    expected = run_reference(
        reference, input_ids=ids, langs=langs, output_hidden_states=True, output_attentions=not cfg.pre_norm
    )
    ours = model(ids, langs=langs, output_hidden_states=True, output_attentions=True)
    assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4
    assert np.all(np.asarray(ours.last_hidden_state)[2, 3:] == 0)  # padding positions are zeroed, as the reference
    assert len(ours.hidden_states) == len(expected.hidden_states) == cfg.n_layers + 1
    for got, want in zip(ours.hidden_states, expected.hidden_states):
        assert max_diff(got, want) < 1e-4
    assert len(ours.attentions) == cfg.n_layers
    if cfg.pre_norm:
        for probs in ours.attentions:
            assert probs.shape == (3, cfg.n_heads, 11, 11)
            np.testing.assert_allclose(np.sum(probs, axis=-1), 1.0, atol=1e-5)
    else:
        for got, want in zip(ours.attentions, expected.attentions):
            assert max_diff(got, want) < 1e-4


def test_attention_mask_and_lengths_replace_the_pad_count(pair):
    """A pad id inside a row still counts towards the padding by default; attention_mask or lengths decide instead."""
    reference, model, _ = pair
    cfg = model.config
    ids = padded_ids(cfg.vocab_size, seed=2)
    ids[0, 4] = cfg.pad_token_id
    langs = languages(cfg, ids.shape)
    mask = (np.arange(11)[None, :] < np.array([[9], [11], [5]])).astype(np.int64)
    lengths = np.array([10, 6, 11])
    for kwargs in (dict(attention_mask=mask), dict(lengths=lengths)):
        expected = run_reference(reference, input_ids=ids, langs=langs, **kwargs)
        ours = model(ids, langs=langs, **kwargs)
        assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4, sorted(kwargs)
    default = run_reference(reference, input_ids=ids, langs=langs).last_hidden_state
    pad_count_lengths = np.sum(ids != cfg.pad_token_id, axis=1)
    assert max_diff(model(ids, langs=langs, lengths=pad_count_lengths).last_hidden_state, default) < 1e-4


def test_token_types_positions_and_inputs_embeds(postnorm):
    reference, model, _ = postnorm
    cfg = model.config
    ids = padded_ids(cfg.vocab_size, seed=3)
    token_type_ids = np.zeros_like(ids)
    token_type_ids[:, 6:] = 1
    position_ids = np.tile(np.arange(7, 18), (3, 1))
    expected = run_reference(reference, input_ids=ids, token_type_ids=token_type_ids, position_ids=position_ids)
    ours = model(ids, token_type_ids=token_type_ids, position_ids=position_ids)
    assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4

    embeds = reference.embeddings.weight.detach().numpy()[ids] * 0.5
    mask = (ids != cfg.pad_token_id).astype(np.int64)
    expected = run_reference(reference, inputs_embeds=embeds.astype(np.float32), attention_mask=mask)
    ours = model(inputs_embeds=embeds, attention_mask=mask)
    assert max_diff(ours.last_hidden_state, expected.last_hidden_state) < 1e-4


def test_head_mask(pair):
    """transformers 5 dropped head_mask; masking head h of a layer equals scaling that head's input columns of
    out_lin, so the reference gets the mask through its weights instead."""
    reference, model, _ = pair
    cfg = model.config
    head_mask = np.random.RandomState(3).choice([0.0, 0.5, 1.0], size=(cfg.n_layers, cfg.n_heads))
    head_mask[0, 0] = 0.0
    masked = copy.deepcopy(reference)
    head_dim = cfg.emb_dim // cfg.n_heads
    with torch.no_grad():
        for attention, layer_mask in zip(masked.attentions, head_mask):
            attention.out_lin.weight.mul_(torch.tensor(np.repeat(layer_mask, head_dim), dtype=torch.float32)[None, :])
    ids = padded_ids(cfg.vocab_size)
    langs = languages(cfg, ids.shape)
    expected = run_reference(masked, input_ids=ids, langs=langs, output_hidden_states=True)
    ours = model(ids, langs=langs, head_mask=head_mask, output_hidden_states=True)
    for got, want in zip(ours.hidden_states, expected.hidden_states):
        assert max_diff(got, want) < 1e-4


def test_one_head_mask_serves_every_layer():
    config = FlaubertConfig(emb_dim=12, n_heads=3, n_layers=4)
    per_head = np.array([1.0, 0.0, 0.5])
    np.testing.assert_array_equal(_expand_head_mask(per_head, config), np.tile(per_head, (4, 1)))
    with pytest.raises(ValueError, match="head_mask must have shape"):
        _expand_head_mask(np.ones(4), config)


def test_causal_cache_equals_the_full_pass(pair):
    """Feeding 5 tokens, then one more at a time (every call given all tokens so far, as the reference expects)
    reproduces the full pass, and the reference's own incremental attentions."""
    reference, model, _ = pair
    cfg = model.config
    ids = padded_ids(cfg.vocab_size, shape=(3, 9))
    langs = languages(cfg, ids.shape)
    if not cfg.causal:
        with pytest.raises(ValueError, match="causal"):
            model.init_cache(3, 12)
        return
    full = run_reference(reference, input_ids=ids, langs=langs).last_hidden_state.numpy()
    cache = model.init_cache(3, 12)
    pieces, after_five = [], None
    for end in (5, 6, 7, 8, 9):
        out = model(ids[:, :end], langs=langs[:, :end], cache=cache, output_attentions=True)
        pieces.append(np.asarray(out.last_hidden_state))
        cache = out.past_key_values
        after_five = cache if after_five is None else after_five
    assert max_diff(np.concatenate(pieces, axis=1), full) < 1e-4
    assert out.attentions[0].shape == (3, cfg.n_heads, 1, 9)

    reference_cache = transformers.cache_utils.EncoderDecoderCache(
        transformers.cache_utils.DynamicCache(config=reference.config),
        transformers.cache_utils.DynamicCache(config=reference.config),
    )
    run_reference(reference, input_ids=ids[:, :5], langs=langs[:, :5], cache=reference_cache)
    step = run_reference(reference, input_ids=ids, langs=langs, cache=reference_cache, output_attentions=True)
    ours = model(ids, langs=langs, cache=after_five, output_attentions=True)  # four new tokens at once
    assert max_diff(ours.last_hidden_state, step.last_hidden_state) < 1e-4
    for got, want in zip(ours.attentions, step.attentions):
        assert max_diff(got, want) < 1e-4

    with pytest.raises(ValueError, match="input_ids must hold those"):
        model(ids[:, :3], cache=cache)
    with pytest.raises(ValueError, match="room for 12 tokens"):
        model(np.tile(ids, (1, 2)), cache=model.init_cache(3, 12))


def test_sinusoidal_positions_equal_the_reference_initialisation():
    config = dict(emb_dim=10, n_heads=2, n_layers=1, vocab_size=50, sinusoidal_embeddings=True)
    reference = reference_model(config)
    table = reference.position_embeddings.weight.detach().numpy()
    np.testing.assert_allclose(sinusoidal_positions(40, 10), table, atol=1e-6)
    fresh = FlaxFlaubertModel(FlaubertConfig(max_position_embeddings=40, **config), _do_init=False)
    params = jax.jit(lambda rng: fresh.init_weights(rng, (1, 1)))(jax.random.PRNGKey(0))  # eager init is slow
    np.testing.assert_allclose(params["position_embeddings"]["embedding"], table, atol=1e-6)


def test_bfloat16_stays_close_to_float32(postnorm):
    reference, model, folder = postnorm
    bf16 = FlaxFlaubertModel.from_pretrained(folder, dtype=jnp.bfloat16)
    ids = padded_ids(model.config.vocab_size)
    langs = languages(model.config, ids.shape)
    expected = run_reference(reference, input_ids=ids, langs=langs).last_hidden_state.numpy()
    ours = bf16(ids, langs=langs).last_hidden_state
    assert ours.dtype == jnp.bfloat16
    assert max_diff(ours, expected) < 0.1


def test_return_dict_false_training_and_layerdrop(postnorm):
    _, model, _ = postnorm
    ids = padded_ids(model.config.vocab_size)
    flags = dict(output_hidden_states=True, output_attentions=True)  # the flags the parity test compiled
    as_output = model(ids, **flags)
    as_tuple = model(ids, return_dict=False, **flags)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
    np.testing.assert_array_equal(as_tuple[0], as_output.last_hidden_state)
    with pytest.raises(ValueError, match="dropout_rng"):
        model(ids, train=True)
    # Training applies dropout and layerdrop (0.5 here); hidden_states still hold one entry per layer.
    trained = model(ids, train=True, dropout_rng=jax.random.PRNGKey(0), **flags)
    assert not np.allclose(trained.last_hidden_state, as_output.last_hidden_state)
    assert len(trained.hidden_states) == model.config.n_layers + 1


def test_save_pretrained_loads_in_transformers(postnorm, tmp_path):
    reference, model, _ = postnorm
    model.save_pretrained(tmp_path)
    reloaded = transformers.FlaubertModel.from_pretrained(tmp_path).eval()
    ids = padded_ids(model.config.vocab_size)
    langs = languages(model.config, ids.shape)
    want = run_reference(reference, input_ids=ids, langs=langs).last_hidden_state
    got = run_reference(reloaded, input_ids=ids, langs=langs).last_hidden_state
    assert max_diff(got.numpy(), want) < 1e-6
    assert FlaxFlaubertModel.from_pretrained(tmp_path).config.to_dict()["architectures"] == ["FlaubertModel"]


def test_config_has_every_reference_field_with_its_default():
    ours = FlaubertConfig().to_dict()
    theirs = transformers.FlaubertConfig().to_dict()
    bookkeeping = {"_name_or_path", "transformers_version", "dtype", "chunk_size_feed_forward", "id2label", "label2id"}
    for key, value in theirs.items():
        if key not in bookkeeping:
            assert key in ours, key
            assert ours[key] == pytest.approx(value) if isinstance(value, float) else ours[key] == value, key
    seed_fields = ("pre_norm layerdrop emb_dim n_layers n_heads gelu_activation sinusoidal_embeddings causal asm "
                   "n_langs use_lang_emb max_position_embeddings layer_norm_eps bos_index eos_index pad_index "
                   "unk_index mask_index is_encoder summary_type summary_use_proj summary_activation "
                   "summary_proj_to_labels summary_first_dropout start_n_top end_n_top mask_token_id lang_id").split()
    config = FlaubertConfig()
    for field in seed_fields:
        assert hasattr(config, field), field


def test_config_aliases_and_checks():
    config = FlaubertConfig(hidden_size=48, num_attention_heads=6, num_hidden_layers=2, n_words=77, pad_index=9)
    assert (config.emb_dim, config.n_heads, config.n_layers, config.vocab_size, config.pad_token_id) == (48, 6, 2, 77, 9)
    assert config.hidden_size == 48 and config.pad_index == 9 and "hidden_size" not in config.to_dict()
    # old XLM config.json files carry both spellings: the field wins
    assert FlaubertConfig.from_dict({"bos_index": 4, "bos_token_id": 0, "model_type": "flaubert"}).bos_token_id == 0
    config.num_labels = 3
    assert config.num_labels == 3
    with pytest.raises(ValueError, match="multiple of n_heads"):
        FlaubertConfig(emb_dim=30, n_heads=4)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        config.nonsense  # noqa: B018
    with pytest.raises(NotImplementedError, match="is_encoder=False"):
        FlaxFlaubertModel(FlaubertConfig(emb_dim=8, n_heads=2, n_layers=1, vocab_size=20, is_encoder=False))
    with pytest.raises(ValueError, match="model_type='bert'"):
        FlaubertConfig.from_dict({"model_type": "bert"})

"""FlauBERT's heads against transformers' PyTorch classes: LM (tied, untied, with loss and cache), sequence
classification (every summary_type, with each loss), token classification, simple QA, multiple choice."""

import logging

import numpy as np
import pytest
import transformers

from tests.models.flaubert_reference import (
    fresh_cache,
    max_diff,
    padded_ids,
    reference_model,
    run_reference,
)
from textbatch.models.flaubert import (
    FlaxFlaubertForMultipleChoice,
    FlaxFlaubertForQuestionAnsweringSimple,
    FlaxFlaubertForSequenceClassification,
    FlaxFlaubertForTokenClassification,
    FlaxFlaubertModel,
    FlaxFlaubertWithLMHeadModel,
)

BASE = dict(emb_dim=24, n_heads=4, n_layers=2, vocab_size=83)


def load_pair(tmp_path, reference_class, ours_class, **config):
    reference = reference_model({**BASE, **config}, cls=reference_class)
    reference.save_pretrained(tmp_path)
    return reference, ours_class.from_pretrained(tmp_path)


@pytest.fixture(scope="module")
def causal_prenorm_lm(tmp_path_factory):
    """A causal pre-norm LM: covers the tied projection, the loss, and the cache with pre_norm."""
    folder = tmp_path_factory.mktemp("lm")
    return load_pair(folder, transformers.FlaubertWithLMHeadModel, FlaxFlaubertWithLMHeadModel,
                     causal=True, pre_norm=True) + (folder,)


def test_lm_logits_and_loss_ignoring_minus_100(causal_prenorm_lm):
    reference, model, _ = causal_prenorm_lm
    ids = padded_ids(BASE["vocab_size"])
    labels = np.where(np.arange(11)[None, :] % 3 == 0, -100, ids)
    expected = run_reference(reference, input_ids=ids, labels=labels, output_hidden_states=True)
    ours = model(ids, labels=labels, output_hidden_states=True)
    assert ours.logits.shape == (3, 11, BASE["vocab_size"])
    assert max_diff(ours.logits, expected.logits) < 1e-4
    assert abs(float(ours.loss) - float(expected.loss)) < 1e-4
    for got, want in zip(ours.hidden_states, expected.hidden_states):
        assert max_diff(got, want) < 1e-4
    as_tuple = model(ids, labels=labels, return_dict=False, output_hidden_states=True)
    assert float(as_tuple[0]) == float(ours.loss) and len(as_tuple) == 3  # (loss, logits, hidden_states)


def test_lm_cache_equals_the_full_pass(causal_prenorm_lm):
    reference, model, _ = causal_prenorm_lm
    ids = padded_ids(BASE["vocab_size"], shape=(3, 8))
    full = run_reference(reference, input_ids=ids).logits.numpy()
    cache, pieces = model.init_cache(3, 8), []
    for end in (3, 4, 5, 6, 7, 8):
        out = model(ids[:, :end], cache=cache)
        pieces.append(np.asarray(out.logits))
        cache = out.past_key_values
    assert max_diff(np.concatenate(pieces, axis=1), full) < 1e-4
    assert int(cache["transformer"]["attentions"]["0"]["cache_index"]) == 8
    # The reference's own incremental pass (with its pre_norm workaround) agrees too.
    reference_cache = fresh_cache(reference)
    run_reference(reference, input_ids=ids[:, :7], cache=reference_cache)
    last = run_reference(reference, input_ids=ids, cache=reference_cache).logits.numpy()
    assert max_diff(pieces[-1], last) < 1e-4
    with pytest.raises(ValueError, match="labels with a cache"):
        model(ids, labels=ids, cache=model.init_cache(3, 8))


def test_lm_saved_checkpoint_loads_in_transformers_with_tied_weights(causal_prenorm_lm, tmp_path):
    reference, model, _ = causal_prenorm_lm
    model.save_pretrained(tmp_path)
    reloaded = transformers.FlaubertWithLMHeadModel.from_pretrained(tmp_path).eval()
    ids = padded_ids(BASE["vocab_size"])
    want = run_reference(reference, input_ids=ids).logits
    assert max_diff(run_reference(reloaded, input_ids=ids).logits.numpy(), want) < 1e-5


def test_base_model_loads_from_the_lm_checkpoint(causal_prenorm_lm):
    reference, _, folder = causal_prenorm_lm
    base = FlaxFlaubertModel.from_pretrained(folder)
    ids = padded_ids(BASE["vocab_size"])
    expected = run_reference(reference.transformer, input_ids=ids, cache=fresh_cache(reference))
    assert max_diff(base(ids).last_hidden_state, expected.last_hidden_state) < 1e-4


def test_untied_lm_projection(tmp_path):
    reference, model = load_pair(
        tmp_path, transformers.FlaubertWithLMHeadModel, FlaxFlaubertWithLMHeadModel, tie_word_embeddings=False
    )
    assert "kernel" in model.params["pred_layer"]["proj"]
    ids = padded_ids(BASE["vocab_size"])
    assert max_diff(model(ids).logits, run_reference(reference, input_ids=ids).logits) < 1e-4


def test_asm_fails_at_load_with_a_clear_message(causal_prenorm_lm):
    _, _, folder = causal_prenorm_lm
    with pytest.raises(NotImplementedError, match="asm=True"):
        FlaxFlaubertWithLMHeadModel.from_pretrained(folder, asm=True)
    assert FlaxFlaubertModel.from_pretrained(folder, asm=True).config.asm  # the encoder does not care


SUMMARIES = {
    # summary options, labels maker, and what the loss is
    "first-single-label": (dict(num_labels=3), lambda rng: rng.randint(0, 3, size=3)),
    "last-tanh-regression": (dict(num_labels=1, summary_type="last", summary_activation="tanh"),
                             lambda rng: rng.randn(3).astype(np.float32)),
    "mean-to-hidden-multi-label": (dict(num_labels=3, summary_type="mean", summary_proj_to_labels=False),
                                   lambda rng: (rng.rand(3, BASE["emb_dim"]) > 0.5).astype(np.float32)),
    "cls-index-no-projection": (dict(summary_type="cls_index", summary_use_proj=False, summary_activation="gelu"),
                                None),
}


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_sequence_classification_summaries_and_losses(tmp_path, name):
    options, make_labels = SUMMARIES[name]
    reference, model = load_pair(
        tmp_path, transformers.FlaubertForSequenceClassification, FlaxFlaubertForSequenceClassification, **options
    )
    ids = padded_ids(BASE["vocab_size"])
    labels = None if make_labels is None else make_labels(np.random.RandomState(0))
    expected = run_reference(reference, input_ids=ids, labels=labels)
    ours = model(ids, labels=labels)
    assert ours.logits.shape == tuple(expected.logits.shape)
    assert max_diff(ours.logits, expected.logits) < 1e-4
    if labels is not None:
        assert abs(float(ours.loss) - float(expected.loss)) < 1e-4
    else:
        assert ours.loss is None


def test_unsupported_summary_type_is_refused():
    from textbatch.models.flaubert import FlaubertConfig

    with pytest.raises(NotImplementedError, match="summary_type='attn'"):
        FlaxFlaubertForSequenceClassification(FlaubertConfig(**BASE, summary_type="attn"), _do_init=False)


def test_token_classification(tmp_path):
    reference, model = load_pair(
        tmp_path, transformers.FlaubertForTokenClassification, FlaxFlaubertForTokenClassification, num_labels=5
    )
    ids = padded_ids(BASE["vocab_size"])
    mask = (ids != 2).astype(np.int64)
    ours = model(ids, attention_mask=mask)
    assert ours.logits.shape == (3, 11, 5)
    assert max_diff(ours.logits, run_reference(reference, input_ids=ids, attention_mask=mask).logits) < 1e-4
    with pytest.raises(ValueError, match="takes no cache"):
        model(ids, cache={})
    with pytest.raises(ValueError, match="takes no cache"):
        model.init_cache(3, 11)


def test_question_answering_simple(tmp_path):
    reference, model = load_pair(
        tmp_path, transformers.FlaubertForQuestionAnsweringSimple, FlaxFlaubertForQuestionAnsweringSimple,
        sinusoidal_embeddings=True,
    )
    ids = padded_ids(BASE["vocab_size"])
    expected = run_reference(reference, input_ids=ids)
    ours = model(ids)
    assert max_diff(ours.start_logits, expected.start_logits) < 1e-4
    assert max_diff(ours.end_logits, expected.end_logits) < 1e-4
    with pytest.raises(ValueError, match="num_labels=2"):
        FlaxFlaubertForQuestionAnsweringSimple.from_pretrained(tmp_path, num_labels=3)


def test_multiple_choice_ignores_lengths_as_the_reference(tmp_path, caplog):
    reference, model = load_pair(
        tmp_path, transformers.FlaubertForMultipleChoice, FlaxFlaubertForMultipleChoice, n_langs=2
    )
    rng = np.random.RandomState(4)
    ids = rng.randint(4, BASE["vocab_size"], size=(2, 3, 7))
    mask = np.ones_like(ids)
    mask[:, 1, 5:] = 0
    langs = rng.randint(0, 2, size=ids.shape)
    expected = run_reference(reference, input_ids=ids, attention_mask=mask, langs=langs)
    with caplog.at_level(logging.WARNING):
        ours = model(ids, attention_mask=mask, langs=langs, lengths=np.array([1, 2, 3, 4, 5, 6]))
    assert "lengths" in caplog.text
    assert ours.logits.shape == (2, 3)
    assert max_diff(ours.logits, expected.logits) < 1e-4


def test_a_head_loads_from_a_base_checkpoint(tmp_path):
    """A base-model checkpoint has no head weights: they are initialised, the transformer's are loaded."""
    reference = reference_model(BASE)
    reference.save_pretrained(tmp_path)
    classifier = FlaxFlaubertForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    base_embeddings = reference.embeddings.weight.detach().numpy()
    np.testing.assert_array_equal(classifier.params["transformer"]["embeddings"]["embedding"], base_embeddings)
    assert classifier(padded_ids(BASE["vocab_size"])).logits.shape == (3, 4)

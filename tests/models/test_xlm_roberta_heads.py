"""The XLM-RoBERTa task heads against transformers' PyTorch classes with the same weights and (padded) inputs, and
their checkpoints both ways. The causal LM has its own file (test_xlm_roberta_causal.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from tests.models.xlmr_reference import CONFIGS, max_diff, padded_batch, reference_model
from textbatch.models import (
    FlaxXLMRobertaForMaskedLM,
    FlaxXLMRobertaForMultipleChoice,
    FlaxXLMRobertaForQuestionAnswering,
    FlaxXLMRobertaForSequenceClassification,
    FlaxXLMRobertaForTokenClassification,
    FlaxXLMRobertaModel,
    XLMRobertaConfig,
)
from textbatch.models.checkpoint import CheckpointError

# Weights ten times the usual scale: logits of order 1 and peaked attention, so small mistakes show.
STRONG = dict(initializer_range=0.2)


@dataclass(frozen=True)
class Head:
    reference: type
    ours: type
    config: str
    fields: tuple[str, ...]
    overrides: dict = field(default_factory=dict)


HEADS = {
    "masked-lm": Head(transformers.XLMRobertaForMaskedLM, FlaxXLMRobertaForMaskedLM, "h32-l3-gelu", ("logits",)),
    "masked-lm-untied": Head(
        transformers.XLMRobertaForMaskedLM, FlaxXLMRobertaForMaskedLM, "h36-l1-gelunew", ("logits",),
        dict(tie_word_embeddings=False),
    ),
    "sequence-classification": Head(
        transformers.XLMRobertaForSequenceClassification, FlaxXLMRobertaForSequenceClassification, "h24-l2-types1",
        ("logits",), dict(num_labels=3, classifier_dropout=0.3),
    ),
    "token-classification": Head(
        transformers.XLMRobertaForTokenClassification, FlaxXLMRobertaForTokenClassification, "h36-l1-gelunew",
        ("logits",), dict(num_labels=5),
    ),
    "question-answering": Head(
        transformers.XLMRobertaForQuestionAnswering, FlaxXLMRobertaForQuestionAnswering, "h32-l3-gelu",
        ("start_logits", "end_logits"),
    ),
    "multiple-choice": Head(
        transformers.XLMRobertaForMultipleChoice, FlaxXLMRobertaForMultipleChoice, "h24-l2-types1", ("logits",)
    ),
}


def inputs_for(name: str, vocab_size: int) -> dict[str, np.ndarray]:
    if name != "multiple-choice":
        input_ids, mask = padded_batch(vocab_size)
        return {"input_ids": input_ids, "attention_mask": mask}
    # [batch 2, choices 3, len 7]: each choice padded differently
    input_ids, mask = padded_batch(vocab_size, rows=6, length=7)
    return {"input_ids": input_ids.reshape(2, 3, 7), "attention_mask": mask.reshape(2, 3, 7)}


def run_reference(reference, inputs, **kwargs):
    with torch.no_grad():
        return reference(**{k: torch.tensor(v) for k, v in inputs.items()}, **kwargs)


@pytest.fixture(scope="module", params=sorted(HEADS))
def head(request, tmp_path_factory):
    spec = HEADS[request.param]
    reference = reference_model(CONFIGS[spec.config], model_class=spec.reference, **STRONG, **spec.overrides)
    folder = tmp_path_factory.mktemp(request.param)
    reference.save_pretrained(folder)
    return request.param, spec, reference, spec.ours.from_pretrained(folder)


def test_every_output_field_matches_with_padding(head):
    name, spec, reference, model = head
    inputs = inputs_for(name, model.config.vocab_size)
    expected = run_reference(reference, inputs, output_hidden_states=True, output_attentions=True)
    ours = model(**inputs, output_hidden_states=True, output_attentions=True)
    for field_name in spec.fields:
        assert ours[field_name].shape == tuple(expected[field_name].shape)
        assert max_diff(ours[field_name], expected[field_name]) < 1e-4, field_name
    assert len(ours.hidden_states) == len(expected.hidden_states) == model.config.num_hidden_layers + 1
    pairs = zip(ours.hidden_states + ours.attentions, expected.hidden_states + expected.attentions, strict=True)
    for got, want in pairs:
        assert max_diff(got, want) < 1e-4
    assert np.abs(np.asarray(ours[spec.fields[0]])).max() > 0.25  # the strong weights did give sizeable logits

    as_tuple = model(**inputs, output_hidden_states=True, output_attentions=True, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(spec.fields) + 2
    for got, want in zip(as_tuple, [ours[f] for f in spec.fields] + [ours.hidden_states, ours.attentions], strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_save_pretrained_loads_in_transformers_without_missing_weights(head, tmp_path):
    name, spec, reference, model = head
    model.save_pretrained(tmp_path)
    reloaded, info = spec.reference.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    original = reference.state_dict()
    for key, value in reloaded.state_dict().items():  # every weight comes back bit for bit (ties included)
        assert torch.equal(value, original[key]), key
    inputs = inputs_for(name, model.config.vocab_size)
    expected, got = run_reference(reference, inputs), run_reference(reloaded.eval(), inputs)
    for field_name in spec.fields:
        assert max_diff(got[field_name].numpy(), expected[field_name]) < 1e-5
    assert XLMRobertaConfig.from_pretrained(tmp_path).architectures == [spec.ours.__name__.removeprefix("Flax")]
    # A tied LM decoder is the word-embedding matrix: neither in the Flax tree nor in the saved file.
    with safe_open(tmp_path / "model.safetensors", "np") as saved:
        has_decoder = any(key.startswith("lm_head.decoder") for key in saved.keys())  # noqa: SIM118 (not a dict)
    assert has_decoder == ("decoder" in model.params.get("lm_head", {})) == (name == "masked-lm-untied")


def test_base_checkpoint_loads_into_a_head_which_is_initialised_with_a_warning(tmp_path, caplog):
    reference = reference_model(CONFIGS["h24-l2-types1"])
    reference.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="textbatch.models.modeling"):
        model = FlaxXLMRobertaForTokenClassification.from_pretrained(tmp_path, num_labels=4)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "newly initialised" in warned and "classifier/kernel" in warned and "classifier/bias" in warned
    assert "roberta/" not in warned

    kernel, bias = model.params["classifier"]["kernel"], model.params["classifier"]["bias"]
    assert kernel.shape == (24, 4) and not np.any(bias)  # the reference's init: normal(initializer_range), zeros
    assert 0.01 < float(np.std(kernel)) < 0.03
    input_ids, mask = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        hidden = reference(torch.tensor(input_ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    np.testing.assert_allclose(model(input_ids, attention_mask=mask).logits, hidden @ kernel + bias, atol=1e-5)


def test_head_checkpoint_without_pooler_loads_into_the_base_model(tmp_path, caplog):
    reference = reference_model(CONFIGS["h24-l2-types1"], model_class=transformers.XLMRobertaForTokenClassification)
    reference.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="textbatch.models.modeling"):
        model = FlaxXLMRobertaModel.from_pretrained(tmp_path)
    assert "pooler/dense/kernel" in caplog.text
    input_ids, mask = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        expected = reference.roberta(torch.tensor(input_ids), attention_mask=torch.tensor(mask)).last_hidden_state
    assert max_diff(model(input_ids, attention_mask=mask).last_hidden_state, expected) < 1e-4


def test_a_missing_base_tensor_is_still_an_error(tmp_path):
    reference = reference_model(CONFIGS["h24-l2-types1"], model_class=transformers.XLMRobertaForTokenClassification)
    reference.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["roberta.encoder.layer.1.output.dense.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"roberta\.encoder\.layer\.1\.output\.dense\.weight"):
        FlaxXLMRobertaForTokenClassification.from_pretrained(tmp_path)


LOSS_CASES = [
    (None, np.array([2, 0, -100])),  # integer labels: single-label, -100 ignored
    (None, np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], np.float32)),  # float labels: multi-label
    ("regression", np.array([[0.1, 2.0, -1.0], [0.0, 0.5, 0.3], [1.0, 1.0, 1.0]], np.float32)),
    ("single_label_classification", np.array([1, 0, 2])),
    ("multi_label_classification", np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], np.float32)),
]


@pytest.mark.parametrize(
    "num_labels, cases", [(1, [(None, np.array([0.5, -1.25, 2.0], np.float32))]), (3, LOSS_CASES)], ids=["1", "3"]
)
def test_sequence_classification_loss_follows_the_problem_type(tmp_path, num_labels, cases):
    """One label is a regression; otherwise config.problem_type, or unset the labels' dtype, picks the loss."""
    reference = reference_model(
        CONFIGS["h36-l1-gelunew"], model_class=transformers.XLMRobertaForSequenceClassification,
        num_labels=num_labels, **STRONG,
    )
    reference.save_pretrained(tmp_path)
    model = FlaxXLMRobertaForSequenceClassification.from_pretrained(tmp_path)
    inputs = inputs_for("sequence-classification", model.config.vocab_size)
    assert model(**inputs).loss is None
    for problem_type, labels in cases:
        # The reference writes the problem type it inferred into its config; start each case from the same one.
        reference.config.problem_type = model.config.problem_type = problem_type
        expected = run_reference(reference, inputs, labels=torch.tensor(labels))
        ours = model(**inputs, labels=labels)
        assert ours.logits.shape == (3, num_labels)
        assert abs(float(ours.loss) - float(expected.loss)) < 1e-5, problem_type
        as_tuple = model(**inputs, labels=labels, return_dict=False)
        assert float(as_tuple[0]) == float(ours.loss)  # loss first, as in the reference
    assert model.config.problem_type == cases[-1][0]  # ours only reads it


def test_config_mistakes_are_clear_errors():
    config = dict(CONFIGS["h32-l3-gelu"])
    with pytest.raises(ValueError, match="problem_type"):
        FlaxXLMRobertaForSequenceClassification(XLMRobertaConfig(**config, problem_type="ranking"), _do_init=False)
    with pytest.raises(ValueError, match="num_labels == 2"):
        FlaxXLMRobertaForQuestionAnswering(XLMRobertaConfig(**config, num_labels=3), _do_init=False)
    model = FlaxXLMRobertaForTokenClassification(XLMRobertaConfig(**config), _do_init=False)
    with pytest.raises(TypeError, match="takes no encoder_hidden_states"):
        model(np.zeros((1, 4), np.int32), encoder_hidden_states=np.zeros((1, 2, 32), np.float32), params={})

"""FlaxAutoModel* and AutoTokenizer: the class comes from config.json's model_type (or tokenizer_config.json's
tokenizer_class), arguments pass through, and anything unsupported is a clear error.

T5 and FlauBERT classes are stood in for by stub modules, so these tests do not depend on those families' state."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import transformers

import textbatch
from tests.models.xlmr_reference import CONFIGS, reference_model
from textbatch.models import (
    FlaxAutoModel,
    FlaxAutoModelForCausalLM,
    FlaxAutoModelForMaskedLM,
    FlaxAutoModelForMultipleChoice,
    FlaxAutoModelForQuestionAnswering,
    FlaxAutoModelForSeq2SeqLM,
    FlaxAutoModelForSequenceClassification,
    FlaxAutoModelForTokenClassification,
    FlaxXLMRobertaForCausalLM,
    FlaxXLMRobertaForMaskedLM,
    FlaxXLMRobertaForMultipleChoice,
    FlaxXLMRobertaForQuestionAnswering,
    FlaxXLMRobertaForSequenceClassification,
    FlaxXLMRobertaForTokenClassification,
    FlaxXLMRobertaModel,
    XLMRobertaConfig,
)
from textbatch.models.auto import MODEL_CLASSES, import_class
from textbatch.models.checkpoint import CheckpointError
from textbatch.tokenizers import AutoTokenizer, XLMRobertaTokenizer
from textbatch.tokenizers.auto import TOKENIZER_CLASSES

TINY_ASSET = Path(textbatch.__file__).parent / "assets" / "xlm-roberta-tiny"

XLMR_CASES = {
    "base": (FlaxAutoModel, transformers.XLMRobertaModel, FlaxXLMRobertaModel, {}),
    "masked-lm": (FlaxAutoModelForMaskedLM, transformers.XLMRobertaForMaskedLM, FlaxXLMRobertaForMaskedLM, {}),
    "causal-lm": (
        FlaxAutoModelForCausalLM, transformers.XLMRobertaForCausalLM, FlaxXLMRobertaForCausalLM, {"is_decoder": True}
    ),
    "sequence-classification": (
        FlaxAutoModelForSequenceClassification, transformers.XLMRobertaForSequenceClassification,
        FlaxXLMRobertaForSequenceClassification, {"num_labels": 3},
    ),
    "multiple-choice": (
        FlaxAutoModelForMultipleChoice, transformers.XLMRobertaForMultipleChoice, FlaxXLMRobertaForMultipleChoice, {}
    ),
    "token-classification": (
        FlaxAutoModelForTokenClassification, transformers.XLMRobertaForTokenClassification,
        FlaxXLMRobertaForTokenClassification, {"num_labels": 5},
    ),
    "question-answering": (
        FlaxAutoModelForQuestionAnswering, transformers.XLMRobertaForQuestionAnswering,
        FlaxXLMRobertaForQuestionAnswering, {},
    ),
}


def write_config(folder: Path, **values) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(values))
    return folder


def stub_module(monkeypatch, name: str, *class_names: str) -> dict[str, list]:
    """Put a module `name` in sys.modules whose classes record their from_pretrained calls."""
    calls: dict[str, list] = {}
    module = types.ModuleType(name)
    for class_name in class_names:
        calls[class_name] = []

        def from_pretrained(cls, path, *args, _log=calls[class_name], **kwargs):
            _log.append((path, args, kwargs))
            return cls()

        def init(self, config=None, **kwargs):
            self.config, self.kwargs = config, kwargs

        methods = {"from_pretrained": classmethod(from_pretrained), "__init__": init}
        setattr(module, class_name, type(class_name, (), methods))
    monkeypatch.setitem(sys.modules, name, module)
    return calls


@pytest.mark.parametrize("task", sorted(XLMR_CASES))
def test_xlm_roberta_checkpoints_load_as_their_head(task, tmp_path):
    auto_class, reference_class, expected_class, overrides = XLMR_CASES[task]
    reference = reference_model(CONFIGS["h24-l2-types1"], model_class=reference_class, **overrides)
    reference.save_pretrained(tmp_path)
    model = auto_class.from_pretrained(tmp_path, dtype=jnp.bfloat16)  # arguments reach the class
    assert type(model) is expected_class and model.dtype == jnp.bfloat16
    assert model.config.num_labels == reference.config.num_labels
    embeddings = model.params.get("roberta", model.params)["embeddings"]["word_embeddings"]["embedding"]
    np.testing.assert_array_equal(embeddings, reference.base_model.embeddings.word_embeddings.weight.detach().numpy())


def test_config_overrides_and_a_config_object_pass_through(tmp_path):
    reference_model(CONFIGS["h24-l2-types1"]).save_pretrained(tmp_path / "base")
    labels = {0: "O", 1: "B-PER", 2: "I-PER"}
    model = FlaxAutoModelForTokenClassification.from_pretrained(tmp_path / "base", id2label=labels)
    assert model.config.id2label == labels
    assert model.params["classifier"]["kernel"].shape == (24, 3)  # a new head for these labels, initialised
    config = XLMRobertaConfig.from_pretrained(tmp_path / "base", num_labels=4)
    model = FlaxAutoModelForTokenClassification.from_pretrained(tmp_path / "base", config=config)
    assert model.config is config and model.params["classifier"]["kernel"].shape == (24, 4)

    # A trained head of another size is not silently replaced (transformers refuses it too).
    head = reference_model(CONFIGS["h24-l2-types1"], model_class=transformers.XLMRobertaForTokenClassification)
    head.save_pretrained(tmp_path / "head")
    with pytest.raises(CheckpointError, match=r"classifier\.weight .* has shape \[2, 24\]"):
        FlaxAutoModelForTokenClassification.from_pretrained(tmp_path / "head", num_labels=3)


def test_every_table_entry_imports_and_reads_its_model_type():
    """The lazy tables name real classes, each reading checkpoints of the model type it is listed under."""
    for model_type, classes in MODEL_CLASSES.items():
        for spec in classes.values():
            model_class = import_class(spec)
            assert model_class.config_class.model_type == model_type, spec
            assert callable(model_class.from_pretrained)
    for spec in TOKENIZER_CLASSES.values():
        assert callable(import_class(spec).from_pretrained), spec


def test_t5_and_flaubert_resolve_to_their_classes(monkeypatch, tmp_path):
    t5 = stub_module(monkeypatch, "textbatch.models.t5", "FlaxT5Model", "FlaxT5ForConditionalGeneration")
    flaubert = stub_module(
        monkeypatch, "textbatch.models.flaubert",
        "FlaxFlaubertModel", "FlaxFlaubertWithLMHeadModel", "FlaxFlaubertForSequenceClassification",
        "FlaxFlaubertForTokenClassification", "FlaxFlaubertForQuestionAnsweringSimple", "FlaxFlaubertForMultipleChoice",
    )
    t5_folder = write_config(tmp_path / "t5", model_type="t5")
    flaubert_folder = write_config(tmp_path / "flaubert", model_type="flaubert")

    FlaxAutoModelForSeq2SeqLM.from_pretrained(t5_folder, dtype=jnp.bfloat16)
    FlaxAutoModel.from_pretrained(str(t5_folder), revision="main")
    assert t5["FlaxT5ForConditionalGeneration"] == [(t5_folder, (), {"dtype": jnp.bfloat16})]
    assert t5["FlaxT5Model"] == [(str(t5_folder), (), {"revision": "main"})]

    for auto_class, class_name in [
        (FlaxAutoModel, "FlaxFlaubertModel"),
        (FlaxAutoModelForMaskedLM, "FlaxFlaubertWithLMHeadModel"),
        (FlaxAutoModelForSequenceClassification, "FlaxFlaubertForSequenceClassification"),
        (FlaxAutoModelForTokenClassification, "FlaxFlaubertForTokenClassification"),
        (FlaxAutoModelForQuestionAnswering, "FlaxFlaubertForQuestionAnsweringSimple"),
        (FlaxAutoModelForMultipleChoice, "FlaxFlaubertForMultipleChoice"),
    ]:
        assert type(auto_class.from_pretrained(flaubert_folder)).__name__ == class_name
        assert len(flaubert[class_name]) == 1


def test_a_class_that_cannot_be_imported_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "textbatch.models.t5", None)  # importing it now fails
    folder = write_config(tmp_path, model_type="t5")
    with pytest.raises(ImportError, match=r"model_type 't5' to textbatch\.models\.t5:FlaxT5ForConditionalGeneration"):
        FlaxAutoModelForSeq2SeqLM.from_pretrained(folder)
    stub_module(monkeypatch, "textbatch.models.t5", "FlaxT5Model")
    with pytest.raises(ImportError, match="does not define it"):
        FlaxAutoModelForSeq2SeqLM.from_pretrained(folder)


def test_unsupported_model_types_and_heads_are_clear_errors(tmp_path):
    bert = write_config(tmp_path / "bert", model_type="bert")
    supported = "supported model types: flaubert, t5, xlm-roberta"
    with pytest.raises(ValueError, match=rf"FlaxAutoModel: model_type 'bert' .* {supported}"):
        FlaxAutoModel.from_pretrained(bert)
    xlmr = write_config(tmp_path / "xlmr", model_type="xlm-roberta")
    with pytest.raises(ValueError) as error:
        FlaxAutoModelForSeq2SeqLM.from_pretrained(xlmr)
    message = str(error.value)
    assert "FlaxAutoModelForSeq2SeqLM does not support model_type 'xlm-roberta'" in message
    assert "no seq2seq-lm head" in message and "supports t5" in message and "FlaxAutoModelForCausalLM" in message
    t5 = write_config(tmp_path / "t5", model_type="t5")
    alternatives = "for 't5' use FlaxAutoModel, FlaxAutoModelForSeq2SeqLM"
    with pytest.raises(ValueError, match=f"FlaxAutoModelForCausalLM supports xlm-roberta; {alternatives}"):
        FlaxAutoModelForCausalLM.from_pretrained(t5)
    untyped = write_config(tmp_path / "untyped", hidden_size=8)
    with pytest.raises(ValueError, match="names no model_type"):
        FlaxAutoModel.from_pretrained(untyped)
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        FlaxAutoModel.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="use FlaxAutoModel.from_pretrained"):
        FlaxAutoModel()


def test_from_config_builds_a_fresh_model():
    config = XLMRobertaConfig(**CONFIGS["h24-l2-types1"], num_labels=3)
    model = FlaxAutoModelForSequenceClassification.from_config(config, _do_init=False)
    assert type(model) is FlaxXLMRobertaForSequenceClassification and model.config is config
    assert model.params_shape_tree["classifier"]["out_proj"]["kernel"].shape == (24, 3)
    with pytest.raises(ValueError, match="needs a config with a model_type"):
        FlaxAutoModel.from_config({"hidden_size": 8})


# --- AutoTokenizer -----------------------------------------------------------------------------------------------


def test_auto_tokenizer_reads_config_model_type():
    tokenizer = AutoTokenizer.from_pretrained(TINY_ASSET)
    assert type(tokenizer) is XLMRobertaTokenizer
    direct = XLMRobertaTokenizer.from_pretrained(TINY_ASSET)
    text = "Grüße aus Köln, 東京 too <mask>"
    assert tokenizer(text)["input_ids"] == direct(text)["input_ids"]


def test_auto_tokenizer_falls_back_to_tokenizer_class(tmp_path, monkeypatch):
    folder = tmp_path / "no-config"
    shutil.copytree(TINY_ASSET, folder)
    (folder / "config.json").unlink()
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["tokenizer_class"] = "XLMRobertaTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    assert type(AutoTokenizer.from_pretrained(folder, model_max_length=77)) is XLMRobertaTokenizer

    # A model type without a tokenizer here (mt5) but a known tokenizer class: the class decides.
    calls = stub_module(monkeypatch, "textbatch.tokenizers.t5", "T5Tokenizer")
    mt5 = write_config(tmp_path / "mt5", model_type="mt5")
    (mt5 / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5TokenizerFast"}))
    AutoTokenizer.from_pretrained(mt5, legacy=False)
    assert calls["T5Tokenizer"] == [(mt5, (), {"legacy": False})]

    flaubert = stub_module(monkeypatch, "textbatch.tokenizers.flaubert", "FlaubertTokenizer")
    AutoTokenizer.from_pretrained(write_config(tmp_path / "flaubert", model_type="flaubert"))
    assert len(flaubert["FlaubertTokenizer"]) == 1


def test_auto_tokenizer_errors_say_what_was_found(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="neither config.json nor tokenizer_config.json exists"):
        AutoTokenizer.from_pretrained(tmp_path)
    bert = write_config(tmp_path / "bert", model_type="bert")
    (bert / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    found = r"says 'bert'.*says 'BertTokenizer'"
    with pytest.raises(ValueError, match=rf"{found}.*Supported model types: flaubert, t5, xlm-roberta"):
        AutoTokenizer.from_pretrained(bert)
    monkeypatch.setitem(sys.modules, "textbatch.tokenizers.t5", None)
    with pytest.raises(ImportError, match=r"AutoTokenizer maps 't5' .* to textbatch\.tokenizers\.t5:T5Tokenizer"):
        AutoTokenizer.from_pretrained(write_config(tmp_path / "t5", model_type="t5"))

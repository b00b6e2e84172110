"""Auto classes: config.json's `model_type` picks the family's class for a task from one table of import strings.

The table is lazy: importing this module imports no family, and a class is imported only when a checkpoint asks for
it, so a family that is missing or broken fails only for its own checkpoints, with an error that names it.

    model = FlaxAutoModelForTokenClassification.from_pretrained("path/or/url/or/hub-id")
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from textbatch.storage import Folder

# model_type -> task -> "module:Class". Tasks are the Auto classes' (see AUTO_CLASS_TASKS).
MODEL_CLASSES: dict[str, dict[str, str]] = {
    "xlm-roberta": {
        "base": "textbatch.models.xlm_roberta:FlaxXLMRobertaModel",
        "masked-lm": "textbatch.models.xlm_roberta_heads:FlaxXLMRobertaForMaskedLM",
        "causal-lm": "textbatch.models.xlm_roberta_heads:FlaxXLMRobertaForCausalLM",
        "sequence-classification": "textbatch.models.xlm_roberta_heads:FlaxXLMRobertaForSequenceClassification",
        "multiple-choice": "textbatch.models.xlm_roberta_heads:FlaxXLMRobertaForMultipleChoice",
        "token-classification": "textbatch.models.xlm_roberta_heads:FlaxXLMRobertaForTokenClassification",
        "question-answering": "textbatch.models.xlm_roberta_heads:FlaxXLMRobertaForQuestionAnswering",
    },
    "t5": {
        "base": "textbatch.models.t5:FlaxT5Model",
        "seq2seq-lm": "textbatch.models.t5:FlaxT5ForConditionalGeneration",
    },
    "flaubert": {
        "base": "textbatch.models.flaubert:FlaxFlaubertModel",
        "masked-lm": "textbatch.models.flaubert:FlaxFlaubertWithLMHeadModel",
        "sequence-classification": "textbatch.models.flaubert:FlaxFlaubertForSequenceClassification",
        "multiple-choice": "textbatch.models.flaubert:FlaxFlaubertForMultipleChoice",
        "token-classification": "textbatch.models.flaubert:FlaxFlaubertForTokenClassification",
        "question-answering": "textbatch.models.flaubert:FlaxFlaubertForQuestionAnsweringSimple",
    },
}

AUTO_CLASS_TASKS: dict[str, str] = {
    "FlaxAutoModel": "base",
    "FlaxAutoModelForMaskedLM": "masked-lm",
    "FlaxAutoModelForCausalLM": "causal-lm",
    "FlaxAutoModelForSeq2SeqLM": "seq2seq-lm",
    "FlaxAutoModelForSequenceClassification": "sequence-classification",
    "FlaxAutoModelForMultipleChoice": "multiple-choice",
    "FlaxAutoModelForTokenClassification": "token-classification",
    "FlaxAutoModelForQuestionAnswering": "question-answering",
}


def import_class(spec: str) -> type:
    """"package.module:Class" -> the class, or an ImportError that names both and says why."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"{class_name} cannot be imported: module {module_name} failed to import ({error})"
        ) from error
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"{class_name} cannot be imported: module {module_name} does not define it") from None


def model_class_spec(model_type: str, auto_name: str, where: str = "") -> str:
    """The import string of `auto_name`'s class for `model_type`, or a ValueError saying what is supported."""
    task = AUTO_CLASS_TASKS[auto_name]
    source = f" (from {where})" if where else ""
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"{auto_name}: model_type {model_type!r}{source} is not supported; "
            f"supported model types: {', '.join(sorted(MODEL_CLASSES))}"
        )
    classes = MODEL_CLASSES[model_type]
    if task not in classes:
        with_task = sorted(kind for kind, tasks in MODEL_CLASSES.items() if task in tasks)
        usable = [name for name, name_task in AUTO_CLASS_TASKS.items() if name_task in classes]
        raise ValueError(
            f"{auto_name} does not support model_type {model_type!r}{source}: there is no {task} head for it. "
            f"{auto_name} supports {', '.join(with_task)}; for {model_type!r} use {', '.join(usable)}"
        )
    return classes[task]


class _FlaxAutoModelBase:
    """Not instantiated: `from_pretrained` / `from_config` return an instance of the family's class."""

    def __init__(self, *args: Any, **kwargs: Any):
        name = type(self).__name__
        raise TypeError(f"{name} is not instantiated: use {name}.from_pretrained(path) or {name}.from_config(config)")

    @classmethod
    def model_class(cls, model_type: str, where: str = "") -> type:
        spec = model_class_spec(model_type, cls.__name__, where)
        try:
            return import_class(spec)
        except ImportError as error:
            raise ImportError(f"{cls.__name__} maps model_type {model_type!r} to {spec}, but {error}") from error

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        revision: str | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ):
        """Reads config.json's model_type (or that of `config=`) and calls that class's `from_pretrained` with the
        same arguments."""
        config = kwargs.get("config")
        if config is not None:
            model_type, where = getattr(config, "model_type", None), f"the {type(config).__name__} passed as config"
        else:
            folder = Folder.open(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir)
            where = folder.location("config.json")
            if not folder.exists("config.json"):
                raise FileNotFoundError(f"{where} does not exist: {cls.__name__} reads the model type from it")
            model_type = folder.read_json("config.json").get("model_type")
        if not model_type:
            raise ValueError(
                f"{where} names no model_type, so {cls.__name__} cannot pick a class; "
                f"supported model types: {', '.join(sorted(MODEL_CLASSES))}"
            )
        model_class = cls.model_class(model_type, where)
        hub = {key: value for key, value in (("revision", revision), ("cache_dir", cache_dir)) if value is not None}
        return model_class.from_pretrained(pretrained_model_name_or_path, *args, **hub, **kwargs)

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any):
        """A freshly initialised model of the class for `config.model_type` (keyword arguments go to its
        constructor: dtype, seed, input_shape, _do_init)."""
        model_type = getattr(config, "model_type", None)
        if not model_type:
            raise ValueError(
                f"{cls.__name__}.from_config needs a config with a model_type, got {type(config).__name__}"
            )
        return cls.model_class(model_type, f"the {type(config).__name__} passed")(config, **kwargs)


class FlaxAutoModel(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForMaskedLM(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForCausalLM(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForSeq2SeqLM(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForSequenceClassification(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForMultipleChoice(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForTokenClassification(_FlaxAutoModelBase):
    pass


class FlaxAutoModelForQuestionAnswering(_FlaxAutoModelBase):
    pass

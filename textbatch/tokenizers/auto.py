"""AutoTokenizer: the family's tokenizer class from config.json's `model_type`, or from tokenizer_config.json's
`tokenizer_class` when there is no config.json (or its model type has no tokenizer here, e.g. a T5 variant).

Lazy like the model Auto classes: a family's tokenizer module is imported only when a folder asks for it. This module
does not import textbatch.models, so tokenizing actors never load JAX.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from textbatch.storage import Folder

# model_type -> "module:Class"
TOKENIZER_CLASSES: dict[str, str] = {
    "xlm-roberta": "textbatch.tokenizers.xlm_roberta:XLMRobertaTokenizer",
    "t5": "textbatch.tokenizers.t5:T5Tokenizer",
    "flaubert": "textbatch.tokenizers.flaubert:FlaubertTokenizer",
}
# tokenizer_config.json's tokenizer_class (without a "Fast" suffix) -> model_type
TOKENIZER_CLASS_NAMES: dict[str, str] = {
    "XLMRobertaTokenizer": "xlm-roberta",
    "T5Tokenizer": "t5",
    "FlaubertTokenizer": "flaubert",
}

CONFIG_FILE = "config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


def _import_class(spec: str) -> type:
    module_name, _, class_name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except ImportError as error:
        raise ImportError(
            f"{class_name} cannot be imported: module {module_name} failed to import ({error})"
        ) from error
    except AttributeError:
        raise ImportError(f"{class_name} cannot be imported: module {module_name} does not define it") from None


def tokenizer_model_type(folder: Folder) -> tuple[str, str]:
    """(model_type, the file and field it came from) for the tokenizer in `folder`, or a ValueError saying why not."""
    seen = []
    if folder.exists(CONFIG_FILE):
        model_type = folder.read_json(CONFIG_FILE).get("model_type")
        where = f"{folder.location(CONFIG_FILE)} (model_type)"
        if model_type in TOKENIZER_CLASSES:
            return model_type, where
        seen.append(f"{where} says {model_type!r}")
    if folder.exists(TOKENIZER_CONFIG_FILE):
        class_name = folder.read_json(TOKENIZER_CONFIG_FILE).get("tokenizer_class")
        where = f"{folder.location(TOKENIZER_CONFIG_FILE)} (tokenizer_class)"
        model_type = TOKENIZER_CLASS_NAMES.get((class_name or "").removesuffix("Fast"))
        if model_type is not None:
            return model_type, where
        seen.append(f"{where} says {class_name!r}")
    found = "; ".join(seen) if seen else f"neither {CONFIG_FILE} nor {TOKENIZER_CONFIG_FILE} exists"
    raise ValueError(
        f"AutoTokenizer cannot tell which tokenizer {folder.location()} needs: {found}. Supported model types: "
        f"{', '.join(sorted(TOKENIZER_CLASSES))}; tokenizer classes: {', '.join(sorted(TOKENIZER_CLASS_NAMES))}"
    )


class AutoTokenizer:
    """Not instantiated: `AutoTokenizer.from_pretrained(path)` returns the family's tokenizer."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise TypeError("AutoTokenizer is not instantiated: use AutoTokenizer.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, path_or_url: str | os.PathLike, **kwargs: Any):
        """Keyword arguments go to the family's `from_pretrained` (they override what the files say)."""
        folder = Folder.open(path_or_url)
        model_type, where = tokenizer_model_type(folder)
        spec = TOKENIZER_CLASSES[model_type]
        try:
            tokenizer_class = _import_class(spec)
        except ImportError as error:
            raise ImportError(f"AutoTokenizer maps {model_type!r} (from {where}) to {spec}, but {error}") from error
        return tokenizer_class.from_pretrained(path_or_url, **kwargs)

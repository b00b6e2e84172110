"""Which checkpoints the embedding step can embed with, and how it reads their config before loading any weight.

An embedding needs an encoder that gives one state per token of its input (`FlaxAutoModel` of the family). XLM-R
and FlauBERT qualify. T5's `FlaxAutoModel` is the whole encoder-decoder, which needs decoder inputs and gives decoder
states, so a T5 checkpoint is refused here, before its weights are read, with a message naming what is supported.
`check_runnable` also serves the other jobs' drivers: a config no class here can be built from (FlauBERT with
is_encoder=False) is refused before any actor starts.

How long an input may be is the family's business (`encoder_inputs.usable_length`: XLM-R's positions start after the
pad id, FlauBERT's at 0); the pad id and the special tokens come from the checkpoint's config and tokenizer, so the
step itself needs nothing family-specific.
"""

from __future__ import annotations

from typing import Any

from textbatch.redact import redact

ENCODER_TYPES = ("flaubert", "xlm-roberta")


def check_encoder_type(model_type: str | None, where: str) -> None:
    """A ValueError naming the supported model types unless `model_type` is one of them."""
    if model_type in ENCODER_TYPES:
        return
    hint = " (its FlaxAutoModel is the encoder-decoder, not an encoder)" if model_type == "t5" else ""
    raise ValueError(
        f"the embedding job cannot embed with {where}: its model_type is {model_type!r}{hint}; "
        f"supported model types: {', '.join(ENCODER_TYPES)}"
    )


def check_runnable(config: Any, where: str) -> None:
    """A ValueError, on the driver, for a config no textbatch class can be built from (instead of every model actor
    failing as it starts): FlauBERT with is_encoder=False, a decoder the reference does not implement either."""
    if getattr(config, "model_type", None) == "flaubert" and not config.is_encoder:
        raise ValueError(
            f"{where} is a FlauBERT with is_encoder=False (a decoder with cross-attention), which neither transformers "
            "nor textbatch implements; the jobs run FlauBERT encoders (is_encoder=True)"
        )


def encoder_config(location: str) -> Any:
    """The config of the encoder checkpoint at `location` (folder, URL or hub id), checked to be one the embedding
    step supports; reads config.json only."""
    from textbatch.models import FlaxAutoModel
    from textbatch.storage import Folder

    folder = Folder.open(location)
    where = folder.location("config.json")
    if not folder.exists("config.json"):
        raise FileNotFoundError(f"{where} does not exist: is {redact(location)} a checkpoint folder?")
    values = folder.read_json("config.json")
    model_type = values.get("model_type")
    check_encoder_type(model_type, where)
    config = FlaxAutoModel.model_class(model_type, where).config_class.from_dict(values)
    check_runnable(config, where)
    return config

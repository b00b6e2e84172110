"""Model outputs: pytrees with named fields that also index like tuples, as Hugging Face outputs do.

`outputs.last_hidden_state`, `outputs["last_hidden_state"]` and `outputs[0]` all work, and iterating yields field names; fields that are None are left
out of the tuple view, so `return_dict=False` returns `outputs.to_tuple()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct


class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        # Like Hugging Face outputs (ordered dicts), iteration yields the names of the fields that are set.
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.to_tuple())


@flax.struct.dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: tuple | None = None
    past_key_values: dict | None = None
    attentions: tuple | None = None
    cross_attentions: tuple | None = None


@flax.struct.dataclass
class MaskedLMOutput(ModelOutput):
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class CausalLMOutputWithCrossAttentions(ModelOutput):
    logits: Any = None
    past_key_values: dict | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    cross_attentions: tuple | None = None


@flax.struct.dataclass
class SequenceClassifierOutput(ModelOutput):
    # `loss` is set only when labels are given: the tuple view then starts with it, as the PyTorch reference's does,
    # and otherwise with the logits, as the reference's Flax classes (which had no loss) did.
    loss: Any = None
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class MultipleChoiceModelOutput(ModelOutput):
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class TokenClassifierOutput(ModelOutput):
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: dict | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    cross_attentions: tuple | None = None


@flax.struct.dataclass
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: dict | None = None
    decoder_hidden_states: tuple | None = None
    decoder_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: tuple | None = None
    encoder_attentions: tuple | None = None


@flax.struct.dataclass
class Seq2SeqLMOutput(ModelOutput):
    logits: Any = None
    past_key_values: dict | None = None
    decoder_hidden_states: tuple | None = None
    decoder_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: tuple | None = None
    encoder_attentions: tuple | None = None

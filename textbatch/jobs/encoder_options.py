"""The options of the jobs whose model is an encoder (embed, classify, label): how their model calls are batched
(operators/encoder_calls.py), on top of the options every job has (common.JobOptions)."""

from __future__ import annotations

import dataclasses
from typing import Any

from textbatch.jobs.common import JobOptions
from textbatch.operators.encoder_calls import PACK_LENGTH, SHAPE_COST


@dataclasses.dataclass(frozen=True)
class EncoderJobOptions(JobOptions):
    batch_tokens: int | None = None  # padded tokens per model call; None: 1024 on a CPU, 4096 on a GPU or TPU
    shape_cost: float | str | None = SHAPE_COST  # a new shape's worth in padded tokens, "measured"; None: pad least
    pack_length: int | None = PACK_LENGTH  # XLM-R rows up to this many tokens share model rows; 0 or None: never

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pack_length is not None and self.pack_length < 0:
            raise ValueError(f"pack_length must be 0 (no packing) or more, got {self.pack_length}")

    def model_call_options(self) -> dict[str, Any]:
        """The model step's arguments these options set."""
        return {"batch_tokens": self.batch_tokens, "shape_cost": self.shape_cost, "pack_length": self.pack_length}

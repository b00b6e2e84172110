"""Where a job's time goes, as columns the run report sums: a model actor's `_load_ms` (loading the checkpoint,
counted once per actor, on its first non-empty block), `_model_ms` (a call, compiling included), `_compile_ms` and
`_compiled_shapes`; a tokenizer actor's `_tokenize_ms`; the write tasks' `_write_ms` (added by the sink to its
counts, not a column). A call's figures sit on its block's first row, 0 on the others, so that their sum over the
output is the actors' total.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

LOAD_MS, MODEL_MS, COMPILE_MS, SHAPES = "_load_ms", "_model_ms", "_compile_ms", "_compiled_shapes"
TIMING_COLUMNS = (LOAD_MS, MODEL_MS, COMPILE_MS, SHAPES)
TOKENIZE_MS, WRITE_MS = "_tokenize_ms", "_write_ms"


def on_first_row(rows: int, value: float, dtype: type = np.float64) -> pa.Array:
    """A column of `value` on the first row, 0 on the others (milliseconds unrounded: a call may take less than one)."""
    values = np.zeros(rows, dtype=dtype)
    if rows:
        values[0] = value
    return pa.array(values)


def timing_columns(rows: int, milliseconds: dict[str, float]) -> list[tuple[str, pa.Array]]:
    """One column per timing (and the count of shapes compiled, int64), each on the call's first row."""
    return [
        (name, on_first_row(rows, milliseconds.get(name, 0.0), np.int64 if name == SHAPES else np.float64))
        for name in TIMING_COLUMNS
    ]


class ActorClock:
    """An actor's timing: `mark = clock.start()` when a call begins, `clock.columns(rows, mark)` when it ends.
    `programs` is the actor's programs.CompiledShapes (its compile seconds and shapes)."""

    def __init__(self, programs: Any, load_seconds: float):
        self.programs, self.load_seconds = programs, load_seconds

    def start(self) -> tuple[float, float, int]:
        return time.perf_counter(), self.programs.seconds, len(self.programs.programs)

    def columns(self, rows: int, mark: tuple[float, float, int]) -> list[tuple[str, pa.Array]]:
        started, compiled, shapes = mark
        milliseconds = {
            LOAD_MS: 1000 * self.load_seconds,
            MODEL_MS: 1000 * (time.perf_counter() - started),
            COMPILE_MS: 1000 * (self.programs.seconds - compiled),
            SHAPES: len(self.programs.programs) - shapes,
        }
        if rows:
            self.load_seconds = 0.0  # counted once, on the actor's first non-empty block
        return timing_columns(rows, milliseconds)

"""Where a model actor's time goes, as columns the run report sums: `_load_ms` (loading the checkpoint, counted once
per actor, on its first non-empty block), `_model_ms` (a call, compiling included), `_compile_ms` and
`_compiled_shapes`. A call's figures sit on its block's first row, 0 on the others, so that their sum over the output
is the actors' total.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

LOAD_MS, MODEL_MS, COMPILE_MS, SHAPES = "_load_ms", "_model_ms", "_compile_ms", "_compiled_shapes"
TIMING_COLUMNS = (LOAD_MS, MODEL_MS, COMPILE_MS, SHAPES)


def timing_columns(rows: int, milliseconds: dict[str, float]) -> list[tuple[str, pa.Array]]:
    """One int64 column per timing (and the count of shapes compiled): the call's total on the first row, 0 on the
    others."""
    columns = []
    for name in TIMING_COLUMNS:
        values = np.zeros(rows, dtype=np.int64)
        if rows:
            values[0] = round(milliseconds.get(name, 0.0))
        columns.append((name, pa.array(values)))
    return columns


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

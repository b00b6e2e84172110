"""Faults to inject into a job: subclasses of its steps (jobs take them as `model_operator=` / `tokenize_operator=`)
that raise on a row, kill their actor's process, or raise once. Used by test_failures.py and bench/chaos.py.

The classes are made in functions, so Ray pickles them by value: its workers need not import this module. A fault
that must happen once per run remembers that it did in a marker file, which every actor of the run can see.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa


def poisoned(step: type, poison_id: int) -> type:
    """`step` raising on every batch in which it would process row `poison_id`: a row the model cannot take."""

    class Poisoned(step):
        def __call__(self, batch: pa.Table) -> pa.Table:
            ids, errors = batch.column("id").to_pylist(), batch.column("error").to_pylist()
            if any(key == poison_id and error is None for key, error in zip(ids, errors)):
                raise ValueError(f"row {poison_id} is poisoned")
            return super().__call__(batch)

    return Poisoned


def _first_to_claim(marker: str) -> bool:
    """True for the one caller that creates `marker` (atomically: two actors may race for it)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def killed_once(step: type, marker: Path, after_calls: int = 0) -> type:
    """`step` whose actor process dies once per run (the first actor to reach it), when called again after
    `after_calls` batches it has already returned."""
    marker_path = str(marker)

    class KilledOnce(step):
        calls = 0

        def __call__(self, batch: pa.Table) -> pa.Table:
            if self.calls >= after_calls and _first_to_claim(marker_path):
                os._exit(1)  # as a segfault or an out-of-memory kill would: no exception, no cleanup
            self.calls += 1
            return super().__call__(batch)

    return KilledOnce


def raises_once(step: type, marker: Path) -> type:
    """`step` raising on the first batch of the run only: a transient fault, gone when the batch runs again."""
    marker_path = str(marker)

    class RaisesOnce(step):
        def __call__(self, batch: pa.Table) -> pa.Table:
            if _first_to_claim(marker_path):
                raise RuntimeError("a transient fault (raised once)")
            return super().__call__(batch)

    return RaisesOnce

"""Failure isolation (operators/isolation.py) around small stand-in steps and the real tokenize step, without Ray."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from textbatch.jobs.embed import TINY_MODEL
from textbatch.operators.isolation import isolated
from textbatch.operators.row_errors import TOKENIZER_FAILED
from textbatch.operators.tokenize import Tokenize


class Doubles:
    """A model step in miniature: `value` -> `double`, rows with `error` set passed through; it raises on any
    batch where it would compute a row whose value is in `poison`, and counts its calls."""

    def __init__(self, poison=(), flaky_calls=0):
        self.poison = set(poison)
        self.flaky_calls = flaky_calls  # the first calls fail whatever the batch: a transient fault
        self.calls = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.calls += 1
        if self.calls <= self.flaky_calls:
            raise RuntimeError("device hiccup")
        errors = batch.column("error").to_pylist()
        values = batch.column("value").to_pylist()
        if any(value in self.poison and error is None for value, error in zip(values, errors)):
            raise ValueError("cannot take\nthis row")
        doubled = [None if error else 2 * value for value, error in zip(values, errors)]
        return batch.drop_columns(["value"]).append_column("double", pa.array(doubled, pa.int64()))


def batch_of(count: int) -> pa.Table:
    return pa.table({"id": list(range(count)), "value": list(range(count)), "error": pa.nulls(count, pa.string())})


def test_a_poisoned_row_alone_gets_the_error():
    step = isolated(Doubles, retries=1)(poison={13})
    result = step(batch_of(40))
    assert type(step).__name__ == "IsolatedDoubles"
    assert result.column("id").to_pylist() == list(range(40))  # every row once, in order
    errors = result.column("error").to_pylist()
    assert errors[13] == "model failed: ValueError: cannot take" and result.column("double")[13].as_py() is None
    assert errors[:13] + errors[14:] == [None] * 39
    assert result.column("double").to_pylist()[:13] == [2 * value for value in range(13)]
    assert step.step.calls <= 2 + 2 * 6 + 1  # two tries, then about 2 log2(40) halves, then the row set aside


def test_two_poisoned_rows_and_a_transient_fault():
    step = isolated(Doubles, retries=1)(poison={0, 7})
    result = step(batch_of(8))
    errors = result.column("error").to_pylist()
    assert pc.sum(pc.is_valid(result.column("error"))).as_py() == 2
    assert errors[0] == errors[7] == "model failed: ValueError: cannot take"
    flaky = isolated(Doubles, retries=1)(flaky_calls=1)  # the retry succeeds: nothing is marked
    assert flaky(batch_of(5)).column("error").null_count == 5


def test_a_step_broken_for_every_row_raises():
    class Broken(Doubles):
        def __call__(self, batch):
            raise OSError("weights gone")

    with pytest.raises(OSError, match="weights gone"):
        isolated(Broken, retries=0)()(batch_of(3))
    with pytest.raises(ValueError, match="retries must be at least 0"):
        isolated(Doubles, retries=-1)


def test_the_tokenize_step_sets_a_failing_row_aside_with_null_text():
    class PoisonedTokenize(Tokenize):
        def __call__(self, batch):
            if "poison" in (batch.column("text").to_pylist()):
                raise MemoryError("the tokenizer ran out")
            return super().__call__(batch)

    step = isolated(PoisonedTokenize, reason=TOKENIZER_FAILED)(tokenizer_path=str(TINY_MODEL), max_length=16)
    result = step(pa.table({"id": [1, 2, 3], "text": ["fine", "poison", None]}))
    assert result.column("error").to_pylist() == [None, "tokenizer failed: MemoryError: the tokenizer ran out",
                                                  "text is null"]
    assert result.column("input_ids").to_pylist()[1] == [] and len(result.column("input_ids")[0]) > 2

"""Failure isolation around a step: a batch that raises is retried, then split until the failure is pinned to its rows.

    dataset.map_batches(isolated(PredictEmbeddings, retries=1, reason=MODEL_FAILED), fn_constructor_kwargs=...)

`isolated(Operator)` is a callable class for `map_batches` that builds `Operator(**kwargs)` once per actor and calls
it on each batch. When a call raises, the same batch runs again (`retries` times: a transient fault, such as a
device hiccup, goes away); when it still raises, the batch is cut in two halves and each half runs on its own,
recursively, down to single rows. Only a row that fails alone is marked: it comes out with
`error = "<reason>: <ExceptionType>: <message>"`, so one poisoned row cannot fail the thousand rows it was batched
with. A batch with one bad row costs about 2 log2(rows) extra calls.

A marked row is taken out of the computation the way the steps already skip rows, then run through the step so its
output has the step's columns: with `error` set on its input (the model steps pass such rows through without calling
the model) or, before tokenizing, with null texts; its output's `error` is then the failure. If the step fails even
on that, it is broken for every row, and the original exception is raised.

An actor that dies (a crash, an out-of-memory kill, a lost node) cannot catch anything: Ray Data restarts it and
retries its batch (its actor pools' defaults, `max_restarts=-1`, `max_task_retries=-1`; see jobs/common.map_model).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pyarrow as pa

from textbatch.operators.row_errors import MODEL_FAILED, exception_message

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "text_pair")


def isolated(operator: type, *, retries: int = 1, reason: str = MODEL_FAILED) -> type:
    """`operator` with its failures isolated to rows (see the module's docstring). The class is named after the
    operator, so Ray Data's progress shows MapBatches(IsolatedPredictEmbeddings)."""
    if retries < 0:
        raise ValueError(f"retries must be at least 0, got {retries}")
    name = f"Isolated{operator.__name__}"
    return type(name, (IsolatedRows,), {"operator": operator, "retries": retries, "reason": reason})


class IsolatedRows:
    """The wrapper `isolated` makes; `operator`, `retries` and `reason` are set on each subclass."""

    operator: ClassVar[type]
    retries: ClassVar[int] = 1
    reason: ClassVar[str] = MODEL_FAILED

    def __init__(self, **kwargs: Any):
        self.step = self.operator(**kwargs)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._run(batch, self.retries, loud=True)

    def _run(self, batch: pa.Table, retries: int, loud: bool = False) -> pa.Table:
        failure: Exception | None = None
        for attempt in range(retries + 1):
            try:
                return self.step(batch)
            except Exception as error:  # noqa: BLE001 - pinned to its rows below, or raised if it cannot be
                failure = error
                # Loud for the batch as Ray Data gave it; the halves tried while isolating only at debug level.
                (logger.warning if loud else logger.debug)(
                    "%s failed on a batch of %d rows (attempt %d of %d): %s: %s",
                    self.operator.__name__, batch.num_rows, attempt + 1, retries + 1, type(error).__name__, error,
                )
        if batch.num_rows == 0:
            raise failure
        if batch.num_rows == 1:
            return self._mark_failed(batch, failure)
        middle = batch.num_rows // 2
        halves = [self._run(batch.slice(0, middle), 0), self._run(batch.slice(middle), 0)]
        return pa.concat_tables(halves, promote_options="permissive")

    def _mark_failed(self, row: pa.Table, failure: Exception) -> pa.Table:
        message = exception_message(self.reason, failure)
        logger.warning("%s: isolated a failing row; it gets error %r", self.operator.__name__, message)
        try:
            result = self.step(_set_aside(row, message))
        except Exception as error:  # the step fails whatever the row: not the row's fault
            raise failure from error
        return _with_error(result, message)


def _set_aside(row: pa.Table, message: str) -> pa.Table:
    """`row` as the steps skip it: `error` set (model steps), else its texts null (the tokenize step)."""
    if "error" in row.column_names:
        return _with_error(row, message)
    for name in TEXT_COLUMNS:
        if name in row.column_names:
            at = row.column_names.index(name)
            row = row.set_column(at, name, pa.nulls(row.num_rows, row.schema.field(name).type))
    return row


def _with_error(table: pa.Table, message: str) -> pa.Table:
    errors = pa.array([message] * table.num_rows, type=pa.string())
    if "error" in table.column_names:
        return table.set_column(table.column_names.index("error"), "error", errors)
    return table.append_column("error", errors)

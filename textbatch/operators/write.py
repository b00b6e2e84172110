"""Write step: a Ray datasink writing a job's result columns to Parquet, and counting what it wrote for the run report.

`ResultParquetDatasink` serves every job: it writes the job's `columns` in that order, with the Parquet key-value
metadata `textbatch.<job>` (a JSON object naming the model and the options of the run), and counts rows, errors,
tokens (`tokens_column`), truncated rows and padding. Internal columns such as `_padded_tokens` are counted, then
left out of the files; `sum_columns` are further numeric columns (or lists of numbers) whose totals the report needs.

Errors are counted by reason (the message before its first ": ", row_errors.py). Each file's `textbatch.<job>` JSON
also holds `file_counts`: that file's rows, errors by reason, truncated rows, and those cut at max_chars.

The embedding job's files (`EmbeddingParquetDatasink`): `id`, `embedding` (fixed_size_list<float32>[hidden]; null
where `error` is set), `n_tokens` (int32, tokens the model saw, `<s>` and `</s>` included), `truncated` (bool),
`error` (string, null when the row was embedded), metadata under `textbatch.embed`.

Committing (textbatch/jobs/commit.py decides what and where): the sink writes into one run attempt's staging folder.
Rows carry `_group`, the index of the input group they came from (operators/read.py tags them); a write task writes
one part file per group among its rows, named `<its label>-<task>.parquet`, and after it a marker
`<same name>.json` saying how many rows of which group the part holds. A part without its marker is incomplete and
is never committed; a retried task rewrites the same names. Nothing here deletes anything.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
import time
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data._internal.util import call_with_retry
from ray.data.block import BlockAccessor
from ray.data.datasource import BlockBasedFileDatasink, SaveMode

from textbatch.jobs.commit import MARKER_SUFFIX, PART_SUFFIX, marker_bytes
from textbatch.operators.columns import require_columns
from textbatch.operators.predict import PADDED_TOKENS
from textbatch.operators.read import GROUP
from textbatch.operators.row_errors import error_reason
from textbatch.operators.timing import WRITE_MS
from textbatch.operators.tokenize import CUT_AT_MAX_CHARS

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("id", "embedding", "n_tokens", "truncated", "error")  # the embedding job's
METADATA_PREFIX = "textbatch."
METADATA_KEY = METADATA_PREFIX + "embed"
_MAX_ERROR_KINDS = 20


@dataclasses.dataclass
class WrittenCounts:
    """What the write tasks saw; summed over tasks for the run report."""

    rows: int = 0
    tokens: int = 0
    processed_tokens: int = 0  # tokens of the rows without error (the ones the model computed on)
    padded_tokens: float = 0.0
    truncated: int = 0
    errors: int = 0
    error_kinds: Counter = dataclasses.field(default_factory=Counter)
    files: int = 0
    sums: Counter = dataclasses.field(default_factory=Counter)  # totals of the sink's sum_columns

    @property
    def embedded_tokens(self) -> int:
        """The embedding job's name for `processed_tokens`."""
        return self.processed_tokens

    @classmethod
    def of_table(
        cls, table: pa.Table, tokens_column: str = "n_tokens", sum_columns: tuple[str, ...] = ()
    ) -> WrittenCounts:
        errors = table.column("error")
        kinds = error_reasons(errors)
        tokens = table.column(tokens_column)
        return cls(
            rows=table.num_rows,
            tokens=_total(tokens),
            processed_tokens=_total(tokens.filter(pc.is_null(errors))),
            padded_tokens=float(pc.sum(table.column(PADDED_TOKENS)).as_py() or 0.0)
            if PADDED_TOKENS in table.column_names
            else 0.0,
            truncated=_total(table.column("truncated").cast(pa.int64())) if "truncated" in table.column_names else 0,
            errors=table.num_rows - errors.null_count,
            error_kinds=Counter(dict(kinds.most_common(_MAX_ERROR_KINDS))),
            sums=Counter({name: _total(table.column(name)) for name in sum_columns}),
        )

    def __add__(self, other: WrittenCounts) -> WrittenCounts:
        kinds = self.error_kinds + other.error_kinds
        sums = Counter(self.sums)
        sums.update(other.sums)  # keeps zero totals, unlike `+`
        return WrittenCounts(
            rows=self.rows + other.rows,
            tokens=self.tokens + other.tokens,
            processed_tokens=self.processed_tokens + other.processed_tokens,
            padded_tokens=self.padded_tokens + other.padded_tokens,
            truncated=self.truncated + other.truncated,
            errors=self.errors + other.errors,
            error_kinds=Counter(dict(kinds.most_common(_MAX_ERROR_KINDS))),
            files=self.files + other.files,
            sums=sums,
        )


def error_reasons(errors: pa.ChunkedArray | pa.Array) -> Counter:
    """How many rows of an `error` column have each reason (row_errors.error_reason); nulls are no error."""
    return Counter(error_reason(message) for message in errors.drop_null().to_pylist())


def _total(column: pa.ChunkedArray | pa.Array) -> int | float:
    """Sum of a numeric column, or of the values of a list column (nulls count 0); a float column's stays a float."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    total = pc.sum(column).as_py() or 0
    return total if pa.types.is_floating(column.type) else int(total)


class ResultParquetDatasink(BlockBasedFileDatasink):
    """`dataset.write_datasink(sink)`; afterwards `sink.counts` holds the totals (on the driver).

    `path` is the run attempt's staging folder; `groups[g]` is (the start of its part names, its key) for input
    group `g` (rows without a `_group` column belong to group 0). `columns` are written in that order (every one
    must be present, and so must `error` and `tokens_column`); `job` names the metadata key `textbatch.<job>`.
    """

    def __init__(
        self,
        path: str,
        *,
        columns: tuple[str, ...],
        job: str,
        metadata: dict[str, Any],
        groups: tuple[tuple[str, str], ...] = (("part", "all"),),
        tokens_column: str = "n_tokens",
        sum_columns: tuple[str, ...] = (),
        **kwargs,
    ):
        super().__init__(path, file_format="parquet", mode=SaveMode.APPEND, **kwargs)
        self.columns = tuple(columns)
        self.groups = tuple(groups)
        self.tokens_column = tokens_column
        self.sum_columns = tuple(sum_columns)
        self.metadata = {METADATA_PREFIX + job: json.dumps(metadata, sort_keys=True, default=str)}
        self.counts = WrittenCounts()

    # -- driver side ---------------------------------------------------------------------------------------------
    def on_write_complete(self, write_result) -> None:
        # Not the base class's: it deletes the folder when no rows were written, and this one holds the attempt.
        total = WrittenCounts()
        for counts in write_result.write_returns:
            if counts is not None:
                total = total + counts
        self.counts = total

    # -- write tasks ---------------------------------------------------------------------------------------------
    def write(self, blocks, ctx) -> WrittenCounts:
        started = time.perf_counter()
        tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
        tables = [table for table in tables if table.num_rows]
        if not tables:
            return WrittenCounts()
        table = pa.concat_tables(tables, promote_options="permissive")
        needed = dict.fromkeys((*self.columns, "error", self.tokens_column, *self.sum_columns))
        require_columns(table, needed, "write")
        counts = WrittenCounts.of_table(table, self.tokens_column, self.sum_columns)
        if GROUP in table.column_names:
            groups = table.column(GROUP)
        else:
            groups = pa.repeat(pa.scalar(0, pa.int32()), table.num_rows)
        for group in pc.unique(groups).to_pylist():
            label, key = self.groups[group]
            self.write_part(table.filter(pc.equal(groups, group)), f"{label}-{ctx.task_idx:06d}", key)
            counts.files += 1
        counts.sums[WRITE_MS] += 1000 * (time.perf_counter() - started)
        return counts

    def write_part(self, table: pa.Table, name: str, group_key: str) -> None:
        """The part file, then its marker: the part counts only once both are there."""
        part_path = posixpath.join(self.path, name + PART_SUFFIX)
        marker_path = posixpath.join(self.path, name + MARKER_SUFFIX)

        def write_data() -> None:
            with self.open_output_stream(part_path) as file:
                self.write_block_to_file(BlockAccessor.for_block(table), file)

        def write_marker() -> None:
            with self.open_output_stream(marker_path) as file:
                file.write(marker_bytes(name + PART_SUFFIX, group_key, table.num_rows))

        retry_on = self._data_context.retried_io_errors
        call_with_retry(write_data, description=f"write {name}{PART_SUFFIX}", match=retry_on)
        call_with_retry(write_marker, description=f"write {name}{MARKER_SUFFIX}", match=retry_on)

    def write_block_to_file(self, block: BlockAccessor, file) -> None:
        table = block.to_arrow()
        metadata = with_file_counts(self.metadata, table)
        table = table.select(list(self.columns))
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        pq.write_table(table, file)


def with_file_counts(metadata: dict[str, str], table: pa.Table) -> dict[str, str]:
    """The run metadata with `file_counts` of `table` (one output file) added to each JSON value: rows, errors by
    reason, truncated rows, and those cut at max_chars (the run's totals are their sums over the files)."""
    counts = {"rows": table.num_rows, "errors": dict(sorted(error_reasons(table.column("error")).items()))}
    for name, column in (("truncated", "truncated"), ("cut_at_max_chars", CUT_AT_MAX_CHARS)):
        if column in table.column_names:
            counts[name] = _total(table.column(column).cast(pa.int64()))
    with_counts = {key: {**json.loads(raw), "file_counts": counts} for key, raw in metadata.items()}
    return {key: json.dumps(value, sort_keys=True) for key, value in with_counts.items()}


class EmbeddingParquetDatasink(ResultParquetDatasink):
    """The embedding job's sink: OUTPUT_COLUMNS, metadata under `textbatch.embed`."""

    def __init__(self, path: str, *, metadata: dict[str, Any], **kwargs):
        super().__init__(path, columns=OUTPUT_COLUMNS, job="embed", metadata=metadata, **kwargs)


def read_run_metadata(path: str) -> dict[str, Any]:
    """The run metadata (`textbatch.<job>`) of one output file of any job (for tools and tests)."""
    metadata = pq.read_schema(path).metadata or {}
    for key, raw in metadata.items():
        if key.startswith(METADATA_PREFIX.encode()):
            return json.loads(raw)
    raise KeyError(f"{path} has no {METADATA_PREFIX}<job> metadata; was it written by a textbatch job?")

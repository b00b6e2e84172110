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

An existing output folder is replaced only when it holds nothing but Parquet files (an earlier run's output);
anything else in it makes the write fail instead of deleting it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data.block import BlockAccessor
from ray.data.datasource import BlockBasedFileDatasink, SaveMode

from textbatch.operators.columns import require_columns
from textbatch.operators.predict import PADDED_TOKENS
from textbatch.operators.row_errors import error_reason
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


def _total(column: pa.ChunkedArray | pa.Array) -> int:
    """Sum of an integer column, or of the values of a list column (nulls count 0)."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    return int(pc.sum(column).as_py() or 0)


class ResultParquetDatasink(BlockBasedFileDatasink):
    """`dataset.write_datasink(sink)`; afterwards `sink.counts` holds the totals (on the driver).

    `columns` are written in that order (every one must be present, and so must `error` and `tokens_column`);
    `job` names the metadata key `textbatch.<job>`.
    """

    def __init__(
        self,
        path: str,
        *,
        columns: tuple[str, ...],
        job: str,
        metadata: dict[str, Any],
        tokens_column: str = "n_tokens",
        sum_columns: tuple[str, ...] = (),
        overwrite: bool = True,
        **kwargs,
    ):
        super().__init__(path, file_format="parquet", mode=SaveMode.APPEND, **kwargs)
        self.columns = tuple(columns)
        self.tokens_column = tokens_column
        self.sum_columns = tuple(sum_columns)
        self.overwrite = overwrite
        self.metadata = {METADATA_PREFIX + job: json.dumps(metadata, sort_keys=True, default=str)}
        self.counts = WrittenCounts()

    # -- driver side ---------------------------------------------------------------------------------------------
    def on_write_start(self, schema: pa.Schema | None = None) -> None:
        if not self._write_started:
            self._clear_earlier_output()
        super().on_write_start(schema)

    def _clear_earlier_output(self) -> None:
        from pyarrow.fs import FileSelector, FileType

        if self.filesystem.get_file_info(self.path).type == FileType.NotFound:
            return
        entries = self.filesystem.get_file_info(FileSelector(self.path, recursive=True))
        if not entries:
            return
        strangers = [e.path for e in entries if e.type != FileType.File or not e.path.endswith(".parquet")]
        if strangers or not self.overwrite:
            why = f"it holds other files, e.g. {strangers[0]}" if strangers else "overwrite is off"
            raise FileExistsError(
                f"output folder {self.unresolved_path} is not empty and {why}; choose a new or empty folder"
            )
        logger.info("replacing %d Parquet file(s) of an earlier run in %s", len(entries), self.unresolved_path)
        for entry in entries:
            self.filesystem.delete_file(entry.path)

    def on_write_complete(self, write_result) -> None:
        super().on_write_complete(write_result)
        total = WrittenCounts()
        for counts in write_result.write_returns:
            if counts is not None:
                total = total + counts
        self.counts = total

    # -- write tasks ---------------------------------------------------------------------------------------------
    def write(self, blocks, ctx) -> WrittenCounts:
        blocks = list(blocks)
        counts = WrittenCounts()
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows:
                needed = dict.fromkeys((*self.columns, "error", self.tokens_column, *self.sum_columns))
                require_columns(table, needed, "write")
                counts = counts + WrittenCounts.of_table(table, self.tokens_column, self.sum_columns)
        super().write(blocks, ctx)
        counts.files = 1 if counts.rows else 0
        return counts

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

    def __init__(self, path: str, *, metadata: dict[str, Any], overwrite: bool = True, **kwargs):
        super().__init__(path, columns=OUTPUT_COLUMNS, job="embed", metadata=metadata, overwrite=overwrite, **kwargs)


def read_run_metadata(path: str) -> dict[str, Any]:
    """The run metadata (`textbatch.<job>`) of one output file of any job (for tools and tests)."""
    metadata = pq.read_schema(path).metadata or {}
    for key, raw in metadata.items():
        if key.startswith(METADATA_PREFIX.encode()):
            return json.loads(raw)
    raise KeyError(f"{path} has no {METADATA_PREFIX}<job> metadata; was it written by a textbatch job?")

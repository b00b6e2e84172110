"""Write step: a Ray datasink writing the embedding Parquet files, and counting what it wrote for the run report.

Output columns, in this order: `id`, `embedding` (fixed_size_list<float32>[hidden]; null where `error` is set),
`n_tokens` (int32, tokens the model saw, `<s>` and `</s>` included), `truncated` (bool), `error` (string, null when
the row was embedded). The Parquet key-value metadata holds `textbatch.embed`: a JSON object naming the model and the
options of the run. Internal columns such as `_padded_tokens` are counted, then left out of the files.

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

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("id", "embedding", "n_tokens", "truncated", "error")
METADATA_KEY = "textbatch.embed"
_MAX_ERROR_KINDS = 20


@dataclasses.dataclass
class WrittenCounts:
    """What the write tasks saw; summed over tasks for the run report."""

    rows: int = 0
    tokens: int = 0
    embedded_tokens: int = 0  # tokens of the rows that got an embedding
    padded_tokens: float = 0.0
    truncated: int = 0
    errors: int = 0
    error_kinds: Counter = dataclasses.field(default_factory=Counter)
    files: int = 0

    @classmethod
    def of_table(cls, table: pa.Table) -> WrittenCounts:
        errors = table.column("error")
        kinds = Counter(value for value in errors.filter(pc.is_valid(errors)).to_pylist())
        return cls(
            rows=table.num_rows,
            tokens=int(pc.sum(table.column("n_tokens")).as_py() or 0),
            embedded_tokens=int(pc.sum(table.column("n_tokens").filter(pc.is_null(errors))).as_py() or 0),
            padded_tokens=float(pc.sum(table.column(PADDED_TOKENS)).as_py() or 0.0)
            if PADDED_TOKENS in table.column_names
            else 0.0,
            truncated=int(pc.sum(table.column("truncated").cast(pa.int64())).as_py() or 0),
            errors=table.num_rows - errors.null_count,
            error_kinds=Counter(dict(kinds.most_common(_MAX_ERROR_KINDS))),
        )

    def __add__(self, other: WrittenCounts) -> WrittenCounts:
        kinds = self.error_kinds + other.error_kinds
        return WrittenCounts(
            rows=self.rows + other.rows,
            tokens=self.tokens + other.tokens,
            embedded_tokens=self.embedded_tokens + other.embedded_tokens,
            padded_tokens=self.padded_tokens + other.padded_tokens,
            truncated=self.truncated + other.truncated,
            errors=self.errors + other.errors,
            error_kinds=Counter(dict(kinds.most_common(_MAX_ERROR_KINDS))),
            files=self.files + other.files,
        )


class EmbeddingParquetDatasink(BlockBasedFileDatasink):
    """`dataset.write_datasink(sink)`; afterwards `sink.counts` holds the totals (on the driver)."""

    def __init__(self, path: str, *, metadata: dict[str, Any], overwrite: bool = True, **kwargs):
        super().__init__(path, file_format="parquet", mode=SaveMode.APPEND, **kwargs)
        self.overwrite = overwrite
        self.metadata = {METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str)}
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
                require_columns(table, OUTPUT_COLUMNS, "write")
                counts = counts + WrittenCounts.of_table(table)
        super().write(blocks, ctx)
        counts.files = 1 if counts.rows else 0
        return counts

    def write_block_to_file(self, block: BlockAccessor, file) -> None:
        table = block.to_arrow().select(list(OUTPUT_COLUMNS))
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **self.metadata})
        pq.write_table(table, file)


def read_run_metadata(path: str) -> dict[str, Any]:
    """The `textbatch.embed` metadata of one output file (for tools and tests)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(METADATA_KEY.encode())
    if raw is None:
        raise KeyError(f"{path} has no {METADATA_KEY!r} metadata; was it written by the embedding job?")
    return json.loads(raw)

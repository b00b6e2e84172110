"""The write step's file layout, counting (with per-file counts) and per-group parts with their markers, without
running a Ray job."""

from __future__ import annotations

import json
import types

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockAccessor

from textbatch.operators.predict import fixed_size_vectors
from textbatch.operators.write import (
    OUTPUT_COLUMNS,
    EmbeddingParquetDatasink,
    WrittenCounts,
    read_run_metadata,
)


def predicted_table():
    valid = np.array([True, False, True])
    return pa.table(
        {
            "id": pa.array([7, 8, 9]),
            "n_tokens": pa.array([5, 0, 3], pa.int32()),
            "truncated": pa.array([True, False, False]),
            "embedding": fixed_size_vectors(np.arange(9, dtype=np.float32).reshape(3, 3), valid),
            "error": pa.array([None, "text is null", None], pa.string()),
            "_padded_tokens": pa.array([16.0, 0.0, 16.0]),
        }
    )


def test_file_has_the_output_columns_in_order_and_the_run_metadata(tmp_path):
    sink = EmbeddingParquetDatasink(str(tmp_path / "out"), metadata={"model": "tiny", "pooling": "mean"})
    with pa.OSFile(str(tmp_path / "one.parquet"), "wb") as file:
        sink.write_block_to_file(BlockAccessor.for_block(predicted_table()), file)
    table = pq.read_table(tmp_path / "one.parquet")
    assert table.column_names == ["id", "embedding", "n_tokens", "truncated", "error"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 3)
    assert table.column("embedding").to_pylist() == [[0.0, 1.0, 2.0], None, [6.0, 7.0, 8.0]]
    assert read_run_metadata(str(tmp_path / "one.parquet")) == {
        "model": "tiny",
        "pooling": "mean",
        "file_counts": {"rows": 3, "errors": {"text is null": 1}, "truncated": 1},  # this file's share of the report
    }


def test_counts_add_up():
    counts = WrittenCounts.of_table(predicted_table())
    assert (counts.rows, counts.tokens, counts.embedded_tokens, counts.padded_tokens) == (3, 8, 8, 32.0)
    assert (counts.errors, counts.truncated, dict(counts.error_kinds)) == (1, 1, {"text is null": 1})
    twice = counts + counts
    assert (twice.rows, twice.errors, dict(twice.error_kinds)) == (6, 2, {"text is null": 2})
    # Errors are counted by their reason, the message before its first ": ".
    details = ["model failed: ValueError: row 1", "model failed: KeyError: 'x'", "text is null"]
    table = predicted_table().set_column(4, "error", pa.array(details))
    assert dict(WrittenCounts.of_table(table).error_kinds) == {"model failed": 2, "text is null": 1}


def test_each_input_group_gets_its_own_part_and_a_marker_after_it(tmp_path):
    """Rows of two input groups in one write task: one part per group, named by the group's label and the task, each
    followed by its marker (rows and group key); nothing else is written and nothing deleted."""
    staging = tmp_path / "_temporary" / "attempt"
    staging.mkdir(parents=True)
    (staging / "_attempt.json").write_text("{}")
    table = predicted_table().append_column("_group", pa.array([1, 0, 1], pa.int32()))
    groups = (("part-a-k0", "k0"), ("part-b-k1", "k1"))
    sink = EmbeddingParquetDatasink(str(staging), metadata={"model": "tiny"}, groups=groups)
    counts = sink.write([table], types.SimpleNamespace(task_idx=7))
    assert (counts.rows, counts.files) == (3, 2)
    assert sorted(path.name for path in staging.iterdir()) == [
        "_attempt.json", "part-a-k0-000007.json", "part-a-k0-000007.parquet", "part-b-k1-000007.json",
        "part-b-k1-000007.parquet",
    ]
    assert json.loads((staging / "part-b-k1-000007.json").read_text()) == {
        "part": "part-b-k1-000007.parquet", "group": "k1", "rows": 2
    }
    assert pq.read_table(staging / "part-b-k1-000007.parquet").column("id").to_pylist() == [7, 9]
    # Each part's file_counts are its own group's rows: their sums over the parts are the run's.
    assert read_run_metadata(str(staging / "part-b-k1-000007.parquet"))["file_counts"] == {
        "rows": 2, "errors": {}, "truncated": 1
    }
    assert read_run_metadata(str(staging / "part-a-k0-000007.parquet"))["file_counts"] == {
        "rows": 1, "errors": {"text is null": 1}, "truncated": 0
    }
    assert pq.read_table(staging / "part-a-k0-000007.parquet").column_names == list(OUTPUT_COLUMNS)

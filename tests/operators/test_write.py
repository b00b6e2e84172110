"""The write step's file layout, counting and overwrite guard, without running a Ray job."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.data.block import BlockAccessor

from textbatch.operators.predict import fixed_size_vectors
from textbatch.operators.write import EmbeddingParquetDatasink, WrittenCounts, read_run_metadata


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


def test_an_earlier_runs_parquet_files_are_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"x": [1]}), out / "old.parquet")
    EmbeddingParquetDatasink(str(out), metadata={}).on_write_start()
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_folder_with_other_files_is_never_emptied(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"x": [1]}), out / "old.parquet")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files, e.g. .*notes.txt"):
        EmbeddingParquetDatasink(str(out), metadata={}).on_write_start()
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt", "old.parquet"]
    (out / "notes.txt").unlink()
    with pytest.raises(FileExistsError, match="overwrite is off"):
        EmbeddingParquetDatasink(str(out), metadata={}, overwrite=False).on_write_start()
    assert sorted(path.name for path in out.iterdir()) == ["old.parquet"]

"""textbatch.outputs: which files are a job's output (manifest or not), their rows and run metadata, any fsspec URL."""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbatch.outputs import METADATA_PREFIX, read_output

RUN = {"job": "embed", "model": "/models/tiny", "embedding_dim": 3}


def write_part(fs, path, ids, metadata=RUN, key="textbatch.embed"):
    table = pa.table({"id": pa.array(ids, pa.int64()), "score": pa.array([i / 7 for i in ids], pa.float32())})
    if metadata is not None:
        table = table.replace_schema_metadata({key: json.dumps(metadata)})
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle)


@pytest.fixture
def folder(tmp_path):
    """Three parts of odd sizes, written out of name order, and a stray non-Parquet file."""
    fs = fsspec.filesystem("file")
    write_part(fs, str(tmp_path / "b-part.parquet"), [5, 6, 7, 8, 9])
    write_part(fs, str(tmp_path / "a-part.parquet"), [1, 2, 3])
    write_part(fs, str(tmp_path / "c-part.parquet"), [10])
    (tmp_path / "notes.txt").write_text("not output")
    return tmp_path


def test_without_manifest_every_parquet_file_in_name_order(folder):
    output = read_output(str(folder))
    assert [path.rsplit("/", 1)[1] for path in output.files] == ["a-part.parquet", "b-part.parquet", "c-part.parquet"]
    assert output.job == "embed" and output.metadata == RUN
    assert output.to_arrow().column("id").to_pylist() == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    frame = output.to_pandas(columns=["id"])
    assert list(frame.columns) == ["id"] and len(frame) == 9


@pytest.mark.parametrize(
    "manifest",
    [
        json.dumps({"files": ["c-part.parquet", {"path": "a-part.parquet"}], "rows": 4}),
        json.dumps(["c-part.parquet", "a-part.parquet"]),
        "c-part.parquet\n\na-part.parquet\n",
    ],
    ids=["json-object", "json-list", "lines"],
)
def test_a_manifest_decides_which_files_are_read(folder, manifest):
    (folder / "_SUCCESS").write_text(manifest)
    output = read_output(str(folder))
    assert output.to_arrow().column("id").to_pylist() == [10, 1, 2, 3]  # b-part is not committed


def test_an_empty_success_marker_reads_every_file(folder):
    (folder / "_SUCCESS").write_text("")
    assert read_output(str(folder)).to_arrow().num_rows == 9


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ('{"files": ["gone.parquet"]}', "not there"),
        ('{"files": ["../elsewhere.parquet"]}', "inside the output folder"),
        ('{"files": [', "not valid JSON"),
    ],
)
def test_a_bad_manifest_is_an_error_naming_it(folder, manifest, message):
    (folder / "_SUCCESS").write_text(manifest)
    with pytest.raises((FileNotFoundError, ValueError), match=message) as error:
        read_output(str(folder))
    assert "_SUCCESS" in str(error.value)


def test_no_output_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_output(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has the job run"):
        read_output(str(tmp_path / "empty"))
    write_part(fsspec.filesystem("file"), str(tmp_path / "empty" / "x.parquet"), [1], metadata=None)
    with pytest.raises(KeyError, match="textbatch.<job>"):
        read_output(str(tmp_path / "empty"))


def test_runs_that_never_committed_are_not_output(folder, tmp_path):
    """Parts under `_temporary/` (a run in progress, or killed) are never read; a folder with nothing else is an
    error that says what happened and what to do."""
    fs = fsspec.filesystem("file")
    (folder / "_temporary" / "attempt").mkdir(parents=True)
    write_part(fs, str(folder / "_temporary" / "attempt" / "part-x.parquet"), [99])
    assert 99 not in read_output(str(folder)).to_arrow().column("id").to_pylist()
    fresh = tmp_path / "fresh"
    (fresh / "_temporary" / "attempt").mkdir(parents=True)
    write_part(fs, str(fresh / "_temporary" / "attempt" / "part-x.parquet"), [99])
    with pytest.raises(FileNotFoundError, match="never committed .*rerun the job"):
        read_output(str(fresh))


def test_locations_in_errors_are_redacted(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        read_output(f"file://{tmp_path}/missing?token=hunter2")
    assert "hunter2" not in str(error.value) and "token=***" in str(error.value)


def test_any_fsspec_url_and_nested_files():
    fs = fsspec.filesystem("memory")
    write_part(
        fs, "/outputs-test/run/sub/part-1.parquet", [4, 2], metadata={"job": "generate"}, key="textbatch.generate"
    )
    write_part(fs, "/outputs-test/run/part-0.parquet", [3], metadata={"job": "generate"}, key="textbatch.generate")
    try:
        output = read_output("memory://outputs-test/run")
        assert output.job == "generate"
        assert output.to_arrow().column("id").to_pylist() == [3, 4, 2]
    finally:
        fs.rm("/outputs-test", recursive=True)


def test_metadata_prefix_is_the_writers():
    from textbatch.operators.write import METADATA_PREFIX as WRITTEN

    assert METADATA_PREFIX == WRITTEN

"""Input resolution and the early column checks of the read step (no Ray needed for these)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from textbatch.operators.read import check_text_columns, resolve_input


def write_datasets_folder(folder, tables):
    """The layout `datasets.Dataset.save_to_disk` writes (checked against datasets 5.2): Arrow stream shards + state."""
    folder.mkdir(parents=True)
    names = [f"data-{index:05d}-of-{len(tables):05d}.arrow" for index in range(len(tables))]
    for name, table in zip(names, tables):
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": "0",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state))
    (folder / "dataset_info.json").write_text("{}")


@pytest.fixture
def parquet_folder(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "nested").mkdir(parents=True)
    table = pa.table({"id": [1, 2], "text": ["a", "b"]})
    pq.write_table(table, folder / "b.parquet")
    pq.write_table(table, folder / "nested" / "a.parquet")
    (folder / "_SUCCESS").write_text("")
    (folder / ".part.parquet.crc").write_text("")
    (folder / "notes.txt").write_text("not data")
    return folder


def test_folder_lists_parquet_files_recursively_and_skips_markers(parquet_folder):
    files = resolve_input(parquet_folder)
    assert files.kind == "parquet"
    assert files.paths == (str(parquet_folder / "b.parquet"), str(parquet_folder / "nested" / "a.parquet"))
    assert files.schema().names == ["id", "text"]


def test_single_file_glob_and_file_url(parquet_folder):
    assert resolve_input(parquet_folder / "b.parquet").paths == (str(parquet_folder / "b.parquet"),)
    assert len(resolve_input(f"{parquet_folder}/**/*.parquet").paths) == 2
    assert len(resolve_input(f"file://{parquet_folder}").paths) == 2


def test_relative_path_becomes_absolute(parquet_folder, monkeypatch):
    monkeypatch.chdir(parquet_folder.parent)
    assert resolve_input("corpus").where == str(parquet_folder)


def test_datasets_folders(tmp_path):
    table = pa.table({"text": ["x", None], "key": [5, 6]})
    write_datasets_folder(tmp_path / "single", [table, table.slice(1)])
    files = resolve_input(tmp_path / "single")
    assert files.kind == "arrow" and [p.rsplit("/", 1)[1] for p in files.paths] == [
        "data-00000-of-00002.arrow",
        "data-00001-of-00002.arrow",
    ]
    assert files.schema().names == ["text", "key"]

    write_datasets_folder(tmp_path / "dict" / "train", [table])
    (tmp_path / "dict" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    assert resolve_input(tmp_path / "dict").paths[0].endswith("dict/train/data-00000-of-00001.arrow")

    write_datasets_folder(tmp_path / "dict" / "test", [table])
    (tmp_path / "dict" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(ValueError, match=r"splits \['train', 'test'\].*dict/train"):
        resolve_input(tmp_path / "dict")


def test_missing_inputs_say_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        resolve_input(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet files"):
        resolve_input(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="matches no"):
        resolve_input(f"{tmp_path}/*.parquet")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "gone.arrow"}]}))
    with pytest.raises(FileNotFoundError, match="gone.arrow"):
        resolve_input(folder)


def test_not_parquet_is_reported_with_its_path(tmp_path):
    (tmp_path / "fake.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="fake.parquet is not a readable Parquet file"):
        resolve_input(tmp_path / "fake.parquet").schema()


def test_column_checks_fail_early_naming_the_column():
    schema = pa.schema([("doc_id", pa.int64()), ("body", pa.large_string()), ("score", pa.float32())])
    check_text_columns(schema, "body", "doc_id", "corpus/")
    check_text_columns(pa.schema([("id", pa.string()), ("text", pa.binary())]), "text", "id", "corpus/")
    with pytest.raises(KeyError, match=r"no column 'id' \(--id-column\).*\['doc_id', 'body', 'score'\]"):
        check_text_columns(schema, "body", "id", "corpus/")
    with pytest.raises(KeyError, match=r"no column 'text' \(--text-column\)"):
        check_text_columns(schema, "text", "doc_id", "corpus/")
    with pytest.raises(TypeError, match="column 'score' of corpus/ has type float"):
        check_text_columns(schema, "score", "doc_id", "corpus/")
    with pytest.raises(ValueError, match="both 'body'"):
        check_text_columns(schema, "body", "body", "corpus/")

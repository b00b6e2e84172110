"""Folders written by Hugging Face `datasets`' `save_to_disk`, read without importing `datasets`.

`Dataset.save_to_disk(folder)` writes `state.json` (which names the data files, `_data_files: [{"filename": ...}]`),
`dataset_info.json` and one or more `data-XXXXX-of-YYYYY.arrow` files in the Arrow IPC *stream* format.
`DatasetDict.save_to_disk(folder)` writes `dataset_dict.json` (`{"splits": [...]}`) and one such folder per split.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.ipc
from ray.data.datasource import FileBasedDatasource

STATE_FILE = "state.json"
DICT_FILE = "dataset_dict.json"


def is_datasets_folder(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return fs.isfile(posixpath.join(path, STATE_FILE)) or fs.isfile(posixpath.join(path, DICT_FILE))


def datasets_arrow_files(fs: fsspec.AbstractFileSystem, path: str, where: str) -> list[str]:
    """The Arrow files of a `save_to_disk` folder, in order. `where` is the user's spelling, for messages."""
    dict_file = posixpath.join(path, DICT_FILE)
    if fs.isfile(dict_file):
        with fs.open(dict_file, "rb") as handle:
            splits = json.load(handle).get("splits") or []
        if len(splits) != 1:
            raise ValueError(
                f"{where} holds a DatasetDict with splits {splits}; pass one split's folder as the input, "
                f"e.g. {posixpath.join(where, splits[0]) if splits else where + '/train'}"
            )
        return datasets_arrow_files(fs, posixpath.join(path, splits[0]), posixpath.join(where, splits[0]))
    state_file = posixpath.join(path, STATE_FILE)
    with fs.open(state_file, "rb") as handle:
        try:
            state = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{posixpath.join(where, STATE_FILE)} is not valid JSON: {error}") from error
    entries = state.get("_data_files")
    if not entries:
        raise ValueError(f"{posixpath.join(where, STATE_FILE)} lists no data files (_data_files is empty)")
    files = [posixpath.join(path, entry["filename"]) for entry in entries]
    for file in files:
        if not fs.isfile(file):
            raise FileNotFoundError(f"{where}/{STATE_FILE} names {posixpath.basename(file)}, which does not exist")
    return files


def record_batches(source) -> Iterator[pa.RecordBatch]:
    """Record batches of an Arrow IPC stream; falls back to the IPC file format, which some writers use."""
    data = source.read_buffer() if hasattr(source, "read_buffer") else pa.py_buffer(source.read())
    try:
        reader = pa.ipc.open_stream(data)
    except pa.ArrowInvalid:
        file_reader = pa.ipc.open_file(data)
        for index in range(file_reader.num_record_batches):
            yield file_reader.get_batch(index)
        return
    yield from reader


def arrow_file_schema(fs: fsspec.AbstractFileSystem, path: str) -> pa.Schema:
    with fs.open(path, "rb") as handle:
        data = pa.py_buffer(handle.read())
    try:
        return pa.ipc.open_stream(data).schema
    except pa.ArrowInvalid:
        try:
            return pa.ipc.open_file(data).schema
        except pa.ArrowInvalid as error:
            raise ValueError(f"{path} is neither an Arrow IPC stream nor an Arrow IPC file: {error}") from error


class ArrowStreamDatasource(FileBasedDatasource):
    """Ray datasource over Arrow IPC files that keeps only `columns`."""

    _FILE_EXTENSIONS = ("arrow",)

    def __init__(self, paths: list[str], columns: list[str], **kwargs):
        super().__init__(paths, **kwargs)
        self._columns = list(columns)

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        for batch in record_batches(f):
            yield pa.Table.from_batches([batch]).select(self._columns)

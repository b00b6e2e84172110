"""The input files of a run as commit units: each file's identity (path, size, version), its row count, and groups.

A job commits its output one *group* of input files at a time (jobs/commit.py): a group's rows are committed once
every one of them is written, so a run that is killed keeps the groups it finished and a rerun redoes only the rest.
Consecutive files (in path order) are grouped until they hold `commit_bytes` of input, so that a corpus of many
small files does not become as many tiny output files; a file at least that large is a group of its own.

A file is identified by its path and by what its filesystem reports about its content: size, and the ETag (object
stores), generation (GCS) or modification time (local disks). A file that changed is a new input. The row counts,
from the Parquet footers (or by scanning Arrow streams), are what tell a complete group from a partial one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import fsspec
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from textbatch.redact import redact

DEFAULT_COMMIT_BYTES = 128 * 1024**2
# What filesystems report about a file's content, most specific first (s3fs, gcsfs, adlfs, local).
_VERSION_FIELDS = ("ETag", "etag", "generation", "VersionId", "mtime", "LastModified", "updated", "last_modified")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file: `path` on its filesystem (no protocol), `size` in bytes, `version` (ETag or mtime), `rows`
    (-1 until counted)."""

    path: str
    size: int
    version: str
    rows: int

    @property
    def identity(self) -> tuple[str, int, str]:
        """What must match for an earlier run's output of this file to count as this file's output. The path is
        compared redacted, as the manifest records it."""
        return redact(self.path), self.size, self.version

    def record(self) -> dict:
        """As the manifest and the attempt files record it (the path redacted)."""
        return {"path": redact(self.path), "size": self.size, "version": self.version, "rows": self.rows}

    @classmethod
    def from_record(cls, record: dict) -> InputFile:
        return cls(str(record["path"]), int(record["size"]), str(record["version"]), int(record["rows"]))


@dataclasses.dataclass(frozen=True)
class InputGroup:
    """Input files committed together; `key` names the group by its files' identities."""

    files: tuple[InputFile, ...]

    @property
    def key(self) -> str:
        identities = json.dumps([list(file.identity) for file in self.files])
        return hashlib.sha256(identities.encode()).hexdigest()[:16]

    @property
    def rows(self) -> int:
        return sum(file.rows for file in self.files)

    @property
    def label(self) -> str:
        """The start of the group's part file names: readable, and safe whatever the input file was called."""
        return f"part-{safe_stem(self.files[0].path)}-{self.key[:8]}"

    def record(self) -> dict:
        return {"key": self.key, "rows": self.rows, "files": [file.record() for file in self.files]}

    @classmethod
    def from_record(cls, record: dict) -> InputGroup:
        return cls(tuple(InputFile.from_record(file) for file in record["files"]))


def safe_stem(path: str, limit: int = 40) -> str:
    """A file name's stem reduced to letters, digits, "-" and "_": nothing derived from an input name can reach
    outside the output folder or hide a file ("..", "/", a leading "." or "_")."""
    stem = posixpath.basename(path.rstrip("/")).split("?")[0]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = _UNSAFE.sub("-", stem).strip("-_")[:limit].strip("-_")
    return stem or "input"


def file_version(info: dict) -> str:
    """The most specific content version a filesystem reports for a file (`fs.info(path)`)."""
    for field in _VERSION_FIELDS:
        value = info.get(field)
        if value not in (None, ""):
            return f"{field}={value}".replace('"', "")
    return "unknown"


def count_rows(fs: fsspec.AbstractFileSystem, path: str, kind: str) -> int:
    """Rows of one input file: the Parquet footer's count, or the sum over an Arrow stream's record batches."""
    if kind == "parquet":
        with fs.open(path, "rb") as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    local = getattr(fs, "local_file", False) or type(fs).__name__ == "LocalFileSystem"
    source = pa.memory_map(path) if local else pa.py_buffer(fs.cat_file(path))  # memory_map: no copy of a big file
    try:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(source)
        return sum(reader.get_batch(index).num_rows for index in range(reader.num_record_batches))


def describe_inputs(fs: fsspec.AbstractFileSystem, paths: Sequence[str]) -> list[InputFile]:
    """Size and version of each input file, in the order given, from one listing per folder (not one request per
    file); `rows` is left at -1 until `with_row_counts` counts them (only for the files a run will process)."""
    folders: dict[str, dict[str, dict]] = {}
    described = []
    for path in paths:
        parent = posixpath.dirname(path)
        if parent not in folders:
            try:
                folders[parent] = {entry["name"]: entry for entry in fs.ls(parent, detail=True)}
            except (OSError, ValueError, NotImplementedError):  # e.g. HTTP "folders": ask per file instead
                folders[parent] = {}
        info = folders[parent].get(path) or fs.info(path)
        described.append(InputFile(path, int(info.get("size") or 0), file_version(info), -1))
    return described


def with_row_counts(fs: fsspec.AbstractFileSystem, files: Sequence[InputFile], kind: str) -> list[InputFile]:
    """The files with their row counts (Parquet footers, Arrow streams); object stores are asked in parallel."""

    def counted(file: InputFile) -> InputFile:
        return dataclasses.replace(file, rows=count_rows(fs, file.path, kind))

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(counted, files))


def group_inputs(files: Iterable[InputFile], commit_bytes: int) -> list[InputGroup]:
    """Consecutive files (in path order) gathered until a group holds at least `commit_bytes`."""
    groups: list[InputGroup] = []
    current: list[InputFile] = []
    for file in sorted(files, key=lambda file: file.path):
        current.append(file)
        if sum(member.size for member in current) >= commit_bytes:
            groups.append(InputGroup(tuple(current)))
            current = []
    if current:
        groups.append(InputGroup(tuple(current)))
    return groups

"""Read a job's output folder (a local path or any fsspec URL) into pyarrow or pandas, with the run's metadata.

    from textbatch.outputs import read_output
    output = read_output("s3://bucket/embeddings/")
    output.job, output.metadata["model"]          # "embed", what the run recorded about itself
    frame = output.to_pandas()                     # or output.to_arrow(columns=["id", "embedding"])

Which files are the output: when the folder holds a manifest (`_SUCCESS`), exactly the files it lists, so that files
of a run that did not finish are never read; otherwise every `*.parquet` file under the folder, in name order, except
under folders whose names start with `_` or `.` (`_temporary/` holds the parts of runs that have not committed; Spark,
pyarrow and pandas skip such folders too). A textbatch job always writes a manifest (textbatch/jobs/commit.py); a
folder holding nothing but a `_temporary/` is a run that never committed, and reading it is an error.
A manifest is JSON (`{"files": ["part-0.parquet", ...]}`, entries may also be `{"path": ...}` objects) or plain text
with one name per line, names relative to the folder; an empty `_SUCCESS` only marks the run complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from textbatch.redact import redact

logger = logging.getLogger(__name__)

__all__ = ["MANIFEST_NAME", "STAGING_DIR", "JobOutput", "output_files", "read_output"]

MANIFEST_NAME = "_SUCCESS"
STAGING_DIR = "_temporary"  # where runs write before they commit (textbatch/jobs/commit.py)
METADATA_PREFIX = "textbatch."  # the key prefix operators.write uses (not imported from there: that pulls in Ray)


@dataclasses.dataclass(frozen=True)
class JobOutput:
    """One job's output: its files, the run metadata they carry (`textbatch.<job>`), and readers of the rows."""

    location: str
    files: tuple[str, ...]
    job: str
    metadata: dict[str, Any]
    filesystem: fsspec.AbstractFileSystem = dataclasses.field(repr=False)

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        tables = [pq.read_table(path, columns=columns, filesystem=self.filesystem) for path in self.files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def to_pandas(self, columns: list[str] | None = None):
        """A pandas DataFrame (needs pandas); list columns such as `embedding` hold one numpy array per row."""
        return self.to_arrow(columns).to_pandas()


def output_files(location: str) -> tuple[list[str], fsspec.AbstractFileSystem]:
    """(the output's Parquet files, the filesystem they are on): the manifest's list when there is one."""
    fs, root = fsspec.core.url_to_fs(location)
    where = redact(location)
    if not fs.isdir(root):
        raise FileNotFoundError(f"no job output at {where}: not a folder")
    manifest = posixpath.join(root, MANIFEST_NAME)
    has_manifest = fs.exists(manifest)
    listed = _manifest_entries(fs.cat_file(manifest), redact(manifest)) if has_manifest else []
    if listed:
        files = [posixpath.join(root, name) for name in listed]
        missing = [path for path in files if not fs.exists(path)]
        if missing:
            raise FileNotFoundError(
                f"{redact(manifest)} lists {len(missing)} file(s) that are not there, e.g. {redact(missing[0])}"
            )
        return files, fs
    files = sorted(
        path
        for path in fs.find(root)
        if path.endswith(".parquet")
        and not any(name.startswith(("_", ".")) for name in posixpath.relpath(path, root).split("/"))
    )
    if not files and fs.isdir(posixpath.join(root, STAGING_DIR)):
        raise FileNotFoundError(
            f"no committed output at {where}: a run started writing there ({STAGING_DIR}/) but never committed "
            f"(no {MANIFEST_NAME}); rerun the job with the same arguments to finish it"
        )
    if not files:
        raise FileNotFoundError(f"no Parquet files in {where}; has the job run?")
    return files, fs


def read_output(location: str) -> JobOutput:
    """The job output at `location`; raises FileNotFoundError when there is none, KeyError when the files carry no
    textbatch run metadata."""
    files, fs = output_files(location)
    with fs.open(files[0], "rb") as handle:
        schema_metadata = pq.read_schema(handle).metadata or {}
    for key, raw in schema_metadata.items():
        if key.startswith(METADATA_PREFIX.encode()):
            job = key.decode()[len(METADATA_PREFIX) :]
            return JobOutput(location, tuple(files), job, json.loads(raw), fs)
    raise KeyError(f"{redact(files[0])} has no {METADATA_PREFIX}<job> metadata; was it written by a textbatch job?")


def _manifest_entries(raw: bytes, where: str) -> list[str]:
    """File names relative to the output folder, from a manifest's bytes (empty: no list)."""
    text = raw.decode("utf-8").strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not valid JSON: {error}") from error
        entries = parsed.get("files", []) if isinstance(parsed, dict) else parsed
        names = [entry["path"] if isinstance(entry, dict) else entry for entry in entries]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    for name in names:
        if not isinstance(name, str) or name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"{where} lists {name!r}; entries must be names inside the output folder")
    return names

"""Input files as commit units: identity (path, size, version), row counts from Parquet footers and Arrow streams,
grouping by size, and safe part names."""

from __future__ import annotations

import os

import fsspec
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from textbatch.jobs.input_groups import (
    InputFile,
    describe_inputs,
    file_version,
    group_inputs,
    safe_stem,
    with_row_counts,
)


def test_describe_counts_rows_and_notices_a_rewrite(tmp_path):
    fs = fsspec.filesystem("file")
    pq.write_table(pa.table({"id": range(7)}), tmp_path / "a.parquet", row_group_size=3)
    schema = pa.schema([("id", pa.int64())])
    with pa.OSFile(str(tmp_path / "b.arrow"), "wb") as sink, pa.ipc.new_stream(sink, schema) as stream:
        for start in (0, 4):
            stream.write_table(pa.table({"id": pa.array(range(start, start + 4), pa.int64())}))
    parquet, arrow = describe_inputs(fs, [str(tmp_path / "a.parquet"), str(tmp_path / "b.arrow")])
    assert (parquet.rows, arrow.rows) == (-1, -1)  # not counted until a run is to process them
    assert with_row_counts(fs, [parquet], "parquet")[0].rows == 7
    assert with_row_counts(fs, [arrow], "arrow")[0].rows == 8
    assert parquet.size == os.path.getsize(tmp_path / "a.parquet") and parquet.version.startswith("mtime=")
    os.utime(tmp_path / "a.parquet", ns=(1, 10**18))  # same bytes, touched: a new version of the file
    assert describe_inputs(fs, [str(tmp_path / "a.parquet")])[0].identity != parquet.identity


def test_object_store_versions_prefer_the_etag():
    assert file_version({"ETag": '"abc"', "LastModified": "2026"}) == "ETag=abc"
    assert file_version({"generation": 7, "updated": "x"}) == "generation=7"
    assert file_version({}) == "unknown"


def test_groups_gather_consecutive_files_up_to_the_size():
    files = [InputFile(f"/c/{name}", size, "v", 1) for name, size in (("d", 50), ("a", 10), ("c", 200), ("b", 60))]
    groups = group_inputs(files, commit_bytes=64)
    assert [[file.path[-1] for file in group.files] for group in groups] == [["a", "b"], ["c"], ["d"]]
    assert len({group.key for group in groups}) == 3
    assert group_inputs(files, commit_bytes=1)[0].files == (files[1],)


def test_safe_stems():
    assert safe_stem("s3://b/x/2026-01-01 dump.parquet") == "2026-01-01-dump"
    assert safe_stem("../..") == "input" and safe_stem("/x/.hidden.parquet") == "hidden"
    assert safe_stem("a" * 100 + ".parquet") == "a" * 40
    assert safe_stem("https://host/file.parquet?sig=secret") == "file"

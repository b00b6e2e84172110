"""Read step: Parquet (a file, a folder, a glob, any fsspec URL) or a `datasets` `save_to_disk` folder -> (id, text).

The input is resolved on the driver first (list the files, read the first file's schema), so a wrong path, a missing
column or a non-text column fails at once with a message naming it, before any Ray task starts.

With `sources` (input file -> group index, from the job's commit plan: textbatch/jobs/commit.py), exactly those files
are read and each row gets a `_group` column naming its input group, so that the write step can commit each group's
rows on their own; Ray Data's `include_paths` says which file a row came from.

Local paths are made absolute, because Ray workers do not share the driver's working directory. `memory://` URLs
resolve here but cannot be read by Ray workers (each process has its own memory filesystem); use a local folder, a
`file://`, `s3://` or `gs://` URL instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
from collections.abc import Mapping

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from textbatch.operators.datasets_folder import (
    ArrowStreamDatasource,
    arrow_file_schema,
    datasets_arrow_files,
    is_datasets_folder,
)
from textbatch.redact import redact

logger = logging.getLogger(__name__)

ID = "id"
TEXT = "text"
TEXT_PAIR = "text_pair"
GROUP = "_group"  # the input group a row came from (int32)
FILE_PATH = "path"  # the column Ray Data's include_paths adds
_GLOB_CHARS = "*?["


@dataclasses.dataclass(frozen=True)
class InputFiles:
    """What `--input` resolved to: the data files, their format and the filesystem that holds them."""

    where: str  # the input as the user wrote it, credentials redacted: for messages
    kind: str  # "parquet" or "arrow"
    paths: tuple[str, ...]  # paths on `fs` (no protocol)
    fs: fsspec.AbstractFileSystem

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def schema(self) -> pa.Schema:
        """Schema of the first file (the others are checked by the readers as they go)."""
        first = self.paths[0]
        if self.kind == "arrow":
            return arrow_file_schema(self.fs, first)
        try:
            with self.fs.open(first, "rb") as handle:
                return pq.read_schema(handle)
        except (pa.ArrowInvalid, OSError) as error:
            where = redact(self.fs.unstrip_protocol(first))
            raise ValueError(f"{where} is not a readable Parquet file: {error}") from error


def _is_data_file(path: str) -> bool:
    # Spark/Hadoop leave _SUCCESS, .crc and similar files beside the data.
    name = posixpath.basename(path)
    return not name.startswith(("_", ".")) and name.endswith((".parquet", ".parq", ".pq"))


def resolve_input(input_path: str | os.PathLike) -> InputFiles:
    """List the data files of `input_path`. Raises FileNotFoundError/ValueError naming the input when there are none."""
    where = os.fspath(input_path)
    if "://" not in where:
        where = os.path.abspath(os.path.expanduser(where))
    fs, path = fsspec.core.url_to_fs(where)
    fs.invalidate_cache()  # fsspec caches listings per process: see the files added since an earlier run in it
    where = redact(where)  # from here on only for messages
    if any(char in path for char in _GLOB_CHARS):
        matches = sorted(match for match in fs.glob(path) if fs.isfile(match))
        arrow = [match for match in matches if match.endswith(".arrow")]
        parquet = [match for match in matches if _is_data_file(match)]
        if parquet and arrow:
            raise ValueError(f"--input {where!r} matches both Parquet and Arrow files; narrow the pattern to one kind")
        if not matches or not (parquet or arrow):
            raise FileNotFoundError(f"--input {where!r} matches no .parquet or .arrow files")
        return InputFiles(where, "arrow" if arrow else "parquet", tuple(arrow or parquet), fs)
    if fs.isdir(path):
        if is_datasets_folder(fs, path):
            return InputFiles(where, "arrow", tuple(datasets_arrow_files(fs, path, where)), fs)
        files = sorted(file for file in fs.find(path) if _is_data_file(file))
        if not files:
            raise FileNotFoundError(
                f"--input {where!r} is a folder with no .parquet files (and no state.json of a datasets folder)"
            )
        return InputFiles(where, "parquet", tuple(files), fs)
    if fs.isfile(path):
        return InputFiles(where, "arrow" if path.endswith(".arrow") else "parquet", (path,), fs)
    raise FileNotFoundError(f"--input {where!r}: no such file or folder")


def is_text_type(kind: pa.DataType) -> bool:
    """Can a column of this type hold texts: strings, bytes (decoded as UTF-8 row by row), or nothing but nulls (a
    column a writer saw no text in, e.g. pandas' all-None object column)."""
    texty = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    if hasattr(pa.types, "is_string_view"):
        texty += (pa.types.is_string_view, pa.types.is_binary_view)
    return pa.types.is_null(kind) or any(test(kind) for test in texty)


def check_text_columns(
    schema: pa.Schema, text_column: str, id_column: str, where: str, pair_column: str | None = None
) -> None:
    """Fail early when the id, text or pair column is missing, or a text column does not hold text."""
    options = [("--id-column", id_column), ("--text-column", text_column)]
    if pair_column is not None:
        options.append(("--text-pair-column", pair_column))
    for at, (option, name) in enumerate(options):
        for other_option, other in options[:at]:
            if name == other:
                raise ValueError(f"{other_option} and {option} are both {name!r}; they must name different columns")
    for option, name in options:
        if name not in schema.names:
            raise KeyError(f"{where} has no column {name!r} ({option}); its columns are {schema.names}")
    for option, name in options[1:]:
        kind = schema.field(name).type
        if not is_text_type(kind):
            raise TypeError(
                f"column {name!r} of {where} has type {kind}; the {option} column must hold strings "
                f"(pick another with {option})"
            )


def _arrow_filesystem(files: InputFiles):
    """None for local files (Ray's own local filesystem), else the same fsspec filesystem that listed the files."""
    if files.is_local:
        return None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(files.fs))


def read_texts(
    input_path: str | os.PathLike | InputFiles,
    *,
    text_column: str = TEXT,
    id_column: str = ID,
    pair_column: str | None = None,
    num_cpus: float | None = None,
    sources: Mapping[str, int] | None = None,
):
    """A Ray Dataset with columns `id` and `text` (renamed from `id_column`/`text_column`), and `text_pair` (from
    `pair_column`, when given), one row per input row; with `sources`, only those files, and a `_group` column.

    `input_path` may be what `resolve_input` (or preflight.check_input) resolved, to read just those files.
    `num_cpus` is what each read task reserves (Ray's default is 1).
    """
    import ray.data

    files = input_path if isinstance(input_path, InputFiles) else resolve_input(input_path)
    check_text_columns(files.schema(), text_column, id_column, files.where, pair_column)
    columns = [id_column, text_column] + ([pair_column] if pair_column is not None else [])
    paths = list(files.paths) if sources is None else list(sources)
    if sources is not None and FILE_PATH in columns:
        raise ValueError(
            f"the input column {FILE_PATH!r} cannot be read: Ray Data names its input file column so; "
            "rename it in the input"
        )
    logger.info("reading %d of %d %s file(s) from %s", len(paths), len(files.paths), files.kind, files.where)
    read_columns = columns + ([FILE_PATH] if sources is not None else [])
    filesystem = _arrow_filesystem(files)
    if files.kind == "parquet":
        # select_columns is pushed down into the Parquet scan: only these columns are read.
        dataset = ray.data.read_parquet(
            paths, filesystem=filesystem, partitioning=None, num_cpus=num_cpus, include_paths=sources is not None
        ).select_columns(read_columns)
    else:
        source = ArrowStreamDatasource(paths, columns, filesystem=filesystem, include_paths=sources is not None)
        dataset = ray.data.read_datasource(source, num_cpus=num_cpus)
    if sources is not None:
        dataset = dataset.map_batches(
            tag_groups, fn_kwargs={"sources": dict(sources)}, batch_format="pyarrow", batch_size=None,
            num_cpus=num_cpus,
        )
    wanted = ((id_column, ID), (text_column, TEXT), (pair_column, TEXT_PAIR))
    renames = {old: new for old, new in wanted if old is not None and old != new}
    if renames:
        # Park them under temporary names first, so swapping "id" and "text" works too.
        dataset = dataset.rename_columns({old: f"__{new}" for old, new in renames.items()})
        dataset = dataset.rename_columns({f"__{new}": new for new in renames.values()})
    return dataset


def tag_groups(batch: pa.Table, sources: Mapping[str, int]) -> pa.Table:
    """Replace Ray's `path` column by `_group`, the index of the row's input group."""
    paths = batch.column(FILE_PATH)
    seen = pc.unique(paths)
    try:
        indices = pa.array([sources[path] for path in seen.to_pylist()], pa.int32())
    except KeyError as error:
        raise ValueError(f"read {redact(error.args[0])}, a file the run did not plan to read") from None
    groups = pc.take(indices, pc.index_in(paths, value_set=seen))
    return batch.drop_columns([FILE_PATH]).append_column(GROUP, groups)

"""Preflight: the input files checked on the driver before any model is loaded, so that a bad file stops a job at
once, by name, rather than hours later inside an actor.

Each file is checked from its Parquet footer (an Arrow file of a `datasets` folder is read whole): it must be a
readable Parquet file (a truncated or foreign file is not), hold the id and text columns (and the pair column, when
there is one), each text column of a text type (string, binary, or null: all values null), and the id column of the
same type as in the other files. Then the id column of every file is read, the only data read here: no id may be
null, and no id may appear twice, within a file or across files. Finally the input must have rows. A data page that
is corrupt behind a sound footer is not seen here; the read fails on it.

`on_bad_file="fail"` (the default) raises `BadInputError` naming every bad file and its problem. `"skip"` leaves the
bad files out, logs them, and returns them in `CheckedInput.skipped`, which the job lists in its summary and its
output's metadata. An input with no good file, or with no rows, fails either way. A duplicate id is blamed on the
later file in path order: when skipping, the first file holding an id keeps it.

File inspections run in a few threads, as they wait on storage (footers of many files on S3 or GCS).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from textbatch.operators.datasets_folder import record_batches
from textbatch.operators.read import InputFiles, is_text_type, resolve_input
from textbatch.redact import redact

logger = logging.getLogger(__name__)

ON_BAD_FILE = ("fail", "skip")
_THREADS = 16
_LISTED = 10  # bad files named in one message


class BadInputError(ValueError):
    """The input cannot be processed as it is; the message names the file(s) and the problem."""


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    path: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem}


@dataclasses.dataclass(frozen=True)
class CheckedInput:
    """What the job reads: the good files (as `read_texts` takes them), the files left out, and the rows."""

    files: InputFiles
    skipped: tuple[SkippedFile, ...]
    rows: int


@dataclasses.dataclass(frozen=True)
class ColumnOptions:
    """The columns the job reads, with the option that names each (for messages)."""

    id_column: str
    text_column: str
    pair_column: str | None = None

    def texts(self) -> list[tuple[str, str]]:
        named = [("--text-column", self.text_column)]
        return named + ([("--text-pair-column", self.pair_column)] if self.pair_column is not None else [])


@dataclasses.dataclass
class _File:
    """What one file's inspection found."""

    path: str  # as shown to the user
    rows: int = 0
    id_type: pa.DataType | None = None
    ids: pa.Array | None = None
    problem: str | None = None


def check_input(
    input_path: str | os.PathLike,
    *,
    text_column: str = "text",
    id_column: str = "id",
    pair_column: str | None = None,
    on_bad_file: str = "fail",
) -> CheckedInput:
    """Check every file of `input_path` (see the module's docstring); raise BadInputError, or skip the bad files."""
    if on_bad_file not in ON_BAD_FILE:
        raise ValueError(f"on_bad_file must be one of {ON_BAD_FILE}, got {on_bad_file!r}")
    try:
        files = resolve_input(input_path)
    except (FileNotFoundError, ValueError) as error:
        raise BadInputError(str(error)) from error
    columns = ColumnOptions(id_column, text_column, pair_column)
    with ThreadPoolExecutor(max_workers=min(_THREADS, len(files.paths))) as pool:
        found = list(pool.map(lambda path: _inspect(files, path, columns), files.paths))
    _check_id_types(found, columns)
    _check_duplicates(found)

    bad = [SkippedFile(file.path, file.problem) for file in found if file.problem is not None]
    good = [(path, file) for path, file in zip(files.paths, found) if file.problem is None]
    if bad and (on_bad_file == "fail" or not good):
        raise BadInputError(_bad_files_message(bad, files.where, skipping=on_bad_file == "skip"))
    for skipped in bad:
        logger.warning("skipping %s: %s", skipped.path, skipped.problem)
    rows = sum(file.rows for _, file in good)
    if rows == 0:
        raise BadInputError(f"--input {files.where} has no rows: nothing to do")
    kept = dataclasses.replace(files, paths=tuple(path for path, _ in good))
    return CheckedInput(files=kept, skipped=tuple(bad), rows=rows)


def _bad_files_message(bad: list[SkippedFile], where: str, skipping: bool) -> str:
    lines = [f"{file.path}: {file.problem}" for file in bad[:_LISTED]]
    if len(bad) > _LISTED:
        lines.append(f"... and {len(bad) - _LISTED} more")
    if skipping:
        head = f"every file of --input {where} is bad:"
    elif len(bad) == 1:
        return f"{lines[0]}\n(--on-bad-file skip goes on without it)"
    else:
        head = f"{len(bad)} bad input files (--on-bad-file skip goes on without them):"
    return "\n".join([head, *(f"  {line}" for line in lines)])


def _inspect(files: InputFiles, path: str, columns: ColumnOptions) -> _File:
    """One file: readable, its columns and their types, its row count and ids."""
    shown = path if files.is_local else redact(files.fs.unstrip_protocol(path))  # in messages, metadata, summary
    file = _File(shown)
    try:
        if files.kind == "parquet":
            with files.fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                schema, file.rows = parquet.schema_arrow, parquet.metadata.num_rows
                file.problem = _column_problem(schema, columns)
                if file.problem is None:
                    file.ids = parquet.read(columns=[columns.id_column]).column(0).combine_chunks()
        else:
            schema, table = _read_arrow(files, path)
            file.rows = table.num_rows
            file.problem = _column_problem(schema, columns)
            if file.problem is None:
                file.ids = table.column(columns.id_column).combine_chunks()
    except Exception as error:  # noqa: BLE001 - whatever the reader says, this file cannot be read
        kind = "Parquet" if files.kind == "parquet" else "Arrow"
        file.problem = redact(f"not a readable {kind} file ({type(error).__name__}: {error})")
        return file
    if file.ids is not None:
        file.id_type = file.ids.type
        if file.ids.null_count:
            nulls = file.ids.null_count
            file.problem = f"{nulls} null id{'s' if nulls > 1 else ''} in column {columns.id_column!r} (--id-column)"
    return file


def _read_arrow(files: InputFiles, path: str) -> tuple[pa.Schema, pa.Table]:
    with files.fs.open(path, "rb") as handle:
        batches = list(record_batches(handle))
    if not batches:
        raise ValueError("no record batches")
    return batches[0].schema, pa.Table.from_batches(batches)


def _column_problem(schema: pa.Schema, columns: ColumnOptions) -> str | None:
    for option, name in [("--id-column", columns.id_column), *columns.texts()]:
        if name not in schema.names:
            return f"no column {name!r} ({option}); its columns are {schema.names}"
    for option, name in columns.texts():
        kind = schema.field(name).type
        if not is_text_type(kind):
            return f"column {name!r} ({option}) has type {kind}, not text (string or binary)"
    return None


def _check_id_types(found: list[_File], columns: ColumnOptions) -> None:
    """Every file's ids must be of the first good file's type (Ray Data could not put them in one column)."""
    first = next((file for file in found if file.problem is None), None)
    for file in found:
        if file.problem is None and file.id_type != first.id_type:
            file.problem = (
                f"column {columns.id_column!r} (--id-column) has type {file.id_type}, but {first.id_type} in "
                f"{first.path}"
            )


def _check_duplicates(found: list[_File]) -> None:
    """Mark the files holding an id twice, or an id that an earlier good file holds."""
    numbered = [(number, file) for number, file in enumerate(found) if file.problem is None and len(file.ids)]
    if not numbered:
        return
    table = pa.table(
        {
            "id": pa.concat_arrays([file.ids for _, file in numbered]),
            "file": pa.concat_arrays([pa.array([number] * len(file.ids), pa.int32()) for number, file in numbered]),
        }
    )
    per_file = table.group_by(["id", "file"]).aggregate([([], "count_all")])  # id, file, count_all
    twice = per_file.filter(pc.greater(per_file["count_all"], 1))
    for id_value, number, count in zip(*(twice[name].to_pylist() for name in ("id", "file", "count_all"))):
        if found[number].problem is None:
            found[number].problem = f"id {id_value!r} appears {count} times"
    # Files sharing ids: (file, earlier file, an id they share), from the ids held by more than one file.
    files_per_id = per_file.group_by("id").aggregate([([], "count_all")])
    shared = files_per_id.filter(pc.greater(files_per_id["count_all"], 1))["id"]
    if not len(shared):
        return
    holders = per_file.filter(pc.is_in(per_file["id"], value_set=shared.combine_chunks())).select(["id", "file"])
    pairs = holders.join(holders.rename_columns(["id", "earlier"]), keys="id")
    pairs = pairs.filter(pc.less(pairs["earlier"], pairs["file"])).group_by(["file", "earlier"]).aggregate(
        [("id", "min")]
    )
    earlier_of: dict[int, list[tuple[int, object]]] = {}
    for number, earlier, id_value in zip(*(pairs[name].to_pylist() for name in ("file", "earlier", "id_min"))):
        earlier_of.setdefault(number, []).append((earlier, id_value))
    for number, file in numbered:  # in path order, so that a skipped file does not blame the files after it
        if file.problem is not None:
            continue
        clashes = [(earlier, key) for earlier, key in earlier_of.get(number, []) if found[earlier].problem is None]
        if clashes:
            earlier, id_value = min(clashes, key=lambda clash: clash[0])
            file.problem = f"id {id_value!r} is also in {found[earlier].path}"

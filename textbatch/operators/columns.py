"""The one check every operator makes first: are the columns it needs in the batch? And how each adds its own.

Failing here, with the operator's name and the columns that are there, beats a KeyError deep inside a Ray actor.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa


class MissingColumnError(KeyError):
    """A batch lacks a column an operator needs."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def require_columns(table: pa.Table, needed: Iterable[str], operator: str) -> None:
    """Raise `MissingColumnError` naming the first column of `needed` that `table` lacks."""
    present = table.column_names
    for name in needed:
        if name not in present:
            raise MissingColumnError(
                f"{operator} needs a column {name!r}, but the batch has only {present}. "
                f"Check the column options of the job (e.g. --text-column / --id-column)."
            )


def set_columns(table: pa.Table, columns: Iterable[tuple[str, pa.Array]]) -> pa.Table:
    """`table` with each (name, array) appended, replacing a column of that name: an operator run again over its
    own output replaces its columns, never duplicates them."""
    for name, column in columns:
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, column)
    return table

"""Texts out of an Arrow column, the way every job takes them: decoded, checked, and cut to `max_chars` characters.

The rule for each value (the README's "Bad rows" states the same):
- null: error "text is null";
- bytes (a binary column, or a string column whose bytes are not UTF-8: Parquet writers let those through, and
  Arrow would fail the whole batch on them) are decoded as UTF-8; bytes that are not UTF-8 get
  error "text is not valid UTF-8: <what and where>";
- any other non-string (only from sources other than Parquet and Arrow): error "text is not a string: <type>";
- longer than `max_chars` characters: the first `max_chars` are kept and the row is flagged as cut. The cut happens
  on the Arrow bytes, before any Python string or token exists, so a 50 MB row costs no more than `max_chars`;
- empty, whitespace-only, NUL and other control characters are not errors: the text goes on unchanged, and the
  tokenizer does with it what transformers' tokenizer does (whitespace alone gives the special tokens only; NUL is
  an unknown piece for XLM-R and T5).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textbatch.operators.row_errors import (
    NOT_A_STRING,
    NOT_UTF8,
    NULL_TEXT,
    error_message,
)

_BYTES_PER_CHAR = 4  # the most UTF-8 spends on one character


@dataclasses.dataclass
class ColumnTexts:
    """One column's values: exactly one of `texts[i]` and `errors[i]` is None; `cut[i]`: shortened to max_chars."""

    texts: list[str | None]
    errors: list[str | None]
    cut: np.ndarray


def as_text(value, name: str = "text", cut_bytes: bool = False) -> tuple[str | None, str | None]:
    """(text, error) of one value; `cut_bytes`: the bytes were cut short, so a character split at their end is
    dropped rather than reported. `name` is the column's name in messages ("text", "text_pair")."""
    if value is None:
        return None, NULL_TEXT.replace("text", name, 1)
    if isinstance(value, str):
        return value, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError as error:
            if cut_bytes and error.reason == "unexpected end of data":
                return data[: error.start].decode("utf-8"), None  # the cut split the last character
            detail = f"{error.reason} at byte {error.start}"
            return None, error_message(NOT_UTF8.replace("text", name, 1), detail)
    return None, error_message(NOT_A_STRING.replace("text", name, 1), type(value).__name__)


def _as_bytes(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A string column seen as bytes (no copy, no UTF-8 check); other columns as they are."""
    kind = column.type
    if pa.types.is_string(kind):
        return column.cast(pa.binary())
    if pa.types.is_large_string(kind):
        return column.cast(pa.large_binary())
    if hasattr(pa.types, "is_string_view") and (pa.types.is_string_view(kind) or pa.types.is_binary_view(kind)):
        return column.cast(pa.large_binary())  # the slicing kernel does not take views
    return column


def column_texts(column: pa.ChunkedArray | pa.Array, max_chars: int | None, name: str = "text") -> ColumnTexts:
    """The texts of `column` (string, binary or null typed) with their errors, cut to `max_chars` (None: whole)."""
    column = _as_bytes(column)
    is_bytes = pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
    long_bytes = np.zeros(len(column), dtype=bool)
    if max_chars is not None and is_bytes and len(column):
        limit = _BYTES_PER_CHAR * max_chars  # more bytes than this means more characters than max_chars
        long_bytes = np.asarray(pc.fill_null(pc.greater(pc.binary_length(column), limit), False), dtype=bool)
        if long_bytes.any():
            column = pc.binary_slice(column, 0, limit)
    texts: list[str | None] = []
    errors: list[str | None] = []
    cut = np.zeros(len(column), dtype=bool)
    for index, value in enumerate(column.to_pylist()):
        text, error = as_text(value, name, cut_bytes=bool(long_bytes[index]))
        if text is not None and max_chars is not None and (long_bytes[index] or len(text) > max_chars):
            text, cut[index] = text[:max_chars], True
        texts.append(text)
        errors.append(error)
    return ColumnTexts(texts, errors, cut)

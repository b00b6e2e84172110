"""Texts out of Arrow columns (operators/texts.py) and the tokenize step's handling of odd texts, without Ray."""

from __future__ import annotations

import pyarrow as pa
import pytest
import transformers

from textbatch.jobs.embed import TINY_MODEL
from textbatch.operators.texts import column_texts
from textbatch.operators.tokenize import CUT_AT_MAX_CHARS, Tokenize


def string_column_with_bytes(values: list[bytes]) -> pa.Array:
    """A string column holding arbitrary bytes, as some Parquet writers produce (Arrow does not check them)."""
    as_binary = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(values), as_binary.buffers(), null_count=as_binary.null_count)


def test_values_become_texts_or_errors():
    got = column_texts(string_column_with_bytes([b"caf\xc3\xa9", b"ab\xffcd", b""]), max_chars=None)
    assert got.texts == ["café", None, ""]
    assert got.errors == [None, "text is not valid UTF-8: invalid start byte at byte 2", None]
    got = column_texts(pa.array([None, None], pa.null()), max_chars=10, name="text_pair")
    assert got.texts == [None, None] and got.errors == ["text_pair is null"] * 2
    got = column_texts(pa.array(["a\x00b", "\x01\x07", "  "]), max_chars=10)
    assert got.texts == ["a\x00b", "\x01\x07", "  "] and got.errors == [None] * 3  # passed on unchanged


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.binary(), pa.string_view()])
def test_texts_are_cut_to_max_chars_on_character_boundaries(kind):
    values = ["abcdef", "ééé", "😀😀😀😀x", "abc", None]
    if pa.types.is_binary(kind):
        values = [None if value is None else value.encode() for value in values]
    got = column_texts(pa.chunked_array([pa.array(values, kind)]), max_chars=3)
    assert got.texts == ["abc", "ééé", "😀😀😀", "abc", None]
    assert got.cut.tolist() == [True, False, True, False, False]
    # Cut on the bytes first (4 per character at most): a character split at the cut is dropped, not an error.
    got = column_texts(pa.array(["é" * 10 + "😀" * 5], kind if not pa.types.is_binary(kind) else pa.string()), 3)
    assert got.texts == ["ééé"] and got.cut.tolist() == [True]


def test_tokenize_cuts_huge_texts_before_tokenizing_and_keeps_odd_ones():
    step = Tokenize(str(TINY_MODEL), max_length=None, max_chars=1000)
    reference = transformers.XLMRobertaTokenizer.from_pretrained(TINY_MODEL)
    huge = "Один длинный текст. " * 500_000  # 10 M characters
    texts = [huge, "a\x00b \x01\x07\x1b c", "   ", None]
    result = step(pa.table({"id": [1, 2, 3, 4], "text": texts}))
    ids = result.column("input_ids").to_pylist()
    assert ids[0] == reference(huge[:1000])["input_ids"]
    assert ids[1] == reference(texts[1])["input_ids"] and ids[2] == [0, 2]  # as transformers' tokenizer does
    assert result.column("truncated").to_pylist() == [True, False, False, False]
    assert result.column(CUT_AT_MAX_CHARS).to_pylist() == [1, 0, 0, 0]
    assert result.column("error").to_pylist() == [None, None, None, "text is null"]
    with pytest.raises(ValueError, match="max_chars must be at least 1"):
        Tokenize(str(TINY_MODEL), max_length=None, max_chars=0)


def test_pairs_are_cut_and_checked_each():
    step = Tokenize(str(TINY_MODEL), max_length=64, pair=True, max_chars=5)
    batch = pa.table({"text": ["premise", "ok", None], "text_pair": ["hyp", None, "x"]})
    result = step(batch)
    assert result.column("error").to_pylist() == [None, "text_pair is null", "text is null"]
    assert result.column("truncated").to_pylist() == [True, False, False]
    assert result.column(CUT_AT_MAX_CHARS).to_pylist() == [1, 0, 0]

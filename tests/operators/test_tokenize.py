"""The tokenize step on its own (no Ray): ids with specials, truncation, and the rule for null/empty/odd texts."""

from __future__ import annotations

import pyarrow as pa
import pytest

from textbatch.jobs.embed import TINY_MODEL
from textbatch.operators.columns import MissingColumnError
from textbatch.operators.tokenize import Tokenize
from textbatch.tokenizers import XLMRobertaTokenizer


@pytest.fixture(scope="module")
def step():
    return Tokenize(str(TINY_MODEL), max_length=12)


def test_rows_keep_their_ids_and_get_the_documented_result(step):
    reference = XLMRobertaTokenizer.from_pretrained(TINY_MODEL)
    texts = ["Der Zug.", "", None, "   ", "дождь " * 20, "図書館"]
    batch = pa.table({"id": [10, 11, 12, 13, 14, 15], "text": texts, "lang": ["de", "", "", "", "ru", "ja"]})
    result = step(batch)
    assert result.column_names == [
        "id", "lang", "input_ids", "n_tokens", "truncated", "error", "_cut_at_max_chars", "_tokenize_ms"
    ]
    assert result.column("_tokenize_ms")[0].as_py() >= 0 and set(result.column("_tokenize_ms")[1:].to_pylist()) <= {0}
    assert result.column("id").to_pylist() == [10, 11, 12, 13, 14, 15]
    ids = result.column("input_ids").to_pylist()
    for index in (0, 4, 5):  # <s> ... </s>, cut where the tokenizer's own truncation cuts
        assert ids[index] == reference(texts[index], truncation=True, max_length=12)["input_ids"]
    assert ids[1] == ids[3] == [0, 2]  # empty and whitespace-only: embedded as "<s></s>", not an error
    assert ids[2] == [] and result.column("error").to_pylist()[2] == "text is null"
    assert len(ids[4]) == 12 and ids[4][0] == 0 and ids[4][-1] == 2
    assert result.column("truncated").to_pylist() == [False, False, False, False, True, False]
    assert result.column("n_tokens").to_pylist() == [len(row) for row in ids]
    assert result.column("error").to_pylist() == [None, None, "text is null", None, None, None]


def test_bytes_and_non_strings(step):
    # Parquet cannot mix types in a column, but other sources can hand the step bytes or objects.
    batch = pa.table({"text": pa.array([b"caf\xc3\xa9", b"\xff\xfe"], type=pa.binary())})
    errors = step(batch).column("error").to_pylist()
    assert errors[0] is None and errors[1] == "text is not valid UTF-8: invalid start byte at byte 0"
    from textbatch.operators.texts import as_text

    assert as_text(3.5) == (None, "text is not a string: float")


def test_missing_text_column_is_named(step):
    with pytest.raises(MissingColumnError, match="Tokenize needs a column 'text'.*\\['id', 'body'\\]"):
        step(pa.table({"id": [1], "body": ["x"]}))


def test_empty_batch_and_no_room_for_text(step):
    result = step(pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}))
    assert result.num_rows == 0 and result.schema.field("input_ids").type == pa.list_(pa.int32())
    with pytest.raises(ValueError, match="leaves no room"):
        Tokenize(str(TINY_MODEL), max_length=2)

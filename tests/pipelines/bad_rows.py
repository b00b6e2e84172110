"""A small corpus holding every kind of bad row, the outcome each kind must have in any job, and a clean run to
compare the other rows with.

Kinds (operators/texts.py has the rule): null and bytes that are not UTF-8 (in a binary column, and in a string
column, which Parquet writers let through) are errors; empty, whitespace-only, NUL and control characters are
processed; a text longer than MAX_CHARS is cut to it and flagged truncated. A non-string value cannot reach a job
from Parquet or Arrow (a column of another type is a bad file: test_bad_files.py).
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from textbatch.jobs.common import SAMPLE_CORPUS
from textbatch.operators.write import read_run_metadata

MAX_CHARS = 1500
HUGE = "Один длинный текст. " * 20_000  # 400,000 characters, cut to MAX_CHARS
# kind -> (the value in the corpus, the error it must get; None: processed without error)
KINDS = {
    "null": (None, "text is null"),
    "empty": ("", None),
    "blank": (" \t\n  ", None),
    "control": ("Zürich\x00 liegt \x01\x07\x1b am See.\x7f", None),
    "huge": (HUGE, None),
    "utf8_bytes": ("Grüße aus Köln".encode(), None),
    "not_utf8_bytes": (b"ab\xffcd", "text is not valid UTF-8: invalid start byte at byte 2"),
    "not_utf8_string": (b"\xc3\x28 broken", "text is not valid UTF-8: invalid continuation byte at byte 0"),
}
ERROR_KINDS = {"text is null": 1, "text is not valid UTF-8": 2}


@dataclasses.dataclass
class BadRowsCorpus:
    folder: Path
    ids: dict[str, int]  # kind (or "good-N") -> id
    processed: dict[int, str]  # id -> the text a clean run gets (decoded, cut to MAX_CHARS), for rows without error

    def id_of(self, kind: str) -> int:
        return self.ids[kind]


def good_texts(count: int, seed: int) -> list[str]:
    texts = [text for text in pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist() if text]
    texts = [text for text in texts if text.strip() and len(text) < 400]
    rng = np.random.default_rng(seed)
    return [texts[index] for index in rng.choice(len(texts), size=count, replace=False)]


def string_column_with_bytes(values: list[bytes]) -> pa.Array:
    """A string column holding any bytes, unchecked, as some Parquet writers write them."""
    as_binary = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(values), as_binary.buffers())


def write_bad_rows_corpus(folder: Path, good: int = 10, seed: int = 11) -> BadRowsCorpus:
    """Four Parquet files: strings, strings, a binary column, and a string column holding bytes that are not UTF-8;
    ids are int64, shuffled."""
    folder.mkdir()
    goods = {f"good-{index}": text for index, text in enumerate(good_texts(good, seed))}
    names = list(goods) + list(KINDS)
    ids = dict(zip(names, (np.random.default_rng(seed).permutation(len(names)) * 13 + 5).tolist()))
    value = {**goods, **{kind: given for kind, (given, _) in KINDS.items()}}
    half = good // 2
    files = [
        [*list(goods)[:half], "null", "empty", "blank"],
        [*list(goods)[half:], "control", "huge"],
        ["utf8_bytes", "not_utf8_bytes"],
    ]
    for number, kinds in enumerate(files):
        texts = pa.array([value[kind] for kind in kinds], pa.binary() if number == 2 else pa.string())
        pq.write_table(pa.table({"id": pa.array([ids[k] for k in kinds], pa.int64()), "text": texts}),
                       folder / f"part-{number}.parquet")
    broken = string_column_with_bytes([value["not_utf8_string"]])
    pq.write_table(pa.table({"id": pa.array([ids["not_utf8_string"]], pa.int64()), "text": broken}),
                   folder / "part-3.parquet")
    processed = {}
    for kind, given in value.items():
        if kind in KINDS and KINDS[kind][1] is not None:
            continue
        text = given.decode() if isinstance(given, bytes) else given
        processed[ids[kind]] = text[:MAX_CHARS]
    return BadRowsCorpus(folder, ids, processed)


def read_job_output(folder: Path) -> tuple[pa.Table, list[dict]]:
    """The rows of a job's output folder, and each file's run metadata."""
    files = sorted(folder.glob("*.parquet"))
    return pa.concat_tables(pq.read_table(file) for file in files), [read_run_metadata(str(file)) for file in files]


def assert_nothing_lost(
    corpus: BadRowsCorpus, table: pa.Table, metadata: list[dict], summary, skipped: list[dict] | None = None
) -> dict[int, dict]:
    """Every id exactly once; each kind's row as the rule says; the summary and the files' metadata count them by
    reason (and list the `skipped` input files). Returns the rows by id."""
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(corpus.ids.values())
    rows = {row["id"]: row for row in table.to_pylist()}
    for kind, (_, error) in KINDS.items():
        assert rows[corpus.id_of(kind)]["error"] == error, kind
    assert all(rows[key]["error"] is None for key in corpus.processed)
    assert rows[corpus.id_of("huge")]["truncated"] is True
    assert (summary.rows, summary.errors, summary.error_kinds) == (len(corpus.ids), 3, ERROR_KINDS)
    assert summary.cut_at_max_chars == 1 and summary.truncated >= 1
    assert f"({summary.cut_at_max_chars} cut at --max-chars)" in summary.format()
    totals = collections.Counter()
    for file in metadata:
        assert file["max_chars"] == MAX_CHARS and file["skipped_files"] == (skipped or [])
        totals.update({"rows": file["file_counts"]["rows"], "cut": file["file_counts"]["cut_at_max_chars"]})
        totals.update(file["file_counts"]["errors"])
    assert totals == {"rows": len(corpus.ids), "cut": 1, **ERROR_KINDS}
    return rows


def clean_run(steps, texts: dict[int, str]) -> dict[int, dict]:
    """The job's steps called directly (no Ray, no isolation) on the processed rows alone: what each row must get."""
    table = pa.table({"id": pa.array(list(texts), pa.int64()), "text": pa.array(list(texts.values()), pa.string())})
    for step in steps:
        table = step(table)
    return {row["id"]: row for row in table.to_pylist()}

"""Failures are survived: the embedding job on the session's local Ray with faults injected by swapping its steps
for subclasses (faults.py). A row the model raises on is isolated to that row; a batch that raises once is retried
and no row fails; a model or tokenizer actor that dies (before or after it has returned batches) is restarted and its
batch retried, and the job still writes every row exactly once, as a clean run computes it."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipelines.bad_rows import clean_run, good_texts, read_job_output
from tests.pipelines.faults import killed_once, poisoned, raises_once
from textbatch.jobs.embed import TINY_MODEL, EmbedOptions, run_embed
from textbatch.operators.predict import PredictEmbeddings
from textbatch.operators.tokenize import Tokenize

LENGTH = 64
BUCKETS = (32, LENGTH)
ROWS = 24
POISON_ID = 17


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 rows in 2 files; and each row's embedding from a clean run of the same steps, without Ray."""
    folder = tmp_path_factory.mktemp("failures") / "corpus"
    folder.mkdir()
    texts = dict(enumerate(good_texts(ROWS, seed=21)))
    for part, keys in enumerate([list(texts)[:11], list(texts)[11:]]):
        table = pa.table({"id": pa.array(keys, pa.int64()), "text": [texts[key] for key in keys]})
        pq.write_table(table, folder / f"part-{part}.parquet")
    steps = [
        Tokenize(str(TINY_MODEL), max_length=LENGTH),
        PredictEmbeddings(str(TINY_MODEL), max_length=LENGTH, buckets=BUCKETS, batch_tokens=256),
    ]
    return folder, {key: row["embedding"] for key, row in clean_run(steps, texts).items()}


def options(folder: Path, out: Path) -> EmbedOptions:
    return EmbedOptions(
        input=str(folder), output=str(out), max_length=LENGTH, batch_tokens=256, padded_lengths=BUCKETS,
        rows_per_model_call=8, rows_per_tokenizer_call=8,
    )


def test_a_poisoned_row_fails_alone(ray_session, corpus, tmp_path):
    folder, clean = corpus
    summary = run_embed(options(folder, tmp_path / "out"), model_operator=poisoned(PredictEmbeddings, POISON_ID))
    table, _ = read_job_output(tmp_path / "out")
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(range(ROWS))
    rows = {row["id"]: row for row in table.to_pylist()}
    assert rows[POISON_ID]["error"] == f"model failed: ValueError: row {POISON_ID} is poisoned"
    assert rows[POISON_ID]["embedding"] is None
    for key, embedding in clean.items():
        if key != POISON_ID:
            assert rows[key]["error"] is None, key
            np.testing.assert_allclose(rows[key]["embedding"], embedding, atol=1e-5, err_msg=f"id {key}")
    assert (summary.rows, summary.errors, summary.error_kinds) == (ROWS, 1, {"model failed": 1})


# Faults that pass: a dead actor is restarted and its batch retried, a batch that raised runs again. Each fault is the
# operators to give run_embed, made with the marker file that says it happened.
PASSING_FAULTS = {
    "a model actor dies on its first batch": lambda marker: {"model_operator": killed_once(PredictEmbeddings, marker)},
    # Its two batches' rows have gone downstream when it dies: the restart must not write them again.
    "a model actor dies after two batches": lambda marker: {
        "model_operator": killed_once(PredictEmbeddings, marker, after_calls=2)
    },
    "a tokenizer actor dies after a batch": lambda marker: {
        "tokenize_operator": killed_once(Tokenize, marker, after_calls=1)
    },
    "a model call raises once": lambda marker: {"model_operator": raises_once(PredictEmbeddings, marker)},
}


@pytest.mark.parametrize("fault", PASSING_FAULTS)
def test_a_passing_fault_leaves_every_row_as_a_clean_run(ray_session, corpus, tmp_path, fault):
    folder, clean = corpus
    marker = tmp_path / "fault"
    summary = run_embed(options(folder, tmp_path / "out"), **PASSING_FAULTS[fault](marker))
    assert marker.exists()  # the fault did happen
    table, _ = read_job_output(tmp_path / "out")
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(range(ROWS))
    assert table.column("error").null_count == ROWS and (summary.rows, summary.errors) == (ROWS, 0)
    rows = {row["id"]: row for row in table.to_pylist()}
    for key, embedding in clean.items():
        np.testing.assert_allclose(rows[key]["embedding"], embedding, atol=1e-5, err_msg=f"id {key}")

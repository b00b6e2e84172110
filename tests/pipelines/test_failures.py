"""Failures are survived: the embedding job on the session's local Ray with faults injected by swapping its model
step for a subclass. A row the model raises on is isolated to that row; a model actor that dies mid-run is
restarted and its batch retried, and the job still writes every row."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipelines.bad_rows import clean_run, good_texts, read_job_output
from textbatch.jobs.embed import TINY_MODEL, EmbedOptions, run_embed
from textbatch.operators.predict import PredictEmbeddings
from textbatch.operators.tokenize import Tokenize

LENGTH = 64
BUCKETS = (32, LENGTH)
ROWS = 24
POISON_ID = 17


class PoisonedEmbeddings(PredictEmbeddings):
    """Raises on every batch in which it would embed row POISON_ID: one row the model cannot take."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids, errors = batch.column("id").to_pylist(), batch.column("error").to_pylist()
        if any(key == POISON_ID and error is None for key, error in zip(ids, errors)):
            raise ValueError(f"row {POISON_ID} is poisoned")
        return super().__call__(batch)


def dies_once(marker: Path) -> type:
    """A model step whose first call kills its actor's process, once per test (the marker file remembers)."""
    marker_path = str(marker)

    class DiesOnce(PredictEmbeddings):
        def __call__(self, batch: pa.Table) -> pa.Table:
            if not os.path.exists(marker_path):
                Path(marker_path).write_text(str(os.getpid()))
                os._exit(1)  # as a segfault or an out-of-memory kill would: no exception, no cleanup
            return super().__call__(batch)

    return DiesOnce


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
    summary = run_embed(options(folder, tmp_path / "out"), model_operator=PoisonedEmbeddings)
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


def test_an_actor_that_dies_is_restarted_and_every_row_written(ray_session, corpus, tmp_path):
    folder, clean = corpus
    marker = tmp_path / "died"
    summary = run_embed(options(folder, tmp_path / "out"), model_operator=dies_once(marker))
    assert marker.exists()  # an actor did die
    table, _ = read_job_output(tmp_path / "out")
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(range(ROWS))
    assert table.column("error").null_count == ROWS and (summary.rows, summary.errors) == (ROWS, 0)
    rows = {row["id"]: row for row in table.to_pylist()}
    for key, embedding in clean.items():
        np.testing.assert_allclose(rows[key]["embedding"], embedding, atol=1e-5, err_msg=f"id {key}")

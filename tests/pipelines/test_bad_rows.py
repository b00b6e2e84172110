"""Bad rows never stop a job: every job, on the session's local Ray, over one small corpus holding every kind of bad
row (bad_rows.py). Each id comes out exactly once; the bad rows get their reason or are processed as the rule says;
the summary and the files' metadata count them by reason; every other row equals a clean run of the same steps.
The generation run also meets a bad file with --on-bad-file skip, lists it, and leaves it out of the commit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.pipelines.bad_rows import (
    KINDS,
    MAX_CHARS,
    assert_nothing_lost,
    clean_run,
    read_job_output,
    write_bad_rows_corpus,
)
from textbatch.operators.tokenize import Tokenize

LENGTH = 64
BUCKETS = (32, LENGTH)
SMALL_BLOCKS = {"rows_per_model_call": 8, "rows_per_tokenizer_call": 6, "max_chars": MAX_CHARS}


def error_ids(corpus) -> list[int]:
    return [corpus.id_of(kind) for kind, (_, error) in KINDS.items() if error is not None]


def test_embed(ray_session, tmp_path):
    from textbatch.jobs.embed import TINY_MODEL, EmbedOptions, run_embed
    from textbatch.operators.predict import PredictEmbeddings

    corpus = write_bad_rows_corpus(tmp_path / "corpus")
    options = EmbedOptions(
        input=str(corpus.folder), output=str(tmp_path / "out"), max_length=LENGTH, batch_tokens=256,
        padded_lengths=BUCKETS, **SMALL_BLOCKS,
    )
    summary = run_embed(options)
    table, metadata = read_job_output(tmp_path / "out")
    rows = assert_nothing_lost(corpus, table, metadata, summary)

    steps = [
        Tokenize(str(TINY_MODEL), max_length=LENGTH),
        PredictEmbeddings(str(TINY_MODEL), max_length=LENGTH, buckets=BUCKETS, batch_tokens=256),
    ]
    for key, expected in clean_run(steps, corpus.processed).items():
        assert rows[key]["n_tokens"] == expected["n_tokens"], key
        np.testing.assert_allclose(rows[key]["embedding"], expected["embedding"], atol=1e-5, err_msg=f"id {key}")
    assert rows[corpus.id_of("empty")]["n_tokens"] == rows[corpus.id_of("blank")]["n_tokens"] == 2  # <s></s>
    assert all(rows[key]["embedding"] is None and rows[key]["n_tokens"] == 0 for key in error_ids(corpus))


def test_label(ray_session, tmp_path):
    from textbatch.jobs.label import TINY_MODEL, LabelOptions, run_label
    from textbatch.operators.token_classify import TagEntities

    corpus = write_bad_rows_corpus(tmp_path / "corpus")
    options = LabelOptions(
        input=str(corpus.folder), output=str(tmp_path / "out"), max_length=LENGTH, stride=16, batch_tokens=512,
        padded_lengths=BUCKETS, **SMALL_BLOCKS,
    )
    summary = run_label(options)
    table, metadata = read_job_output(tmp_path / "out")
    rows = assert_nothing_lost(corpus, table, metadata, summary)

    steps = [
        Tokenize(str(TINY_MODEL), max_length=None, offsets=True, keep_text=True),
        TagEntities(str(TINY_MODEL), stride=16, max_length=LENGTH, buckets=BUCKETS, batch_tokens=512),
    ]
    for key, expected in clean_run(steps, corpus.processed).items():
        got, want = rows[key]["entities"], expected["entities"]
        assert rows[key]["n_tokens"] == expected["n_tokens"], key
        assert [(e["entity_group"], e["start"], e["end"]) for e in got] == [
            (e["entity_group"], e["start"], e["end"]) for e in want
        ], key
        np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], atol=1e-5)
    assert rows[corpus.id_of("huge")]["n_tokens"] > 2 * LENGTH  # tagged in several windows, up to the cut only
    assert all(rows[key]["entities"] is None for key in error_ids(corpus))


def test_classify(ray_session, tmp_path):
    from textbatch.jobs.classify import TINY_MODEL, ClassifyOptions, run_classify
    from textbatch.operators.sequence_classify import ClassifySequences

    corpus = write_bad_rows_corpus(tmp_path / "corpus")
    options = ClassifyOptions(
        input=str(corpus.folder), output=str(tmp_path / "out"), max_length=LENGTH, batch_tokens=256,
        padded_lengths=BUCKETS, **SMALL_BLOCKS,
    )
    summary = run_classify(options)
    table, metadata = read_job_output(tmp_path / "out")
    rows = assert_nothing_lost(corpus, table, metadata, summary)

    steps = [
        Tokenize(str(TINY_MODEL), max_length=LENGTH),
        ClassifySequences(str(TINY_MODEL), max_length=LENGTH, buckets=BUCKETS, batch_tokens=256),
    ]
    for key, expected in clean_run(steps, corpus.processed).items():
        assert rows[key]["label"] == expected["label"], key
        assert abs(rows[key]["score"] - expected["score"]) < 1e-5, key
    assert all(rows[key]["label"] is None for key in error_ids(corpus))


def test_generate_and_skip_a_bad_file(ray_session, tmp_path):
    from textbatch.jobs.generate import TINY_MODEL, GenerateOptions, run_generate
    from textbatch.operators.generate import GenerateText

    corpus = write_bad_rows_corpus(tmp_path / "corpus")
    bad_file = corpus.folder / "part-9.parquet"
    pq.write_table(pa.table({"id": [10**6], "body": ["no text column"]}), bad_file)
    options = GenerateOptions(
        input=str(corpus.folder), output=str(tmp_path / "out"), template="summarize: {text}", max_length=LENGTH,
        batch_tokens=None, batch_size=4, padded_lengths=BUCKETS, max_new_tokens=6, on_bad_file="skip",
        **SMALL_BLOCKS,
    )
    summary = run_generate(options)
    table, metadata = read_job_output(tmp_path / "out")
    problem = "no column 'text' (--text-column); its columns are ['id', 'body']"
    rows = assert_nothing_lost(corpus, table, metadata, summary, skipped=[{"path": str(bad_file), "problem": problem}])
    assert [(file.path, file.problem) for file in summary.skipped_files] == [(str(bad_file), problem)]
    assert f"{'skipped files:':<20}1\n  {bad_file}: {problem}" in summary.format()
    # The bad file is no input of the commit: an incremental rerun finds the good files committed, nothing to do, and
    # the bad file skipped again.
    again = run_generate(dataclasses.replace(options, incremental=True))
    assert (again.rows, again.input_files, again.committed_files) == (0, 4, 4)
    assert [(file.path, file.problem) for file in again.skipped_files] == [(str(bad_file), problem)]

    steps = [
        Tokenize(str(TINY_MODEL), max_length=LENGTH, template="summarize: {text}"),
        GenerateText(str(TINY_MODEL), generation={"max_new_tokens": 6}, max_length=LENGTH, buckets=BUCKETS,
                     batch_tokens=None, batch_size=4),
    ]
    for key, expected in clean_run(steps, corpus.processed).items():
        assert rows[key]["generated_text"] == expected["generated_text"], key
        assert rows[key]["n_input_tokens"] == expected["n_input_tokens"], key
    assert all(rows[key]["generated_text"] is None for key in error_ids(corpus))

"""The generation job end to end on the session's local Ray, and the bundled default run as a user starts it."""

from __future__ import annotations

import collections
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from textbatch.jobs.generate import (
    OUTPUT_COLUMNS,
    SAMPLE_CORPUS,
    TINY_MODEL,
    GenerateOptions,
    run_generate,
)
from textbatch.outputs import read_output

REPO = Path(__file__).resolve().parents[2]
MAX_LENGTH = 64
NEW_TOKENS = 12
TEMPLATE = "summarize: {text}"


@pytest.fixture
def corpus(tmp_path):
    """31 rows in 3 Parquet files of odd sizes; int64 ids out of order; an empty, a null and a long text."""
    texts = pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist()
    texts = [text for text in texts if text and text.strip()]
    rng = np.random.default_rng(5)
    texts = [texts[index] for index in rng.choice(len(texts), size=28, replace=False)]
    texts += ["", None, "Один длинный текст. " * 40]
    texts = [texts[index] for index in np.random.default_rng(6).permutation(len(texts))]
    ids = (np.random.default_rng(7).choice(10_000, size=len(texts), replace=False) * 7 + 3).tolist()
    folder = tmp_path / "corpus"
    folder.mkdir()
    for part, (start, stop) in enumerate([(0, 11), (11, 20), (20, 31)]):
        table = pa.table({"id": pa.array(ids[start:stop], pa.int64()), "body": pa.array(texts[start:stop])})
        pq.write_table(table, folder / f"part-{part}.parquet")
    return folder, dict(zip(ids, texts))


def generate_directly(texts):
    """Each prompt alone (a batch of one, no batch-mates), padded to one fixed length so it compiles once."""
    from textbatch.models import FlaxT5ForConditionalGeneration
    from textbatch.tokenizers import T5Tokenizer

    tokenizer = T5Tokenizer.from_pretrained(TINY_MODEL)
    model = FlaxT5ForConditionalGeneration.from_pretrained(TINY_MODEL)
    result = {}
    for key, text in texts.items():
        prompt = TEMPLATE.format(text=text)
        ids = tokenizer(prompt, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        padded = np.full((1, MAX_LENGTH), tokenizer.pad_token_id, dtype=np.int32)
        padded[0, : len(ids)] = ids
        mask = (np.arange(MAX_LENGTH) < len(ids)).astype(np.int32)[None]
        out = model.generate(padded, mask, max_new_tokens=NEW_TOKENS)
        truncated = len(tokenizer(prompt)["input_ids"]) > MAX_LENGTH
        result[key] = (len(ids), tokenizer.decode(out[0], skip_special_tokens=True), truncated)
    return result


def test_job_end_to_end(ray_session, corpus, tmp_path):
    folder, texts = corpus
    out = tmp_path / "out"
    # Prompts padded to 32 or 64 tokens in batches of at most 4; blocks of 16 rows; the text column renamed.
    options = GenerateOptions(
        input=str(folder),
        output=str(out),
        text_column="body",
        template=TEMPLATE,
        max_length=MAX_LENGTH,
        batch_tokens=None,
        batch_size=4,
        padded_lengths=(32, MAX_LENGTH),
        rows_per_model_call=16,
        rows_per_tokenizer_call=8,
        max_new_tokens=NEW_TOKENS,
    )
    summary = run_generate(options)

    output = read_output(str(out))
    table = output.to_arrow()
    assert table.column_names == list(OUTPUT_COLUMNS)
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(list(texts))  # each id once
    metadata = output.metadata
    assert (metadata["job"], metadata["template"], metadata["generation"]) == (
        "generate",
        TEMPLATE,
        {"max_new_tokens": NEW_TOKENS},
    )

    rows = {row["id"]: row for row in table.to_pylist()}
    null_id = next(key for key, text in texts.items() if text is None)
    assert rows[null_id] == {
        "id": null_id,
        "generated_text": None,
        "n_input_tokens": 0,
        "n_generated_tokens": 0,
        "truncated": False,
        "error": "text is null",
    }
    direct = generate_directly({key: text for key, text in texts.items() if text is not None})
    for key, (n_input, text, truncated) in direct.items():
        row = rows[key]
        assert row["error"] is None and row["generated_text"] == text, f"id {key}: {texts[key]!r}"
        assert (row["n_input_tokens"], row["truncated"]) == (n_input, truncated), key
        assert 1 <= row["n_generated_tokens"] <= NEW_TOKENS
    long_id = next(key for key, text in texts.items() if text and text.startswith("Один длинный"))
    assert rows[long_id]["truncated"] and rows[long_id]["n_input_tokens"] == MAX_LENGTH

    assert (summary.rows, summary.errors, summary.error_kinds) == (31, 1, {"text is null": 1})
    assert summary.tokens == sum(n_input for n_input, _, _ in direct.values())
    assert summary.generated_tokens == pc.sum(table.column("n_generated_tokens")).as_py() > 0
    assert summary.truncated == sum(truncated for _, _, truncated in direct.values()) >= 1
    assert 0.3 < summary.padding_efficiency <= 1.0 and summary.files == len(output.files)
    again = run_generate(dataclasses.replace(options, incremental=True))  # nothing new: nothing read or written
    assert (again.rows, again.committed_files) == (0, summary.input_files)


def test_bundled_default_run(tmp_path):
    """`python pipelines/generate.py` with no arguments: the sample corpus, the tiny FLAN-T5, ./output/generations/."""
    done = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "generate.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows:               360" in done.stdout and "1 x text is null" in done.stdout
    table = read_output(str(tmp_path / "output" / "generations")).to_arrow()
    corpus_ids = pq.read_table(SAMPLE_CORPUS, columns=["id"]).column("id").to_pylist()
    assert sorted(table.column("id").to_pylist()) == sorted(corpus_ids)
    assert pc.sum(pc.is_null(table.column("generated_text"))).as_py() == 1
    assert pc.max(table.column("n_input_tokens")).as_py() == 512  # the long sample text, truncated
    assert pc.max(table.column("n_generated_tokens")).as_py() <= 64

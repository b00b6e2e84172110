"""The embedding job end to end on the session's local Ray, and the bundled default run as a user starts it."""

from __future__ import annotations

import collections
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from textbatch.jobs.embed import SAMPLE_CORPUS, TINY_MODEL, EmbedOptions, run_embed
from textbatch.operators.read import read_texts
from textbatch.outputs import read_output

REPO = Path(__file__).resolve().parents[2]
MAX_LENGTH = 64


def sample_texts(count, seed):
    texts = pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist()
    texts = [text for text in texts if text and text.strip()]
    rng = np.random.default_rng(seed)
    return [texts[index] for index in rng.choice(len(texts), size=count, replace=False)]


@pytest.fixture
def corpus(tmp_path):
    """37 rows in 3 Parquet files of odd sizes; int64 ids out of order; an empty, a blank, a null and a long text."""
    texts = sample_texts(33, seed=5) + ["", "   ", None, "Один длинный текст. " * 40]
    order = np.random.default_rng(6).permutation(len(texts))
    texts = [texts[index] for index in order]
    ids = (np.random.default_rng(7).choice(10_000, size=len(texts), replace=False) * 7 + 3).tolist()
    folder = tmp_path / "corpus"
    folder.mkdir()
    for part, (start, stop) in enumerate([(0, 13), (13, 24), (24, 37)]):
        table = pa.table(
            {
                "id": pa.array(ids[start:stop], pa.int64()),
                "text": pa.array(texts[start:stop]),
                "other": pa.array(range(start, stop)),
            }
        )
        pq.write_table(table, folder / f"part-{part}.parquet")
    return folder, dict(zip(ids, texts))


def reference_embeddings(texts):
    """Each text alone (a batch of one, no batch-mates), padded to one fixed length so it compiles once."""
    from textbatch.models import FlaxXLMRobertaModel
    from textbatch.tokenizers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer.from_pretrained(TINY_MODEL)
    model = FlaxXLMRobertaModel.from_pretrained(str(TINY_MODEL))
    result = {}
    for key, text in texts.items():
        ids = tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        truncated = len(tokenizer(text)["input_ids"]) > MAX_LENGTH
        padded = np.full((1, MAX_LENGTH), tokenizer.pad_token_id, dtype=np.int32)
        padded[0, : len(ids)] = ids
        mask = (np.arange(MAX_LENGTH) < len(ids)).astype(np.int32)[None]
        hidden = np.asarray(model(padded, attention_mask=mask).last_hidden_state[0, : len(ids)], dtype=np.float64)
        vector = hidden.mean(axis=0)
        result[key] = (ids, vector / np.linalg.norm(vector), truncated)
    # And one truly unpadded call, for the empty text ("<s></s>").
    empty = np.asarray(model(np.array([[0, 2]]), attention_mask=np.ones((1, 2), np.int32)).last_hidden_state[0])
    return result, empty.mean(axis=0) / np.linalg.norm(empty.mean(axis=0))


def test_job_end_to_end(ray_session, corpus, tmp_path):
    folder, texts = corpus
    out = tmp_path / "out"
    # Two padded lengths only (fewer programs to compile); batches of 256 tokens, blocks of 16 rows.
    options = EmbedOptions(
        input=str(folder),
        output=str(out),
        model=str(TINY_MODEL),
        max_length=MAX_LENGTH,
        batch_tokens=256,
        padded_lengths=(32, MAX_LENGTH),
        rows_per_model_call=16,
        rows_per_tokenizer_call=8,
    )
    summary = run_embed(options)

    output = read_output(str(out))
    table = output.to_arrow()
    assert table.column_names == ["id", "embedding", "n_tokens", "truncated", "error"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    assert table.schema.field("id").type == pa.int64()
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(
        list(texts)
    )  # each id exactly once
    metadata = output.metadata
    assert (metadata["model"], metadata["pooling"], metadata["normalize"], metadata["max_length"]) == (
        str(TINY_MODEL),
        "mean",
        True,
        MAX_LENGTH,
    )

    rows = {row["id"]: row for row in table.to_pylist()}
    null_id = next(key for key, text in texts.items() if text is None)
    assert rows[null_id] == {
        "id": null_id,
        "embedding": None,
        "n_tokens": 0,
        "truncated": False,
        "error": "text is null",
    }
    reference, empty_direct = reference_embeddings({k: t for k, t in texts.items() if t is not None})
    for key, (ids, vector, truncated) in reference.items():
        row = rows[key]
        assert row["error"] is None and row["n_tokens"] == len(ids), key
        assert row["truncated"] == truncated, key
        np.testing.assert_allclose(row["embedding"], vector, atol=1e-5, rtol=0, err_msg=f"id {key}")
    empty_id = next(key for key, text in texts.items() if text == "")
    assert rows[empty_id]["n_tokens"] == 2
    np.testing.assert_allclose(rows[empty_id]["embedding"], empty_direct, atol=1e-5, rtol=0)

    long_id = next(key for key, text in texts.items() if text and text.startswith("Один длинный"))
    assert rows[long_id]["truncated"] and rows[long_id]["n_tokens"] == MAX_LENGTH
    assert (summary.rows, summary.errors, summary.error_kinds) == (37, 1, {"text is null": 1})
    assert summary.truncated == sum(truncated for _, _, truncated in reference.values())
    assert summary.tokens == sum(len(ids) for ids, _, _ in reference.values())
    assert 0.3 < summary.padding_efficiency <= 1.0 and summary.tokens_per_second > 0
    assert summary.files == len(output.files) and (summary.input_files, summary.committed_files) == (3, 0)
    assert "rows:               37" in summary.format()

    # The same run again with --incremental: every input file is committed, so nothing is read or written.
    again = run_embed(dataclasses.replace(options, incremental=True))
    assert (again.rows, again.committed_files, again.files) == (0, 3, summary.files)
    assert read_output(str(out)).files == output.files


def test_read_step_on_ray_renames_columns_and_reads_datasets_folders(ray_session, tmp_path):
    pq.write_table(pa.table({"body": ["a", None], "doc_id": ["x1", "x2"], "n": [1, 2]}), tmp_path / "one.parquet")
    rows = read_texts(f"{tmp_path}/*.parquet", text_column="body", id_column="doc_id").take_all()
    assert sorted(rows, key=lambda row: row["id"]) == [{"id": "x1", "text": "a"}, {"id": "x2", "text": None}]

    # A datasets save_to_disk folder (layout checked against datasets 5.2): two Arrow stream shards + state.json.
    folder = tmp_path / "saved"
    folder.mkdir()
    shards = [pa.table({"text": ["b", "c"], "id": [1, 2]}), pa.table({"text": ["", "d"], "id": [3, 4]})]
    for index, shard in enumerate(shards):
        path = folder / f"data-{index:05d}-of-00002.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, shard.schema) as writer:
            writer.write_table(shard)
    state = {"_data_files": [{"filename": f"data-{index:05d}-of-00002.arrow"} for index in range(2)]}
    (folder / "state.json").write_text(json.dumps(state))
    rows = read_texts(folder).take_all()
    assert sorted((row["id"], row["text"]) for row in rows) == [(1, "b"), (2, "c"), (3, ""), (4, "d")]


def test_bundled_default_run(tmp_path):
    """`python pipelines/embed.py --output DIR`: the sample corpus with the tiny checkpoint, as a user runs it."""
    out = tmp_path / "embeddings"
    done = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "embed.py"), "--output", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows:               360" in done.stdout and "1 x text is null" in done.stdout
    table = read_output(str(out)).to_arrow()
    corpus_ids = pq.read_table(SAMPLE_CORPUS, columns=["id"]).column("id").to_pylist()
    assert sorted(table.column("id").to_pylist()) == sorted(corpus_ids)
    assert pc.sum(pc.is_null(table.column("embedding"))).as_py() == 1
    assert pc.max(table.column("n_tokens")).as_py() == 512  # the long sample text, truncated


def test_flaubert_checkpoint_end_to_end(ray_session, tmp_path):
    """A FlauBERT encoder: its 64 positions all usable (they start at 0), rows padded with its pad_index; mean pooling
    over <s> ... </s> equals transformers' FlaubertModel called on the same texts."""
    import torch
    import transformers

    from tests.operators.flaubert_checkpoints import (
        POSITIONS,
        build_flaubert_checkpoint,
    )

    model = build_flaubert_checkpoint(tmp_path / "flaubert", transformers.FlaubertModel)
    texts = [
        "Il pleut sur Paris ce matin.",
        "",
        None,
        "Le train a vingt minutes de retard. " * 12,
        "« Bonjour », dit-elle à l'ami d'Émile.",
    ]
    folder = tmp_path / "corpus"
    folder.mkdir()
    for part, (start, stop) in enumerate([(0, 2), (2, 5)]):
        pq.write_table(pa.table({"id": range(start, stop), "text": pa.array(texts[start:stop])}), folder / f"{part}.parquet")
    options = EmbedOptions(
        input=str(folder), output=str(tmp_path / "out"), model=str(model), normalize=False,
        padded_lengths=(POSITIONS,), batch_tokens=256,  # one shape to compile
    )
    summary = run_embed(options)
    output = read_output(str(tmp_path / "out"))
    rows = {row["id"]: row for row in output.to_arrow().to_pylist()}
    metadata = output.metadata
    assert (metadata["model_type"], metadata["max_length"], metadata["embedding_dim"]) == ("flaubert", POSITIONS, 24)

    tokenizer = transformers.FlaubertTokenizer.from_pretrained(model)
    reference = transformers.FlaubertModel.from_pretrained(model).eval()
    kept = [index for index, text in enumerate(texts) if text is not None]
    batch = tokenizer([texts[index] for index in kept], padding=True, truncation=True, max_length=POSITIONS,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).numpy()
    for slot, index in enumerate(kept):
        row = rows[index]
        assert row["error"] is None and row["n_tokens"] == int(mask[slot].sum()), index
        np.testing.assert_allclose(row["embedding"], expected[slot], atol=1e-4, rtol=0, err_msg=f"id {index}")
    assert rows[3]["truncated"] and rows[3]["n_tokens"] == POSITIONS
    assert rows[2]["error"] == "text is null" and rows[2]["embedding"] is None
    assert (summary.rows, summary.errors, summary.truncated) == (5, 1, 1)


def test_t5_checkpoint_is_refused_naming_the_supported_types():
    from textbatch.jobs.embed import resolved_max_length

    with pytest.raises(ValueError, match="model_type is 't5'.*supported model types: flaubert, xlm-roberta"):
        resolved_max_length(EmbedOptions(model=str(REPO / "textbatch" / "assets" / "flan-t5-tiny")))

"""The classification job: its command line, and runs end to end on the session's local Ray over multi-file corpora
(XLM-R text pairs with top-k; a FlauBERT classifier), compared with transformers' text-classification pipeline."""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import transformers

from tests.operators.test_classify_parity import build_flaubert_classifier
from textbatch.jobs.classify import (
    DEFAULT_OUTPUT,
    SAMPLE_CORPUS,
    TINY_MODEL,
    ClassifyOptions,
    output_columns,
    run_classify,
)
from textbatch.outputs import read_output

SCRIPT = Path(__file__).resolve().parents[2] / "pipelines" / "classify.py"
WINDOW = 48


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("classify_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_arguments_mean_the_bundled_demo(cli):
    options = cli.parse_args([])
    assert options == ClassifyOptions()
    assert (options.input, options.model, options.output) == (str(SAMPLE_CORPUS), str(TINY_MODEL), DEFAULT_OUTPUT)
    assert (options.text_pair_column, options.top_k, options.function) == (None, None, None)
    assert output_columns(options) == ("id", "label", "score", "n_tokens", "truncated", "error")


def test_every_option_reaches_the_job(cli):
    options = cli.parse_args(
        "--input in/ --output out/ --model org/nli --text-column premise --text-pair-column hypothesis "
        "--id-column doc --max-length 128 --batch-tokens 1024 --model-actors 2 --tokenizer-actors 2 "
        "--dtype bfloat16 --top-k 3 --function sigmoid".split()
    )
    assert options == ClassifyOptions(
        input="in/",
        output="out/",
        model="org/nli",
        text_column="premise",
        text_pair_column="hypothesis",
        id_column="doc",
        max_length=128,
        batch_tokens=1024,
        model_actors=2,
        tokenizer_actors=2,
        dtype="bfloat16",
        top_k=3,
        function="sigmoid",
    )
    assert output_columns(options) == ("id", "label", "score", "scores", "n_tokens", "truncated", "error")
    for bad in (["--top-k", "0"], ["--function", "tanh"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)


def write_corpus(folder: Path, columns: dict[str, list], cuts: list[int]) -> None:
    folder.mkdir()
    bounds = [0, *cuts, len(next(iter(columns.values())))]
    for part, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        table = pa.table({name: pa.array(values[start:stop]) for name, values in columns.items()})
        pq.write_table(table, folder / f"part-{part}.parquet")


def read_table(folder: Path) -> tuple[pa.Table, dict]:
    output = read_output(str(folder))
    return output.to_arrow(), output.metadata


def pipeline(folder, tokenizer_class):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    return transformers.pipeline("text-classification", model=model, tokenizer=tokenizer_class.from_pretrained(folder))


def assert_rows(table, inputs: dict, reference, top_k, **call):
    """Every id once; a row with a null input has an error and no label; the others equal the reference."""
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(list(inputs))
    for row in table.to_pylist():
        given = inputs[row["id"]]
        if given is None:
            assert row["label"] is None and row["score"] is None and row["error"].endswith("is null")
            continue
        expected = reference(given, top_k=None, **call)
        assert row["error"] is None
        assert (row["label"], round(row["score"], 4)) == (expected[0]["label"], round(expected[0]["score"], 4))
        if top_k:
            assert [s["label"] for s in row["scores"]] == [s["label"] for s in expected[:top_k]]
            assert np.allclose([s["score"] for s in row["scores"]], [s["score"] for s in expected[:top_k]], atol=1e-4)


def test_pairs_with_top_k_end_to_end(ray_session, tmp_path):
    texts = [text for text in pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist() if text]
    rng = np.random.default_rng(8)
    premises = [texts[index] for index in rng.choice(len(texts), size=17, replace=False)] + [None, "", "x " * 80]
    hypotheses = [texts[index][:40] for index in rng.choice(len(texts), size=17, replace=False)] + ["a", "b", None]
    ids = rng.choice(10_000, size=len(premises), replace=False).tolist()
    write_corpus(tmp_path / "corpus", {"doc": ids, "premise": premises, "hypothesis": hypotheses}, [6, 13])
    options = ClassifyOptions(
        input=str(tmp_path / "corpus"),
        output=str(tmp_path / "out"),
        text_column="premise",
        text_pair_column="hypothesis",
        id_column="doc",
        top_k=2,
        max_length=WINDOW,
        padded_lengths=(32, WINDOW),
        batch_tokens=256,
        pack_length=16,  # the short pairs packed side by side, the others padded
        rows_per_model_call=8,
        rows_per_tokenizer_call=4,
    )
    summary = run_classify(options)
    table, metadata = read_table(tmp_path / "out")
    assert tuple(table.column_names) == output_columns(options)
    assert (metadata["job"], metadata["text_pair_column"], metadata["top_k"], metadata["function"]) == (
        "classify", "hypothesis", 2, "softmax"
    )
    inputs = {
        key: None if text is None or pair is None else {"text": text, "text_pair": pair}
        for key, text, pair in zip(ids, premises, hypotheses)
    }
    reference = pipeline(TINY_MODEL, transformers.XLMRobertaTokenizer)
    assert_rows(table, inputs, reference, top_k=2, truncation=True, max_length=WINDOW)
    errors = collections.Counter(table.column("error").drop_null().to_pylist())
    assert errors == {"text is null": 1, "text_pair is null": 1}
    assert (summary.rows, summary.errors, summary.truncated) == (len(ids), 2, sum(table.column("truncated").to_pylist()))
    assert summary.truncated >= 1
    assert summary.load_seconds > 0 and summary.model_seconds >= summary.compile_seconds > 0  # the actor's timing
    assert summary.compiled_shapes >= 1
    again = run_classify(dataclasses.replace(options, incremental=True))  # nothing new: nothing read or written
    assert (again.rows, again.input_files, again.committed_files) == (0, 3, 3)


def test_flaubert_classifier_end_to_end(ray_session, tmp_path):
    model = build_flaubert_classifier(tmp_path / "flaubert")
    texts = [
        "Il pleut sur Paris ce matin.",
        "Le train a vingt minutes de retard.",
        None,
        "« Bonjour », dit-elle à l'ami d'Émile.",
        "",
        "La bibliothèque ouvre à neuf heures. " * 12,
        "Nous avons acheté du pain frais.",
    ]
    ids = [f"fr-{index}" for index in range(len(texts))]
    write_corpus(tmp_path / "corpus", {"id": ids, "text": texts}, [3])
    options = ClassifyOptions(
        input=str(tmp_path / "corpus"),
        output=str(tmp_path / "out"),
        model=str(model),
        top_k=3,
        padded_lengths=(32, 64),
        batch_tokens=256,
    )
    summary = run_classify(options)
    table, metadata = read_table(tmp_path / "out")
    assert (metadata["model_type"], metadata["max_length"]) == ("flaubert", 64)
    assert_rows(table, dict(zip(ids, texts)), pipeline(model, transformers.FlaubertTokenizer), top_k=3,
                truncation=True, max_length=64)
    assert (summary.rows, summary.errors, summary.truncated) == (len(texts), 1, 1)

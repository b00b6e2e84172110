"""The NER job: its command line, its checks at start, and runs end to end on the session's local Ray (XLM-R over a
multi-file corpus; a FlauBERT checkpoint, whose tokenizer has no offsets), compared with transformers'
token-classification pipeline."""

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

from textbatch.jobs.label import (
    DEFAULT_OUTPUT,
    OUTPUT_COLUMNS,
    SAMPLE_CORPUS,
    TINY_MODEL,
    LabelOptions,
    resolve_plan,
    run_label,
)
from textbatch.operators.windows import window_bounds
from textbatch.outputs import read_output

SCRIPT = Path(__file__).resolve().parents[2] / "pipelines" / "label.py"
WINDOW, STRIDE = 64, 16
KEEP = ("PER", "B-LOC", "I-LOC", "MISC")  # every type but ORG, in both spellings


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("label_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_arguments_mean_the_bundled_demo(cli):
    options = cli.parse_args([])
    assert options == LabelOptions()
    assert (options.input, options.model, options.output) == (str(SAMPLE_CORPUS), str(TINY_MODEL), DEFAULT_OUTPUT)
    assert (options.aggregation, options.labels_only, options.stride) == ("simple", None, None)
    plan = resolve_plan(options)
    assert (plan.max_length, plan.stride) == (512, 128)
    assert list(plan.config.id2label.values()) == [
        "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"
    ]


def test_every_option_reaches_the_job(cli):
    options = cli.parse_args(
        "--input s3://b/texts/ --output gs://b/out/ --model org/ner --text-column body --id-column doc "
        "--max-length 256 --batch-tokens 2048 --model-actors 2 --tokenizer-actors 3 --dtype bfloat16 "
        "--aggregation max --labels-only B-PER,I-PER,,LOC --stride 32".split()
    )
    assert options == LabelOptions(
        input="s3://b/texts/",
        output="gs://b/out/",
        model="org/ner",
        text_column="body",
        id_column="doc",
        max_length=256,
        batch_tokens=2048,
        model_actors=2,
        tokenizer_actors=3,
        dtype="bfloat16",
        aggregation="max",
        labels_only=("B-PER", "I-PER", "LOC"),
        stride=32,
    )
    for bad in (["--aggregation", "mean"], ["--stride", "-1"], ["--labels-only", ","]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)


def test_bad_settings_fail_at_start(tmp_path):
    with pytest.raises(ValueError, match="--stride 62 with --max-length 64: stride must be"):
        resolve_plan(LabelOptions(max_length=64, stride=62))
    with pytest.raises(ValueError, match="exceeds what"):
        resolve_plan(LabelOptions(max_length=600))
    with pytest.raises(ValueError, match=r"does not have: \['B-DATE'\]"):
        resolve_plan(LabelOptions(labels_only=("B-DATE",)))
    assert resolve_plan(LabelOptions(max_length=40)).stride == 19  # half the window's 38 text tokens


def test_flaubert_end_to_end(ray_session, tmp_path):
    """A FlauBERT NER checkpoint (no character offsets): entities equal transformers' pipeline with its slow
    tokenizer (start/end null); a text longer than the window is tagged whole, in windows."""
    from tests.operators.flaubert_checkpoints import (
        POSITIONS,
        build_flaubert_checkpoint,
    )

    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    model = build_flaubert_checkpoint(tmp_path / "flaubert", transformers.FlaubertForTokenClassification,
                                      labels=labels, scale_head="classifier.weight")
    texts = {
        "a": "Emmanuel Macron a rencontré Angela Merkel à Paris.",
        "b": None,
        "c": "Le train de Marseille a vingt minutes de retard.",
        "d": "La bibliothèque de Lyon ouvre à neuf heures. " * 8,
    }
    folder = tmp_path / "corpus"
    folder.mkdir()
    pq.write_table(pa.table({"id": list(texts), "text": pa.array(list(texts.values()), pa.string())}),
                   folder / "part-0.parquet")
    options = LabelOptions(input=str(folder), output=str(tmp_path / "out"), model=str(model),
                           padded_lengths=(32, POSITIONS), batch_tokens=256)
    assert resolve_plan(options).offsets is False
    summary = run_label(options)
    output = read_output(str(tmp_path / "out"))
    rows = {row["id"]: row for row in output.to_arrow().to_pylist()}
    assert output.metadata["model_type"] == "flaubert"

    reference = transformers.pipeline(
        "token-classification",
        model=transformers.AutoModelForTokenClassification.from_pretrained(model, dtype=torch.float32),
        tokenizer=transformers.FlaubertTokenizer.from_pretrained(model),
        aggregation_strategy="simple",
    )
    for key in ("a", "c"):
        expected = reference(texts[key])
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in rows[key]["entities"]] == [
            (e["entity_group"], e["word"], None, None) for e in expected
        ], key
        assert np.allclose([e["score"] for e in rows[key]["entities"]], [e["score"] for e in expected], atol=1e-4)
    assert rows["b"]["error"] == "text is null" and rows["d"]["error"] is None and rows["d"]["entities"]
    assert rows["d"]["n_tokens"] > POSITIONS and summary.windows > 3 and summary.errors == 1


@pytest.fixture
def corpus(tmp_path):
    """23 rows in 3 Parquet files; string ids out of order; an empty, a null and texts of several windows."""
    texts = [text for text in pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist() if text]
    rng = np.random.default_rng(3)
    chosen = [texts[index] for index in rng.choice(len(texts), size=18, replace=False)]
    chosen += ["", None, "Angela Merkel 😀 visitó 東京 y Łódź.", " ".join(texts[:8]), " ".join(texts[40:45])]
    chosen = [chosen[index] for index in rng.permutation(len(chosen))]
    ids = [f"doc-{number:03d}" for number in rng.choice(1000, size=len(chosen), replace=False)]
    folder = tmp_path / "corpus"
    folder.mkdir()
    for part, (start, stop) in enumerate([(0, 7), (7, 16), (16, 23)]):
        table = pa.table({"key": ids[start:stop], "body": pa.array(chosen[start:stop], pa.string())})
        pq.write_table(table, folder / f"part-{part}.parquet")
    return folder, dict(zip(ids, chosen))


def test_job_end_to_end(ray_session, corpus, tmp_path):
    folder, texts = corpus
    out = tmp_path / "out"
    options = LabelOptions(
        input=str(folder),
        output=str(out),
        text_column="body",
        id_column="key",
        max_length=WINDOW,
        stride=STRIDE,
        aggregation="first",
        labels_only=KEEP,
        batch_tokens=512,
        padded_lengths=(32, WINDOW),
        rows_per_model_call=8,
        rows_per_tokenizer_call=5,
    )
    summary = run_label(options)

    output = read_output(str(out))
    table = output.to_arrow()
    assert tuple(table.column_names) == OUTPUT_COLUMNS
    assert collections.Counter(table.column("id").to_pylist()) == collections.Counter(list(texts))  # each id once
    metadata = output.metadata
    assert (metadata["job"], metadata["aggregation"], metadata["stride"], metadata["max_length"]) == (
        "label", "first", STRIDE, WINDOW
    )
    assert metadata["labels_only"] == list(KEEP) and metadata["id2label"]["1"] == "B-PER"

    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(TINY_MODEL, model_max_length=WINDOW)
    model = transformers.AutoModelForTokenClassification.from_pretrained(TINY_MODEL, dtype=torch.float32)
    reference = transformers.pipeline(
        "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first", stride=STRIDE
    )
    rows = {row["id"]: row for row in table.to_pylist()}
    windows = found = 0
    for key, text in texts.items():
        row = rows[key]
        if text is None:
            assert row == {"id": key, "entities": None, "n_tokens": 0, "truncated": False, "error": "text is null"}
            continue
        n_tokens = len(tokenizer(text, truncation=False)["input_ids"])
        assert row["error"] is None and row["n_tokens"] == n_tokens
        windows += len(window_bounds(n_tokens - 2, WINDOW - 2, STRIDE))
        expected = [e for e in reference(text) if e["entity_group"] in ("PER", "LOC", "MISC")] if text else []
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in row["entities"]] == [
            (e["entity_group"], e["word"], e["start"], e["end"]) for e in expected
        ], key
        assert np.allclose([e["score"] for e in row["entities"]], [e["score"] for e in expected], atol=1e-4)
        found += len(expected)
    assert found > 20 and windows > len(texts) + 10  # entities kept, and long texts went through several windows
    assert (summary.rows, summary.errors, summary.error_kinds) == (len(texts), 1, {"text is null": 1})
    assert (summary.windows, summary.entities, summary.files) == (windows, found, len(output.files))
    assert summary.tokens == sum(row["n_tokens"] for row in rows.values())
    assert "windows:" in summary.format() and "entities:" in summary.format()
    assert summary.load_seconds > 0 and summary.model_seconds >= summary.compile_seconds > 0  # the actor's timing
    assert summary.compiled_shapes >= 1 and "model calls:" in summary.format()
    assert summary.tokenize_seconds > 0 and summary.write_seconds > 0  # the tokenizer actors' and the writes' time
    again = run_label(dataclasses.replace(options, incremental=True))  # nothing new: nothing read or written
    assert (again.rows, again.committed_files) == (0, summary.input_files)

"""The classification step (Tokenize -> ClassifySequences, no Ray) against transformers' text-classification pipeline:
top-1, top-k, pairs, truncation, sigmoid (multi-label checkpoint and override), no function; XLM-R (the bundled tiny
classifier, saved by transformers) and FlauBERT (a tiny one built here)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import transformers

from tests.operators.flaubert_checkpoints import build_flaubert_checkpoint
from textbatch.jobs.classify import TINY_MODEL
from textbatch.operators.sequence_classify import ClassifySequences, apply_function, best_first, default_function
from textbatch.operators.timing import TIMING_COLUMNS
from textbatch.operators.tokenize import Tokenize

TEXTS = [
    "Der Zug hatte zwanzig Minuten Verspätung.",
    "Mañana lloverá, así que lleva un paraguas.",
    "図書館は朝九時に開きます。",
    "Emoji only: 👍🏽 🇺🇦 🙂",
    "",
    "The library opens at nine. " * 30,  # longer than the window: truncated
]
PAIRS = ["It will rain.", "", "Il pleut.", "😀 " * 3, "x", "Short."]
WINDOW = 48
LABELS = ("contradiction", "neutral", "entailment")


def classify(folder, texts, pairs=None, max_length=WINDOW, **options):
    table = pa.table({"id": list(range(len(texts))), "text": texts, **({"text_pair": pairs} if pairs else {})})
    tokenized = Tokenize(str(folder), max_length, pair=pairs is not None)(table)
    step = ClassifySequences(str(folder), max_length=max_length, buckets=(max_length,), batch_tokens=4 * max_length,
                             **options)
    return tokenized, step(tokenized)


def reference(folder, tokenizer_class=transformers.XLMRobertaTokenizer):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    return transformers.pipeline("text-classification", model=model, tokenizer=tokenizer_class.from_pretrained(folder))


def inputs(texts, pairs):
    return texts if pairs is None else [{"text": text, "text_pair": pair} for text, pair in zip(texts, pairs)]


def assert_top(result, expected, top_k=None):
    """label/score (and scores) equal the reference's list of {label, score} per row, best first."""
    rows = result.to_pylist()
    for row, theirs in zip(rows, expected):
        theirs = theirs if isinstance(theirs, list) else [theirs]
        assert row["error"] is None
        assert row["label"] == theirs[0]["label"]
        assert abs(row["score"] - theirs[0]["score"]) < 1e-4
        if top_k is not None:
            assert [s["label"] for s in row["scores"]] == [s["label"] for s in theirs[:top_k]]
            assert np.allclose([s["score"] for s in row["scores"]], [s["score"] for s in theirs[:top_k]], atol=1e-4)


@pytest.mark.parametrize("pack_length", [128, 0], ids=["packed", "padded"])
def test_top_one_and_top_k_equal_the_pipeline(pack_length):
    """Rows packed side by side (the default for XLM-R rows this short) or each padded on its own: the same scores."""
    tokenized, result = classify(TINY_MODEL, TEXTS, top_k=2, pack_length=pack_length)
    assert result.column_names == [
        "id", "n_tokens", "truncated", "_cut_at_max_chars", "_tokenize_ms", "label", "score", "scores", "error",
        "_padded_tokens",
        *TIMING_COLUMNS,
    ]
    assert tokenized.column("truncated").to_pylist() == [False] * 5 + [True]
    pipe = reference(TINY_MODEL)
    expected = pipe(TEXTS, top_k=None, truncation=True, max_length=WINDOW)
    assert_top(result, expected, top_k=2)
    assert pipe(TEXTS[0])[0]["label"] == result.column("label")[0].as_py()  # the pipeline's plain call, too
    assert len(set(result.column("label").to_pylist())) > 1  # the checkpoint's labels vary


def test_pairs_equal_the_pipeline_and_are_cut_longest_first():
    tokenized, result = classify(TINY_MODEL, TEXTS, PAIRS, top_k=3, pack_length=16)  # some rows packed, some not
    expected = reference(TINY_MODEL)(inputs(TEXTS, PAIRS), top_k=None, truncation=True, max_length=WINDOW)
    assert_top(result, expected, top_k=3)
    ids = tokenized.column("input_ids").to_pylist()
    ours = transformers.XLMRobertaTokenizer.from_pretrained(TINY_MODEL)
    for text, pair, row in zip(TEXTS, PAIRS, ids):
        assert row == ours(text, pair, truncation=True, max_length=WINDOW)["input_ids"]


def test_null_pair_is_an_error_of_its_row_only():
    _, result = classify(TINY_MODEL, ["a", "b", None], [None, "c", "d"])
    assert result.column("error").to_pylist() == ["text_pair is null", None, "text is null"]
    assert result.column("label").to_pylist()[0::2] == [None, None] and result.column("label")[1].as_py()


@pytest.fixture
def multi_label(tmp_path):
    folder = tmp_path / "multi"
    shutil.copytree(TINY_MODEL, folder)
    config = json.loads((folder / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_sigmoid_for_multi_label_and_every_function_override(multi_label):
    tokenized, result = classify(multi_label, TEXTS, top_k=3)
    step = ClassifySequences(str(multi_label), max_length=WINDOW, buckets=(WINDOW,), batch_tokens=4 * WINDOW)
    assert step.function == "sigmoid"
    pipe = reference(multi_label)
    assert_top(result, pipe(TEXTS, top_k=None, truncation=True, max_length=WINDOW), top_k=3)
    for function in ("softmax", "none"):
        other = copy.copy(step)
        other.function, other.top_k = function, 3
        assert_top(
            other(tokenized),
            pipe(TEXTS, top_k=None, function_to_apply=function, truncation=True, max_length=WINDOW),
            top_k=3,
        )


def test_score_rules():
    class Config:
        problem_type, num_labels = None, 3

    config = Config()
    assert default_function(config) == "softmax"
    config.num_labels = 1
    assert default_function(config) == "sigmoid"
    config.problem_type = "regression"
    assert default_function(config) == "none"
    logits = np.array([[0.5, 2.0, 2.0, -1.0]], np.float32)
    assert best_first(logits[0], 3).tolist() == [1, 2, 0]  # equal scores keep label order
    assert np.allclose(apply_function(logits, "softmax").sum(), 1.0)
    assert np.allclose(apply_function(logits, "sigmoid"), 1 / (1 + np.exp(-logits)))
    with pytest.raises(ValueError, match="function must be one of"):
        apply_function(logits, "tanh")


def build_flaubert_classifier(folder: Path, seed: int = 3, **config) -> Path:
    """A tiny FlauBERT sequence classifier (3 labels; flaubert_checkpoints.py), its head scaled up so that the
    labels vary; `config` overrides FlaubertConfig (summary_type, ...)."""
    return build_flaubert_checkpoint(
        folder, transformers.FlaubertForSequenceClassification, labels=LABELS, seed=seed,
        scale_head="sequence_summary.summary.weight", **config,
    )


def test_flaubert_classifier_equals_the_pipeline(tmp_path):
    folder = build_flaubert_classifier(tmp_path / "flaubert")
    texts = ["Il pleut sur Paris ce matin.", "Le train a vingt minutes de retard.", "", "Bonjour « l'ami » !"]
    pairs = ["Il fait beau.", "Le train est à l'heure.", "Rien.", "Salut."]
    pipe = reference(folder, transformers.FlaubertTokenizer)
    for pair_texts in (None, pairs):
        tokenized, result = classify(folder, texts, pair_texts, top_k=3)
        assert_top(result, pipe(inputs(texts, pair_texts), top_k=None), top_k=3)
        expected_ids = transformers.FlaubertTokenizer.from_pretrained(folder)(texts, pair_texts)["input_ids"]
        assert tokenized.column("input_ids").to_pylist() == expected_ids


@pytest.mark.parametrize("summary_type", ["mean", "last"])
def test_flaubert_summaries_over_padding_equal_the_pipeline(tmp_path, summary_type):
    """"mean" and "last" would read the padding of a padded batch; the step summarises the real tokens only, as the
    reference does for one text alone."""
    folder = build_flaubert_classifier(tmp_path / summary_type, summary_type=summary_type)
    texts = ["Il pleut.", "Le train a vingt minutes de retard ce matin.", "", "Bonjour « l'ami » !"]
    _, result = classify(folder, texts, top_k=3)  # every row padded to 48 tokens
    assert_top(result, reference(folder, transformers.FlaubertTokenizer)(texts, top_k=None), top_k=3)


def test_flaubert_configs_nothing_implements_are_refused_at_start(tmp_path):
    from textbatch.jobs.classify import ClassifyOptions, resolve_max_length

    folder = build_flaubert_classifier(tmp_path / "refused")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "summary_type": "attn"}))
    with pytest.raises(ValueError, match="summary_type 'attn' is not supported .* supported: first, last, mean"):
        resolve_max_length(ClassifyOptions(model=str(folder)))
    (folder / "config.json").write_text(json.dumps({**config, "is_encoder": False}))
    with pytest.raises(ValueError, match="is_encoder=False .* which neither transformers nor textbatch implements"):
        resolve_max_length(ClassifyOptions(model=str(folder)))
    (folder / "config.json").write_text(json.dumps({**config, "summary_use_proj": False}))
    with pytest.raises(ValueError, match=r"summary_use_proj is false, so it gives \d+ logits \(emb_dim\) for 3 labels"):
        resolve_max_length(ClassifyOptions(model=str(folder)))

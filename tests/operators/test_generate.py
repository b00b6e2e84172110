"""The generate step on its own (no Ray): outputs equal `generate` on each prompt alone, unpadded; error rows pass
through; several return sequences come out as lists; generated-token counting."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from textbatch.jobs.generate import TINY_MODEL
from textbatch.models import FlaxT5ForConditionalGeneration
from textbatch.operators.columns import MissingColumnError
from textbatch.operators.generate import GenerateText, generated_lengths
from textbatch.operators.timing import TIMING_COLUMNS
from textbatch.tokenizers import T5Tokenizer

PROMPTS = [
    "summarize: Der Zug hatte zwanzig Minuten Verspätung.",
    "translate: 図書館は朝九時に開きます。",
    "Утре ще вали дъжд, затова вземи чадър.",
    "a",
    "question: what is tomorrow's weather? context: it will rain, take an umbrella",
]
NEW_TOKENS = 7


@pytest.fixture(scope="module")
def tokenizer():
    return T5Tokenizer.from_pretrained(TINY_MODEL)


@pytest.fixture(scope="module")
def model():
    return FlaxT5ForConditionalGeneration.from_pretrained(TINY_MODEL)


def tokenized_table(tokenizer, prompts, errors=None):
    """What the tokenize step hands over: id, input_ids (with </s>), n_tokens, truncated, error."""
    ids = [tokenizer(prompt)["input_ids"] if prompt is not None else [] for prompt in prompts]
    return pa.table(
        {
            "id": pa.array([f"row-{index}" for index in range(len(prompts))]),
            "input_ids": pa.array(ids, pa.list_(pa.int32())),
            "n_tokens": pa.array([len(row) for row in ids], pa.int32()),
            "truncated": pa.array([False] * len(prompts)),
            "error": pa.array(errors or [None] * len(prompts), pa.string()),
        }
    )


def alone(model, tokenizer, prompt, **options):
    """`generate` on one prompt, unpadded, no batch-mates: the ids and the decoded texts."""
    ids = np.asarray([tokenizer(prompt)["input_ids"]], dtype=np.int32)
    out = model.generate(ids, np.ones_like(ids), **options)
    return out, tokenizer.batch_decode(out, skip_special_tokens=True)


def test_padding_and_batch_mates_do_not_change_a_prompts_output(model, tokenizer):
    # Prompts of 38, 26, 25, 20, 2 and 1 tokens in batches of 3 rows padded to 48 or 32 tokens: every prompt shares
    # its batch with others and with padding.
    step = GenerateText(
        str(TINY_MODEL), generation={"max_new_tokens": NEW_TOKENS}, batch_tokens=None, batch_size=3,
        max_length=48, buckets=(32, 48),
    )
    prompts = PROMPTS + [None, "   "]
    result = step(tokenized_table(tokenizer, prompts, errors=[None] * 5 + ["text is null", None]))
    assert result.column_names == [
        "id", "n_input_tokens", "truncated", "generated_text", "n_generated_tokens", "error", "_padded_tokens",
        *TIMING_COLUMNS,
    ]
    rows = result.to_pylist()
    assert [row["id"] for row in rows] == [f"row-{index}" for index in range(len(prompts))]
    for index, prompt in enumerate(PROMPTS + [None, "   "]):
        if prompt is None:
            continue
        ids, texts = alone(model, tokenizer, prompt, max_new_tokens=NEW_TOKENS)
        row = rows[index]
        assert row["error"] is None and row["generated_text"] == texts[0], prompt
        assert row["n_generated_tokens"] == generated_lengths(ids, (1,))[0]
        assert row["n_input_tokens"] == len(tokenizer(prompt)["input_ids"])
        assert row["_padded_tokens"] > 0
    assert rows[5] == {
        "id": "row-5", "n_input_tokens": 0, "truncated": False, "generated_text": None, "n_generated_tokens": 0,
        "error": "text is null", "_padded_tokens": 0.0, "_load_ms": 0, "_model_ms": 0, "_compile_ms": 0,
        "_compiled_shapes": 0,
    }
    assert rows[0]["_model_ms"] > 0 and sum(row["_model_ms"] for row in rows) == rows[0]["_model_ms"]  # the call's
    assert rows[6]["n_input_tokens"] == 1  # a blank prompt is "</s>" alone: generated from, not an error


def test_several_return_sequences_are_lists_best_first(model, tokenizer):
    options = {"max_new_tokens": NEW_TOKENS, "num_beams": 3, "num_return_sequences": 2, "length_penalty": 0.6}
    step = GenerateText(str(TINY_MODEL), generation=options, batch_tokens=64, max_length=32, buckets=(16, 32))
    result = step(tokenized_table(tokenizer, [PROMPTS[0], None, PROMPTS[3]], errors=[None, "text is null", None]))
    assert result.schema.field("generated_text").type == pa.list_(pa.string())
    assert result.schema.field("n_generated_tokens").type == pa.list_(pa.int32())
    rows = result.to_pylist()
    for index in (0, 2):
        ids, texts = alone(model, tokenizer, [PROMPTS[0], None, PROMPTS[3]][index], **options)
        assert rows[index]["generated_text"] == texts
        assert rows[index]["n_generated_tokens"] == generated_lengths(ids, (1,)).tolist()
    assert rows[1]["generated_text"] is None and rows[1]["n_generated_tokens"] is None


def test_overlong_and_empty_rows_and_decoding_failures_become_row_errors(tokenizer):
    step = GenerateText(str(TINY_MODEL), generation={"max_new_tokens": 3}, batch_size=2, max_length=16, buckets=(16,))
    calls = []

    class FailsOnSecondRow:
        def batch_decode(self, sequences, skip_special_tokens):
            calls.append(len(sequences))
            if len(calls) == 2:
                raise IndexError("token id 9999 is outside the vocabulary")
            return tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)

    step.tokenizer = FailsOnSecondRow()
    table = tokenized_table(tokenizer, ["one", "two", "x " * 30, "three"])
    table = table.set_column(1, "input_ids", pa.array([[5, 1], [6, 1], [7] * 17 + [1], []], pa.list_(pa.int32())))
    errors = step(table).column("error").to_pylist()
    assert errors == [
        None,
        "decoding failed: IndexError: token id 9999 is outside the vocabulary",
        "18 prompt tokens is more than max_length 16",
        "no tokens to generate from",
    ]
    with pytest.raises(MissingColumnError, match="GenerateText needs a column 'n_tokens'"):
        step(table.drop_columns(["n_tokens"]))


def test_generated_lengths_count_up_to_and_including_eos():
    sequences = np.array(
        [
            [0, 5, 6, 1, 0, 0],  # eos at the third token, then pad filler
            [0, 5, 0, 7, 8, 9],  # no eos: every position (a generated pad id is a token like any other)
            [0, 1, 1, 1, 1, 1],  # eos first, then eos filler (beam search's filler for T5)
        ]
    )
    assert generated_lengths(sequences, (1,)).tolist() == [3, 5, 1]
    assert generated_lengths(sequences, (1, 7)).tolist() == [3, 3, 1]
    assert generated_lengths(sequences, ()).tolist() == [5, 5, 5]


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match=r"unknown generation option\(s\) \['beams'\]"):
        GenerateText(str(TINY_MODEL), generation={"beams": 2})
    with pytest.raises(ValueError, match="give batch_tokens, batch_size or both"):
        GenerateText(str(TINY_MODEL), batch_tokens=None)
    with pytest.raises(ValueError, match="dtype must be one of"):
        GenerateText(str(TINY_MODEL), dtype="float16")
    with pytest.raises(ValueError, match="greedy search returns one sequence"):
        GenerateText(str(TINY_MODEL), generation={"num_return_sequences": 2})


def test_sampling_is_reproducible_for_a_seed(tokenizer):
    options = {"max_new_tokens": NEW_TOKENS, "do_sample": True, "top_k": 20, "temperature": 1.5}
    step = GenerateText(str(TINY_MODEL), generation=options, batch_size=4, max_length=32, buckets=(32,))
    table = tokenized_table(tokenizer, PROMPTS[:4])
    first = step(table).column("generated_text").to_pylist()
    assert step(table).column("generated_text").to_pylist() == first
    step.seed = 1
    assert step(table).column("generated_text").to_pylist() != first

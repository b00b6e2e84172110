"""The model step on its own (no Ray): equal to a direct, unbatched model call; independent of batch-mates."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from textbatch.jobs.classify import ClassifyOptions
from textbatch.jobs.embed import EmbedOptions
from textbatch.jobs.label import LabelOptions
from textbatch.models import FlaxXLMRobertaModel, XLMRobertaConfig
from textbatch.operators.batching import plan_batches
from textbatch.operators.columns import MissingColumnError
from textbatch.operators.predict import PADDED_TOKENS, PredictEmbeddings, flat_lists
from textbatch.operators.timing import COMPILE_MS, LOAD_MS, TIMING_COLUMNS

# Odd sizes catch transposes; 40 positions leave 38 usable tokens (XLM-R positions start after the pad id).
CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-xlmr")
    model = FlaxXLMRobertaModel(XLMRobertaConfig(**CONFIG), seed=3)
    model.save_pretrained(folder)
    return str(folder), model


# Few distinct lengths: each one costs the unbatched reference a compilation. Rows up to PACK_LENGTH tokens are
# packed side by side, the longer ones padded: both paths run in every call.
LENGTHS = (3, 11, 16, 29)
PACK_LENGTH = 24


@pytest.fixture(scope="module")
def step(checkpoint):
    """One model step shared by the tests (as one actor serves many blocks), so shapes compile once."""
    return PredictEmbeddings(checkpoint[0], batch_tokens=128, pack_length=PACK_LENGTH)


def random_rows(count, seed, lengths=LENGTHS):
    rng = np.random.default_rng(seed)
    return [[0, *rng.integers(3, 99, size=n - 2).tolist(), 2] for n in rng.choice(lengths, size=count)]


def direct(model, row, pooling, normalize):
    """The reference: one row, no padding, pooled and normalised in NumPy."""
    ids = np.array([row], dtype=np.int32)
    hidden = np.asarray(model(ids, attention_mask=np.ones_like(ids)).last_hidden_state[0], dtype=np.float64)
    vector = hidden.mean(axis=0) if pooling == "mean" else hidden[0]
    return vector / np.linalg.norm(vector) if normalize else vector


def table(rows, errors=None):
    return pa.table(
        {
            "id": pa.array([f"r{index}" for index in range(len(rows))]),
            "input_ids": pa.array(rows, type=pa.list_(pa.int32())),
            "error": pa.array(errors or [None] * len(rows), type=pa.string()),
        }
    )


def embeddings(result):
    return np.array([np.nan * np.ones(32) if v is None else v for v in result.column("embedding").to_pylist()])


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False)])
def test_equals_a_direct_call_per_row(checkpoint, step, pooling, normalize):
    path, model = checkpoint
    rows = random_rows(23 if pooling == "mean" else 9, seed=pooling == "cls")
    if pooling != "mean":
        step = PredictEmbeddings(path, pooling=pooling, normalize=normalize, batch_tokens=128, pack_length=PACK_LENGTH)
    result = step(table(rows))
    assert result.column("id").to_pylist() == [f"r{index}" for index in range(len(rows))]  # order restored
    assert result.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    got = embeddings(result)
    for index, row in enumerate(rows):
        np.testing.assert_allclose(got[index], direct(model, row, pooling, normalize), atol=1e-5, rtol=0)
    padded = [len(row) for row in rows if len(row) > PACK_LENGTH]
    assert len(padded) < len(rows) and any(key[0] == "packed" for key in step.programs.programs)  # some packed
    plan = plan_batches(padded + [16] * 9, step.batch_tokens, step.buckets)
    assert len({(batch.size, batch.length) for batch in plan}) > 1  # the ladder cuts padded rows into several shapes
    shares = result.column(PADDED_TOKENS).to_numpy()
    assert shares.sum() >= sum(map(len, rows))


def test_a_row_does_not_depend_on_its_batch_mates(step, monkeypatch):
    rows = random_rows(31, seed=7)
    monkeypatch.setattr(step.model_calls, "batch_tokens", 1)
    monkeypatch.setattr(step.model_calls, "pack_length", 0)  # every row in a batch of its own
    reference = embeddings(step(table(rows)))
    monkeypatch.setattr(step.model_calls, "pack_length", PACK_LENGTH)  # several rows in one model row
    np.testing.assert_allclose(embeddings(step(table(rows))), reference, atol=1e-5, rtol=0)
    monkeypatch.setattr(step.model_calls, "batch_tokens", 256)
    np.testing.assert_allclose(embeddings(step(table(rows))), reference, atol=1e-5, rtol=0)
    # The same rows among other company, in another order, in other padded lengths.
    others = random_rows(9, seed=8, lengths=(4, 5))
    mixed = rows[::-1] + others
    np.testing.assert_allclose(embeddings(step(table(mixed)))[: len(rows)], reference[::-1], atol=1e-5, rtol=0)


def test_error_rows_pass_through_with_a_null_embedding(checkpoint, step):
    _, model = checkpoint
    rows = [[0, 5, 2], [], [0, *range(3, 43), 2], [0, 7, 8, 2]]
    errors = [None, "text is null", None, None]
    result = step(table(rows, errors))
    assert result.column("embedding").to_pylist()[1:3] == [None, None]
    assert result.column("error").to_pylist() == [
        None,
        "text is null",
        "42 tokens is more than the model's maximum of 38",
        None,
    ]
    np.testing.assert_allclose(embeddings(result)[3], direct(model, rows[3], "mean", True), atol=1e-5, rtol=0)
    assert result.column(PADDED_TOKENS).to_pylist()[1:3] == [0.0, 0.0]


def test_missing_column_is_named(step):
    with pytest.raises(MissingColumnError, match="PredictEmbeddings needs a column 'input_ids'"):
        step(pa.table({"id": [1], "error": pa.array([None], pa.string())}))


def test_options_are_checked(checkpoint):
    with pytest.raises(ValueError, match="max_length 39 exceeds"):
        PredictEmbeddings(checkpoint[0], max_length=39)
    with pytest.raises(ValueError, match="longest padded length 64 must be between max_length 38 and"):
        PredictEmbeddings(checkpoint[0], buckets=(16, 64))
    with pytest.raises(ValueError, match="pooling must be one of"):
        PredictEmbeddings(checkpoint[0], pooling="max")
    with pytest.raises(ValueError, match="pack_length must be 0"):
        PredictEmbeddings(checkpoint[0], pack_length=-1)
    for job_options in (EmbedOptions, ClassifyOptions, LabelOptions):
        with pytest.raises(ValueError, match="pack_length must be 0"):
            job_options(pack_length=-1)  # the jobs' option, checked on the driver
    assert PredictEmbeddings(checkpoint[0]).pack_length == 38  # no longer than a row may be


def test_flaubert_cls_pooling_equals_the_reference(tmp_path):
    """FlauBERT through FlaxAutoModel: every position usable (they start at 0), padded with pad_index, and `cls`
    (the state of <s>) equal to transformers' FlaubertModel on the unpadded row."""
    import torch
    import transformers

    from tests.operators.flaubert_checkpoints import (
        POSITIONS,
        build_flaubert_checkpoint,
    )

    folder = build_flaubert_checkpoint(tmp_path / "flaubert", transformers.FlaubertModel)
    step = PredictEmbeddings(str(folder), pooling="cls", normalize=False, buckets=(POSITIONS,), batch_tokens=256)
    assert (step.max_length, step.pad_id) == (POSITIONS, 2)
    rows = [[0, *range(20, 20 + n), 1] for n in (1, 9, POSITIONS - 2)]
    reference = transformers.FlaubertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = [reference(torch.tensor([row])).last_hidden_state[0, 0].numpy() for row in rows]
    np.testing.assert_allclose(embeddings(step(table(rows)))[:, :24], np.stack(expected), atol=1e-4, rtol=0)


def test_a_t5_checkpoint_is_refused_before_its_weights_are_read():
    from textbatch.jobs.embed import ASSETS

    with pytest.raises(ValueError, match="model_type is 't5'.*supported model types: flaubert, xlm-roberta"):
        PredictEmbeddings(str(ASSETS / "flan-t5-tiny"))


def test_bfloat16_stays_close_to_float32(checkpoint, step):
    rows = random_rows(6, seed=11)
    low = PredictEmbeddings(checkpoint[0], dtype="bfloat16", batch_tokens=128)(table(rows))
    assert low.schema.field("embedding").type == pa.list_(pa.float32(), 32)  # pooled in float32 whatever the dtype
    cosine = np.sum(embeddings(low) * embeddings(step(table(rows))), axis=1)  # both are unit vectors
    # bf16 keeps 8 bits of mantissa (relative error up to 2**-8 per rounding); averaged over tokens and dimensions the
    # vector moves far less (seen: cosine 0.99999, max difference 2e-3). 0.999 allows ~100x that angle.
    assert cosine.min() > 0.999, cosine


def test_arrow_lists_become_flat_values_and_offsets_without_python_lists():
    column = pa.chunked_array([pa.array([[1, 2], None, [3], [4, 5, 6]], pa.list_(pa.int32()))]).slice(1)
    values, offsets, lengths = flat_lists(column)
    assert [values[offsets[i] : offsets[i] + lengths[i]].tolist() for i in range(3)] == [[], [3], [4, 5, 6]]
    # a null slot that spans values (Arrow allows it) still counts as empty
    spanning = pa.ListArray.from_arrays(pa.array([0, 2, 3]), pa.array([7, 8, 9], pa.int32()), mask=pa.array([True, False]))
    assert flat_lists(spanning)[2].tolist() == [0, 1]


def test_timings_for_the_run_report(checkpoint):
    step = PredictEmbeddings(checkpoint[0], batch_tokens=64, shape_cost=None)  # plans independent of history
    rows = random_rows(7, seed=3)
    first = step(table(rows))
    for name in TIMING_COLUMNS:  # a call's milliseconds sit on its first row
        assert first.column(name).to_pylist()[1:] == [0] * 6
    load, model, compiled, shapes = (first.column(name)[0].as_py() for name in TIMING_COLUMNS)
    assert load > 0 and model >= compiled > 0 and step.compile_seconds * 1000 == pytest.approx(compiled, abs=1)
    assert shapes == len(step.programs.programs) > 0
    again = step(table(rows))  # same rows, same plan: nothing to load or compile
    assert again.column(LOAD_MS)[0].as_py() == 0 and again.column(COMPILE_MS)[0].as_py() == 0
    np.testing.assert_allclose(embeddings(again), embeddings(first), atol=1e-6, rtol=0)

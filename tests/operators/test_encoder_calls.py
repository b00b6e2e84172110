"""EncoderCalls with a stand-in for the model: every row's output comes back to that row, packed or padded, per row
and per token, in any order of lengths; the padded share of each row adds up to the padded tokens computed."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from textbatch.operators.encoder_calls import EncoderCalls, flat_rows

PAD, FIRST_POSITION = 1, 2


def ids_and_positions(params, inputs):
    """Each token's id and position (padded rows count positions from 0)."""
    ids = inputs["ids"]
    positions = inputs.get("positions", jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape))
    return jnp.stack([ids, positions], axis=-1)


def sums_of_ids(params, inputs, max_segments):
    """Each row's sum of ids: [batch] padded; [batch, max_segments] packed."""
    if "segments" in inputs:
        member = inputs["segments"][..., None] == jnp.arange(1, max_segments + 1)  # [batch, len, max_segments]
        return jnp.sum(inputs["ids"][..., None] * member, axis=1)
    return jnp.sum(inputs["ids"] * inputs["mask"], axis=1)


def rows_of(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 50, size=length).astype(np.int32) for length in lengths]


def calls(pack_length, per_token_outputs):
    """EncoderCalls of ids_and_positions (per token) or sums_of_ids (per row)."""

    def function(params, inputs):
        if per_token_outputs:
            return ids_and_positions(params, inputs)
        return sums_of_ids(params, inputs, made.max_segments)

    made = EncoderCalls(
        function,
        {},
        describe="a stand-in",
        pad_id=PAD,
        first_position=FIRST_POSITION,
        batch_tokens=64,
        buckets=(8, 16, 32),
        pack_length=pack_length,
        per_token=per_token_outputs,
    )
    return made


LENGTHS = [5, 31, 1, 16, 9, 2, 32, 17, 3, 8, 12, 30, 4]


@pytest.mark.parametrize("pack_length", [0, 16, 32])
def test_each_row_gets_its_own_tokens_back(pack_length):
    rows = rows_of(LENGTHS)
    values, offsets = flat_rows(rows)
    step = calls(pack_length, per_token_outputs=True)
    outputs, shares = step(values, offsets, np.arange(len(rows)))
    for row, output in zip(rows, outputs):
        assert output.shape == (len(row), 2)
        np.testing.assert_array_equal(output[:, 0], row)
        start = FIRST_POSITION if len(row) <= step.pack_length else 0
        np.testing.assert_array_equal(output[:, 1], np.arange(start, start + len(row)))
    assert shares.sum() >= sum(LENGTHS)
    if pack_length == 32:
        assert all(shape[0] == "packed" for shape in step.programs.programs)  # every row fits a model row


@pytest.mark.parametrize("pack_length", [0, 16])
def test_each_row_gets_its_own_result_back_in_the_order_asked(pack_length):
    rows = rows_of(LENGTHS, seed=1)
    values, offsets = flat_rows(rows)
    order = np.array([7, 0, 12, 3, 5])  # a subset, out of order
    outputs, _ = calls(pack_length, per_token_outputs=False)(values, offsets, order)
    np.testing.assert_array_equal(outputs, [rows[index].sum() for index in order])


def test_a_family_without_packing_pads_every_row():
    step = EncoderCalls(ids_and_positions, {}, describe="-", pad_id=PAD, first_position=None, batch_tokens=64,
                        buckets=(8, 32), pack_length=128)
    assert step.pack_length == 0
    with pytest.raises(ValueError, match="pack_length must be 0"):
        EncoderCalls(ids_and_positions, {}, describe="-", pad_id=PAD, first_position=2, batch_tokens=64, buckets=(8,),
                     pack_length=-1)

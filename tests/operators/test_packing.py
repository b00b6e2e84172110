"""Packing short rows into model rows: every row once, nothing over the limits, full model rows, the inputs' layout."""

from __future__ import annotations

import numpy as np
import pytest

from textbatch.operators.packing import pack_rows, packed_inputs, plan_packed_batches


def benchmark_lengths(count: int, seed: int = 0) -> np.ndarray:
    """The benchmark protocol's lengths (log-normal, median 48, sigma 0.8), clipped to 3..128."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(48), 0.8, count)), 3, 128).astype(np.int64)


def test_every_row_once_within_the_length_and_the_row_count():
    lengths = benchmark_lengths(500)
    bins = pack_rows(lengths, 128, max_segments=6)
    assert sorted(row for members in bins for row in members) == list(range(500))
    assert all(sum(lengths[members]) <= 128 and 1 <= len(members) <= 6 for members in bins)
    assert all(list(lengths[members]) == sorted(lengths[members], reverse=True) for members in bins)  # longest first


def test_model_rows_come_out_nearly_full():
    lengths = benchmark_lengths(2000, seed=1)
    bins = pack_rows(lengths, 128, max_segments=32)
    assert lengths.sum() / (128 * len(bins)) > 0.97  # the padded ladder reaches ~0.87 on these


def test_rows_longer_than_the_model_row_are_refused():
    with pytest.raises(ValueError, match=r"packed rows must be 1\.\.16 tokens long"):
        pack_rows(np.array([3, 17]), 16, max_segments=4)
    assert pack_rows(np.zeros(0, dtype=np.int64), 16, max_segments=4) == []


def test_batches_of_the_budget_and_a_power_of_two_tail():
    bins = [[index] for index in range(21)]
    batches = plan_packed_batches(bins, 32, batch_tokens=256)  # 8 model rows a batch
    assert [(batch.size, len(batch.members)) for batch in batches] == [(8, 8), (8, 8), (8, 5)]
    assert plan_packed_batches(bins[:3], 32, batch_tokens=256)[0].shape == (4, 32)
    assert plan_packed_batches(bins[:3], 64, batch_tokens=16)[0].shape == (1, 64)  # one model row at least
    assert batches[0].rows.tolist() == list(range(8))


def test_packed_inputs_layout():
    values = np.arange(100, 112, dtype=np.int32)
    starts, stops = np.array([0, 5, 7]), np.array([5, 7, 12])  # rows of 5, 2 and 5 tokens
    batch = plan_packed_batches([[0, 2], [1]], 12, batch_tokens=36)[0]  # room for 3 model rows, 2 used
    ids, segments, positions = packed_inputs(values, starts, stops, batch, pad_id=1, first_position=2)
    assert batch.shape == (2, 12)
    assert ids[0].tolist() == [100, 101, 102, 103, 104, 107, 108, 109, 110, 111, 1, 1]
    assert segments[0].tolist() == [1] * 5 + [2] * 5 + [0, 0]
    assert positions[0].tolist() == [2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 2, 2]
    assert ids[1].tolist() == [105, 106] + [1] * 10 and segments[1].tolist() == [1, 1] + [0] * 10

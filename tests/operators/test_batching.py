"""Bucketing and token-budget batching, without Ray or JAX."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from textbatch.operators.batching import bucket_for, bucket_lengths, padding_efficiency, plan_batches


def test_bucket_ladder_for_xlm_r():
    assert bucket_lengths(512) == (16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)


@pytest.mark.parametrize("max_length", [1, 7, 16, 17, 37, 64, 65, 100, 510, 1000])
def test_buckets_end_at_max_length_and_waste_at_most_a_quarter(max_length):
    buckets = bucket_lengths(max_length)
    assert buckets[-1] == max_length
    assert list(buckets) == sorted(set(buckets))
    for shorter, longer in itertools.pairwise(buckets):
        # A row one token longer than `shorter` is padded to `longer`: at most 16 tokens or a quarter more.
        assert longer - (shorter + 1) <= max(15, (shorter + 1) // 4)


def test_bucket_for_picks_the_smallest_that_fits():
    buckets = (16, 32, 48)
    assert [bucket_for(n, buckets) for n in (1, 16, 17, 32, 33, 48)] == [16, 16, 32, 32, 48, 48]
    with pytest.raises(ValueError, match="49 tokens"):
        bucket_for(49, buckets)


def _check_plan(lengths, batch_tokens, buckets):
    batches = plan_batches(lengths, batch_tokens, buckets)
    seen = np.concatenate([batch.rows for batch in batches]) if batches else np.array([], dtype=int)
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # every row exactly once
    partial = 0
    for batch in batches:
        longest = max(lengths[row] for row in batch.rows)
        assert batch.length == bucket_for(longest, buckets)
        capacity = max(1, batch_tokens // batch.length)
        assert len(batch.rows) <= batch.size <= capacity
        assert batch.padded_tokens <= batch_tokens or batch.size == 1
        if batch.size != capacity:
            partial += 1
            assert batch.size & (batch.size - 1) == 0  # short batches come in power-of-two sizes
            assert batch.size < 2 * len(batch.rows)
    assert partial <= 1  # only a block's last batch is short
    return batches


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_tokens", [1, 37, 500, 4096])
def test_plans_cover_every_row_within_budget(seed, batch_tokens):
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(48), 0.8, size=rng.integers(1, 300)).astype(int), 2, 512)
    _check_plan(lengths, batch_tokens, bucket_lengths(512))


def test_longest_rows_go_first_and_shapes_stay_few():
    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 130, size=997)
    buckets = bucket_lengths(130)
    batches = _check_plan(lengths, 1000, buckets)
    assert [batch.length for batch in batches] == sorted((batch.length for batch in batches), reverse=True)
    assert len({(batch.size, batch.length) for batch in batches}) <= len(buckets) + 1
    assert 0.5 < padding_efficiency(lengths, batches) <= 1.0


def test_a_row_longer_than_the_budget_gets_a_batch_of_its_own():
    batches = plan_batches([300, 5, 7], batch_tokens=100, buckets=(16, 320))
    assert [(batch.length, batch.size, batch.rows.tolist()) for batch in batches] == [(320, 1, [0]), (16, 2, [2, 1])]


def test_exact_fit_needs_no_filler_rows():
    batches = plan_batches([16] * 12, batch_tokens=64, buckets=(16,))
    assert [(batch.size, len(batch.rows)) for batch in batches] == [(4, 4)] * 3
    assert padding_efficiency([16] * 12, batches) == 1.0


def test_empty_block_and_bad_lengths():
    assert plan_batches([], 100, (16,)) == []
    with pytest.raises(ValueError, match="at least one token"):
        plan_batches([3, 0], 100, (16,))

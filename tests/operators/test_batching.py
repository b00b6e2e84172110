"""Bucketing and token-budget batching, without Ray or JAX."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from textbatch.operators.batching import bucket_for, bucket_lengths, pad_rows, padding_efficiency, plan_batches


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


# -- weighing padding against compiled shapes (shape_cost) -------------------------------------------------------------


def _plan_cost(batches, shape_cost, known=()):
    shapes = {batch.shape for batch in batches} - set(known)
    return sum(batch.padded_tokens for batch in batches) + shape_cost * len(shapes)


def _check_rows(lengths, batches, batch_tokens):
    seen = np.concatenate([batch.rows for batch in batches])
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # every row exactly once
    for batch in batches:
        assert max(lengths[row] for row in batch.rows) <= batch.length
        assert len(batch.rows) <= batch.size and (batch.padded_tokens <= batch_tokens or batch.size == 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("shape_cost", [0, 300, 5000])
def test_costed_plans_cover_every_row_and_never_cost_more_than_one_shape(seed, shape_cost):
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(48), 0.8, size=rng.integers(1, 400)).astype(int), 2, 512)
    buckets = bucket_lengths(512)
    batches = plan_batches(lengths, 1000, buckets, shape_cost=shape_cost)
    _check_rows(lengths, batches, 1000)
    # The search starts from the plan that pads everything to the longest row's bucket and only ever improves on it.
    longest = (bucket_for(int(lengths.max()), buckets),)
    one_shape = plan_batches(lengths, 1000, longest, shape_cost=shape_cost)
    assert _plan_cost(batches, shape_cost) <= _plan_cost(one_shape, shape_cost)
    if shape_cost == 0:  # shapes are free: at least as little padding as every bucket of the ladder gives
        assert padding_efficiency(lengths, batches) >= padding_efficiency(lengths, plan_batches(lengths, 1000, buckets))


def test_an_expensive_shape_is_not_worth_a_little_padding():
    lengths = [100] * 3 + [20] * 30  # 3 rows of bucket 112 and 30 of bucket 32 in a 1000-token budget
    buckets = bucket_lengths(112)
    free = plan_batches(lengths, 1000, buckets, shape_cost=0)
    assert {batch.length for batch in free} == {112, 32}
    costly = plan_batches(lengths, 1000, buckets, shape_cost=10**6)
    assert {batch.shape for batch in costly} == {(8, 112)}  # one program; the tail pads to it rather than compile
    _check_rows(np.array(lengths), costly, 1000)


def test_shapes_compiled_before_are_free():
    lengths = [100] * 3 + [20] * 30
    buckets = bucket_lengths(112)
    known = {(31, 32)}  # the full 1000-token batch of bucket 32, compiled for an earlier block
    batches = plan_batches(lengths, 1000, buckets, shape_cost=10**6, known_shapes=known)
    assert (31, 32) in {batch.shape for batch in batches}
    # a short tail takes the known full shape instead of compiling its power-of-two size
    tail = plan_batches([20] * 5, 1000, buckets, shape_cost=10**6, known_shapes=known)
    assert [batch.shape for batch in tail] == [(31, 32)]
    assert [batch.shape for batch in plan_batches([20] * 5, 1000, buckets)] == [(8, 32)]  # without costs: pow2


def test_row_limit_holds_with_costs_too():
    batches = plan_batches([9, 9, 9, 30, 30], 64, (16, 32), batch_size=2, shape_cost=10**6)
    assert all(len(batch.rows) <= batch.size <= 2 for batch in batches)
    _check_rows(np.array([9, 9, 9, 30, 30]), batches, 64)


def test_negative_shape_cost_is_refused():
    with pytest.raises(ValueError, match="shape_cost must be >= 0"):
        plan_batches([3], 100, (16,), shape_cost=-1)


# -- padding rows straight from an Arrow list column's values and offsets ----------------------------------------------


def test_pad_rows_matches_a_row_by_row_copy():
    rng = np.random.default_rng(5)
    rows = [rng.integers(3, 99, size=n).astype(np.int32) for n in (5, 1, 13, 7, 2)]
    offsets = np.concatenate([[0], np.cumsum([len(row) for row in rows])])
    values = np.concatenate(rows)
    picked = np.array([2, 0, 4])
    ids, mask = pad_rows(values, offsets, picked, size=5, length=16, pad_id=1)
    assert ids.shape == mask.shape == (5, 16) and ids.dtype == mask.dtype == np.int32
    for slot, row in enumerate([2, 0, 4, 2, 2]):  # slots past the real rows repeat the first one
        n = len(rows[row])
        assert ids[slot, :n].tolist() == rows[row].tolist() and (ids[slot, n:] == 1).all()
        assert mask[slot].tolist() == [1] * n + [0] * (16 - n)
    with pytest.raises(ValueError, match="13 tokens does not fit the padded length 8"):
        pad_rows(values, offsets, picked, size=4, length=8, pad_id=1)

"""How a block of tokenized rows is cut into padded batches: pure functions, no Ray, no JAX.

A compiled program exists per input shape `[rows, length]`, so the shapes must be few. Lengths are padded up to a
short ladder of buckets (16, 32, 48, 64, 80, 96, 112, 128, 160, ..., 448, 512: see `bucket_lengths`). Each batch
holds as many rows as fit in the token budget at its padded length (and no more than the row limit, when one is
set: generation's cost follows rows more than prompt tokens). Rows are taken longest first, so a batch's first
row fixes its length and the following, shorter rows fill it; only the last batch of a block may be short, and its
row count is rounded up to a power of two (filled with copies of a real row) so that a block's tail does not
compile a new program for every size.

Compilation is part of the bill (about 4 s per shape for xlm-roberta-base on a 2-core CPU, the time of ~7,000 padded
tokens), so `plan_batches` can also weigh padding against new shapes (`shape_cost`): it then uses only the buckets
that save more padded tokens than their compilation costs, counts shapes the caller has compiled already
(`known_shapes`) as free, and pads a block's last batch to a known shape when that is cheaper than a new one.
With `shape_cost=None` every bucket of the ladder is used.

Padding efficiency grows with the rows per call: on the benchmark's length distribution (log-normal, median 48) with
a 4096-token budget it is about 0.79 for 512 rows and 0.86 for 4096 rows (0.88 is the ladder's own limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import numpy as np

SMALLEST_BUCKET = 16


def bucket_lengths(max_length: int, smallest: int = SMALLEST_BUCKET) -> tuple[int, ...]:
    """Padded lengths up to and including `max_length`.

    Steps of `smallest` up to 4x `smallest`, then four steps per doubling (64, 80, 96, 112, 128, 160, 192, ...): a
    row is padded by at most a quarter of its length (beyond the first `smallest` tokens), with 16 shapes up to 512.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    ladder = []
    length = smallest
    while length < max_length:
        ladder.append(length)
        length += smallest if length < 4 * smallest else (1 << (length.bit_length() - 1)) // 4
    ladder.append(max_length)
    return tuple(ladder)


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `length` tokens."""
    for bucket in buckets:
        if length <= bucket:
            return bucket
    raise ValueError(f"a row of {length} tokens is longer than the largest padded length {buckets[-1]}")


def next_power_of_two(count: int) -> int:
    return 1 << max(0, count - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class Batch:
    """One model call: `rows` (indices into the block) padded to `[size, length]`; `size >= len(rows)`."""

    length: int
    size: int
    rows: np.ndarray

    @property
    def padded_tokens(self) -> int:
        return self.size * self.length

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.length)


def _capacity(length: int, batch_tokens: int | None, batch_size: int | None) -> int:
    capacity = max(1, batch_tokens // length) if batch_tokens is not None else batch_size
    return min(capacity, batch_size) if batch_size is not None else capacity


def _greedy_plan(
    sorted_lengths: np.ndarray,
    allowed: Sequence[int],
    batch_tokens: int | None,
    batch_size: int | None,
    known: Collection[tuple[int, int]],
    shape_cost: float | None,
) -> tuple[float, list[tuple[int, int, int, int]]]:
    """Longest first over `allowed` buckets: (padded tokens + shape_cost per new shape, [(length, size, start, stop)])."""
    plan: list[tuple[int, int, int, int]] = []
    new: set[tuple[int, int]] = set()
    cost = 0.0
    start = 0
    while start < len(sorted_lengths):
        length = bucket_for(int(sorted_lengths[start]), allowed)
        capacity = _capacity(length, batch_tokens, batch_size)
        stop = min(len(sorted_lengths), start + capacity)
        size = capacity
        if stop - start < capacity:  # the block's last batch: a power-of-two size, or the full one if cheaper
            smaller = min(capacity, next_power_of_two(stop - start))
            prices = [
                rows * length + (shape_cost if shape_cost and (rows, length) not in known | new else 0.0)
                for rows in (smaller, capacity)
            ]
            size = smaller if shape_cost is None or prices[0] <= prices[1] else capacity
        if (size, length) not in known and (size, length) not in new:
            new.add((size, length))
            cost += shape_cost or 0.0
        cost += size * length
        plan.append((length, size, start, stop))
        start = stop
    return cost, plan


def _cheapest_plan(
    ordered: np.ndarray,
    buckets: Sequence[int],
    batch_tokens: int | None,
    batch_size: int | None,
    known: set[tuple[int, int]],
    shape_cost: float,
) -> list[tuple[int, int, int, int]]:
    """The plan of least padded tokens + shape costs over subsets of the ladder (the longest row's bucket always in):
    grown from that bucket (and the buckets whose full shape is known) one bucket at a time, and shrunk from the
    whole ladder one bucket at a time, each while the cost falls; the cheaper of the two wins."""
    longest = bucket_for(int(ordered[0]), buckets)
    usable = [bucket for bucket in buckets if bucket <= longest]

    def plan_with(chosen: set[int]) -> tuple[float, list[tuple[int, int, int, int]]]:
        return _greedy_plan(ordered, sorted(chosen), batch_tokens, batch_size, known, shape_cost)

    def improve(chosen: set[int], moves: list[int], grow: bool):
        cost, plan = plan_with(chosen)
        while True:
            trials = [(*plan_with(chosen | {b} if grow else chosen - {b}), b) for b in moves if (b in chosen) != grow]
            if not trials:
                return cost, len(chosen), plan
            best_cost, best_plan, best_bucket = min(trials, key=lambda trial: (trial[0], trial[2]))
            if best_cost >= cost:
                return cost, len(chosen), plan
            cost, plan = best_cost, best_plan
            chosen = chosen | {best_bucket} if grow else chosen - {best_bucket}

    free = {bucket for bucket in usable if (_capacity(bucket, batch_tokens, batch_size), bucket) in known}
    others = [bucket for bucket in usable if bucket != longest]
    grown = improve({longest} | free, others, grow=True)
    shrunk = improve(set(usable), others, grow=False)
    return min(grown, shrunk, key=lambda result: result[:2])[2]


def plan_batches(
    lengths: Sequence[int],
    batch_tokens: int | None,
    buckets: Sequence[int],
    batch_size: int | None = None,
    *,
    shape_cost: float | None = None,
    known_shapes: Collection[tuple[int, int]] = (),
) -> list[Batch]:
    """Cut rows of the given token `lengths` (all >= 1) into batches of at most `batch_tokens` padded tokens
    and, when `batch_size` is given, at most `batch_size` rows (`batch_tokens=None`: rows alone decide).

    A batch never exceeds the budget, except that one row always fits (a row longer than the budget forms a batch of
    its own). Every row index appears in exactly one batch.

    `shape_cost` (padded tokens; None: ignore compilation) prices each shape `(size, length)` not in `known_shapes`,
    and the plan uses the subset of buckets that keeps padded tokens + shape costs low (`_cheapest_plan`). A shape
    compiled earlier is free, so a long run ends up using every bucket that pays for itself.
    """
    if batch_tokens is None and batch_size is None:
        raise ValueError("plan_batches needs batch_tokens, batch_size or both")
    for name, value in (("batch_tokens", batch_tokens), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if shape_cost is not None and shape_cost < 0:
        raise ValueError(f"shape_cost must be >= 0, got {shape_cost}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and lengths.min() < 1:
        raise ValueError("every row to batch needs at least one token")
    # Longest first; stable, so equal lengths keep block order (which makes plans reproducible).
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    if not len(order):
        return []
    known = set(known_shapes)
    if shape_cost is None:
        _, plan = _greedy_plan(ordered, buckets, batch_tokens, batch_size, known, None)
    else:
        plan = _cheapest_plan(ordered, buckets, batch_tokens, batch_size, known, shape_cost)
    return [Batch(length=length, size=size, rows=order[start:stop]) for length, size, start, stop in plan]


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Batch]) -> float:
    """Real tokens / padded tokens computed (1.0 means no padding at all)."""
    padded = sum(batch.padded_tokens for batch in batches)
    return float(np.sum(lengths)) / padded if padded else 1.0


def pad_rows(
    values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, size: int, length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `[size, length]` int32 ids and 0/1 mask of `rows`, each row `values[offsets[row]:offsets[row + 1]]`
    (an Arrow list column's flat values and offsets), right-padded with `pad_id`, without Python lists.

    Slots past `len(rows)` repeat the first row: realistic input, no all-padding rows; their output is dropped.
    """
    rows = np.asarray(rows)
    starts = offsets[rows].astype(np.int64)
    counts = offsets[rows + 1].astype(np.int64) - starts
    if counts.size and counts.max() > length:
        raise ValueError(f"a row of {int(counts.max())} tokens does not fit the padded length {length}")
    filled = np.concatenate([np.arange(len(rows)), np.zeros(size - len(rows), dtype=np.int64)])
    starts, counts = starts[filled], counts[filled]
    slot = np.repeat(np.arange(size), counts)  # [tokens]: each token's slot
    column = np.arange(slot.size) - np.repeat(np.cumsum(counts) - counts, counts)  # its position in the slot
    ids = np.full((size, length), pad_id, dtype=np.int32)
    ids[slot, column] = values[np.repeat(starts, counts) + column]
    mask = (np.arange(length)[None, :] < counts[:, None]).astype(np.int32)
    return ids, mask

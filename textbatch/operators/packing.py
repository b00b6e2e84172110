"""Packing short rows side by side into model rows of a fixed length: pure functions, no Ray, no JAX.

Padding rows to a ladder of lengths still wastes about an eighth of the model's work on short texts, and every rung
is a program to compile. Packed, several rows share one model row of `pack_length` tokens: each row attends only to
its own tokens (a block-diagonal attention mask built from the segment ids), counts its positions from its own
start, and is pooled over its own tokens, so its embedding is the one it would get alone (up to float rounding).
Rows are placed longest first into the fullest model row they fit in (best fit), which fills model rows to ~98% on
the benchmark's corpus; the batches all have one shape, `[batch_tokens // pack_length, pack_length]`, but for a
block's last batch, whose row count is rounded up to a power of two.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from textbatch.operators.batching import Batch, next_power_of_two


@dataclasses.dataclass(frozen=True)
class PackedBatch(Batch):
    """A `Batch` whose model rows hold several rows each: `members[i]`, the block's rows packed, in order, into model
    row i (`rows` lists them all, in that order)."""

    members: list[list[int]]

    @classmethod
    def of(cls, length: int, size: int, members: list[list[int]]) -> PackedBatch:
        rows = np.array([row for model_row in members for row in model_row], dtype=np.int64)
        return cls(length, size, rows, members)


def pack_rows(lengths: np.ndarray, pack_length: int, max_segments: int) -> list[list[int]]:
    """Indices of rows (each 1..pack_length long) grouped into model rows of at most `pack_length` tokens and
    `max_segments` rows: longest first, each into the fullest model row that still has room (best fit decreasing)."""
    if len(lengths) and not 1 <= int(np.min(lengths)) <= int(np.max(lengths)) <= pack_length:
        raise ValueError(f"packed rows must be 1..{pack_length} tokens long")
    bins: list[list[int]] = []
    free = np.zeros(0, dtype=np.int64)  # room left in each model row; a full one (or one of max_segments) gets -1
    for row in np.argsort(-lengths, kind="stable"):
        length = int(lengths[row])
        fits = np.flatnonzero(free >= length)
        if len(fits):
            target = int(fits[np.argmin(free[fits])])
        else:
            target = len(bins)
            bins.append([])
            free = np.append(free, pack_length)
        bins[target].append(int(row))
        free[target] = -1 if len(bins[target]) == max_segments else free[target] - length
    return bins


def plan_packed_batches(bins: list[list[int]], pack_length: int, batch_tokens: int) -> list[PackedBatch]:
    """Model rows in batches of `batch_tokens // pack_length` (at least 1); the last batch's size is rounded up to a
    power of two, so that a block's tail compiles few shapes."""
    per_batch = max(1, batch_tokens // pack_length)
    batches = []
    for start in range(0, len(bins), per_batch):
        members = bins[start : start + per_batch]
        size = min(per_batch, next_power_of_two(len(members)))
        batches.append(PackedBatch.of(pack_length, size, members))
    return batches


def packed_inputs(
    values: np.ndarray, starts: np.ndarray, stops: np.ndarray, batch: PackedBatch, pad_id: int, first_position: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, segments, positions), each [size, length] int32, of a packed batch whose row r is
    `values[starts[r]:stops[r]]`: segments number a model row's rows from 1 (0: padding); positions count from
    `first_position` in each row (XLM-R's start after its pad id)."""
    ids = np.full(batch.shape, pad_id, dtype=np.int32)
    segments = np.zeros(batch.shape, dtype=np.int32)
    positions = np.full(batch.shape, first_position, dtype=np.int32)
    for slot, members in enumerate(batch.members):
        at = 0
        for segment, row in enumerate(members, start=1):
            count = int(stops[row] - starts[row])
            ids[slot, at : at + count] = values[starts[row] : stops[row]]
            segments[slot, at : at + count] = segment
            positions[slot, at : at + count] = np.arange(first_position, first_position + count)
            at += count
    return ids, segments, positions

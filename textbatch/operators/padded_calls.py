"""What the classification model actors share: loading a head with its window, and running token id rows through a
compiled model call in length-sorted, token-budget batches of a few padded shapes (`batching.py`).

Rows are right-padded with the pad id and masked, so a row's result does not depend on its batch-mates; filler rows
that round a block's last batch up to a power of two repeat the batch's first row, and their output is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from textbatch.operators.batching import bucket_lengths, pad_rows, plan_batches

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")


def usable_length(config: Any) -> int:
    """Longest input (special tokens included) the checkpoint's positions allow: XLM-R's positions start after the
    pad id; other families (FlauBERT) count from 0."""
    positions = int(config.max_position_embeddings)
    if getattr(config, "model_type", None) == "xlm-roberta":
        return positions - int(config.pad_token_id) - 1
    return positions


def resolve_buckets(max_length: int, buckets: Sequence[int] | None, limit: int, where: str) -> tuple[int, ...]:
    """The padded lengths to compile for: `buckets`, or the default ladder up to `max_length`; checked against what
    the checkpoint at `where` can take (`limit`)."""
    if max_length > limit:
        raise ValueError(f"max_length {max_length} exceeds what {where} can take ({limit} tokens)")
    ladder = tuple(buckets) if buckets else bucket_lengths(max_length)
    if not max_length <= ladder[-1] <= limit:
        raise ValueError(
            f"the longest padded length {ladder[-1]} must be between max_length {max_length} and what {where} can "
            f"take ({limit})"
        )
    return ladder


class PaddedCaller:
    """`caller(rows)` -> (each row's output, each row's share of the padded area it was computed in).

    `call(ids [size, length] int32, mask [size, length] int32)` returns an array [size, ...] (a JAX array: it is
    fetched only after every batch is dispatched, so the host pads the next batch while the device runs).
    """

    def __init__(self, call: Callable, *, pad_id: int, batch_tokens: int, buckets: Sequence[int]):
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        self.call = call
        self.pad_id = int(pad_id)
        self.batch_tokens = int(batch_tokens)
        self.buckets = tuple(buckets)
        self._shapes_seen: set[tuple[int, int]] = set()

    @classmethod
    def for_model(cls, model: Any, function: Callable, *, batch_tokens: int, buckets: Sequence[int]) -> PaddedCaller:
        """Calls of `function(params, ids, mask)`, compiled per padded shape, with the model's parameters placed once
        and its pad id."""
        import jax

        params = jax.device_put(model.params)
        compiled = jax.jit(function)
        return cls(
            lambda ids, mask: compiled(params, ids, mask),
            pad_id=model.config.pad_token_id,
            batch_tokens=batch_tokens,
            buckets=buckets,
        )

    def __call__(self, rows: Sequence[Sequence[int]]) -> tuple[list[np.ndarray], np.ndarray]:
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.concatenate([np.asarray(row, dtype=np.int32) for row in rows]) if rows else np.zeros(0, np.int32)
        outputs: list[np.ndarray] = [None] * len(rows)  # type: ignore[list-item]
        shares = np.zeros(len(rows), dtype=np.float64)
        pending = []
        for batch in plan_batches(lengths, self.batch_tokens, self.buckets):
            ids, mask = pad_rows(values, offsets, batch.rows, batch.size, batch.length, self.pad_id)
            if (batch.size, batch.length) not in self._shapes_seen:
                self._shapes_seen.add((batch.size, batch.length))
                logger.debug("compiling for shape [%d, %d]", batch.size, batch.length)
            pending.append((batch, self.call(ids, mask)))
            shares[batch.rows] = batch.padded_tokens / len(batch.rows)
        for batch, result in pending:
            result = np.asarray(result)
            for slot, row in enumerate(batch.rows):
                outputs[row] = result[slot]
        return outputs, shares


def list_rows(column, width: int | None = None) -> list[np.ndarray]:
    """A list<int> column (or, with `width`, a list<fixed_size_list<int>[width]>) as one numpy array per row, without
    going through Python lists; a null row is empty."""
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    bounds = array.offsets.to_numpy()  # absolute positions into array.values, slicing included
    values = array.values
    if width is not None:
        values = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    else:
        values = values.to_numpy(zero_copy_only=False)
    return [values[bounds[row] : bounds[row + 1]] for row in range(len(array))]

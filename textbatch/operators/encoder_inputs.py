"""What the encoder steps (embed, classify, label) share about their inputs: how long a row may be, the ladder of
padded lengths checked against it, and token id rows from Arrow list columns. Their model calls are
encoder_calls.py's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textbatch.operators.batching import bucket_lengths

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

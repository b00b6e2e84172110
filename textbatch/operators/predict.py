"""Predict step (the model actor): input_ids -> embedding, one compiled program per padded shape.

The encoder is whatever `FlaxAutoModel` loads for the checkpoint, among the families encoders.py accepts (XLM-R,
FlauBERT); its usable length and pad id come from its config.

Per block: the rows go through `encoder_calls.EncoderCalls` (an XLM-R's short rows packed side by side into model
rows, the others in token-budget batches of a few padded shapes, every program compiled ahead of its first call and
timed). Each batch runs the encoder and the pooling in one compiled function, so token states never leave the device;
results are put back in the block's row order. Padding and the other rows of a packed model row are masked out of
attention and pooling, so a row's embedding does not depend on its batch-mates (up to float rounding, within 1e-5 in
float32).

The token ids go from the Arrow column to the padded batch without Python lists (its flat values and offsets), and
programs are kept in JAX's persistent compilation cache (`compilation_cache.py`), so a rerun does not compile again.

Rows with `error` set (or with no tokens) pass through with a null embedding. The `input_ids` column is dropped;
added for the run report: `_padded_tokens` (the row's share of the padded area it was computed in) and the timing
columns (timing.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa

from textbatch.operators.columns import require_columns, set_columns
from textbatch.operators.compilation_cache import enable_compilation_cache
from textbatch.operators.encoder_calls import (
    PACK_LENGTH,
    SHAPE_COST,
    EncoderCalls,
    attention_within_segments,
    flat_rows,
)
from textbatch.operators.encoder_inputs import resolve_buckets, usable_length
from textbatch.operators.encoders import encoder_config
from textbatch.operators.pooling import POOLINGS, l2_normalize, pool, pool_segments
from textbatch.operators.programs import ShapeCost
from textbatch.operators.timing import ActorClock

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")
PADDED_TOKENS = "_padded_tokens"


def fixed_size_vectors(vectors: np.ndarray, valid: np.ndarray) -> pa.FixedSizeListArray:
    """[rows, dim] float32 -> fixed_size_list<float32>[dim], null where `valid` is False (no copy of the values)."""
    dim = vectors.shape[1]
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~valid))


def flat_lists(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list<int> column as NumPy views (flat values, offsets [rows + 1]) and the row lengths: row i is
    values[offsets[i]:offsets[i+1]]. A null row has length 0 (Arrow lets a null slot span values: they are ignored)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    offsets = array.offsets.to_numpy()  # absolute positions into array.values, slicing included
    lengths = np.diff(offsets)
    if array.null_count:
        lengths[array.is_null().to_numpy(zero_copy_only=False)] = 0
    return array.values.to_numpy(zero_copy_only=False), offsets, lengths


class PredictEmbeddings:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the checkpoint once per actor.

    `shape_cost` (padded tokens, "measured", or None: pad as little as the ladder allows, whatever the shapes; see
    programs.ShapeCost) and `buckets` steer the batching (`batching.plan_batches`); `pack_length` is the model row
    length short rows are packed into (XLM-R; 0 or None: every row padded on its own); `compilation_cache` is a folder
    or URL, "off", or None for the default (see `compilation_cache.py`).
    """

    needs = ("input_ids", "error")

    def __init__(
        self,
        model_path: str,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        dtype: str = "float32",
        batch_tokens: int | None = None,
        max_length: int | None = None,
        buckets: tuple[int, ...] | None = None,
        shape_cost: float | str | None = SHAPE_COST,
        pack_length: int | None = PACK_LENGTH,
        compilation_cache: str | None = None,
        weights: dict[str, Any] | None = None,
    ):
        started = time.perf_counter()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if batch_tokens is not None and batch_tokens < 1:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        ShapeCost(shape_cost)  # checks the setting before the checkpoint loads
        if pack_length is not None and pack_length < 0:
            raise ValueError(f"pack_length must be 0 (no packing) or more, got {pack_length}")
        self.compilation_cache = enable_compilation_cache(compilation_cache)  # before anything compiles

        import jax

        from textbatch.models import FlaxAutoModel
        from textbatch.models.sharding import load_options

        config = encoder_config(model_path)  # refuses a model type it cannot embed with before reading weights
        model = FlaxAutoModel.from_pretrained(model_path, config=config, **load_options(dtype, **(weights or {})))
        self.pad_id = int(model.config.pad_token_id)  # FlauBERT's pad_index, XLM-R's <pad>: masked out either way
        limit = usable_length(model.config)
        self.max_length = int(max_length or limit)
        self.buckets = resolve_buckets(self.max_length, buckets, limit, model_path)
        self.hidden_size = int(model.config.hidden_size)

        def embed(params, inputs):
            """Padded rows ({ids, mask}) -> [batch, hidden]; packed rows ({ids, segments, positions}) -> [batch,
            max_segments, hidden]. One jitted function: the two kinds trace apart by their inputs' structure."""
            if "segments" in inputs:
                sees = attention_within_segments(inputs["segments"])
                hidden = model(
                    inputs["ids"], attention_mask=sees, position_ids=inputs["positions"], params=params
                ).last_hidden_state
                vectors = pool_segments(hidden, inputs["segments"], self.model_calls.max_segments, pooling)
            else:
                # Every family takes the mask as attention_mask (FlauBERT then needs no `lengths`); no `langs`, as
                # transformers' pipelines pass none.
                hidden = model(inputs["ids"], attention_mask=inputs["mask"], params=params).last_hidden_state
                vectors = pool(hidden, inputs["mask"], pooling)  # [batch, hidden]
            return l2_normalize(vectors) if normalize else vectors

        self.model_calls = EncoderCalls.for_model(
            embed, model, describe="the encoder", max_length=self.max_length, batch_tokens=batch_tokens,
            buckets=self.buckets, pack_length=pack_length, shape_cost=shape_cost,
        )
        self.clock = ActorClock(self.programs, load_seconds=time.perf_counter() - started)
        logger.info(
            "loaded %s (%s, hidden %d) in %.1fs on %s; padded lengths %s",
            model_path,
            dtype,
            self.hidden_size,
            self.clock.load_seconds,
            jax.devices()[0].platform,
            self.buckets,
        )

    @property
    def programs(self):
        return self.model_calls.programs

    @property
    def pack_length(self) -> int:
        return self.model_calls.pack_length

    @property
    def batch_tokens(self) -> int:
        return self.model_calls.batch_tokens

    @property
    def compile_seconds(self) -> float:
        return self.model_calls.compile_seconds

    def embed_flat(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [len(rows), hidden] of the token id rows `values[offsets[r]:offsets[r+1]]` for r in `rows` (each
        1..max_length long), and each row's share of the padded area."""
        return self.model_calls(values, offsets, rows)

    def embed_ids(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [len(rows), hidden] of token id lists (each 1..max_length long), and each row's padded share."""
        values, offsets = flat_rows(rows)
        return self.embed_flat(values, offsets, np.arange(len(rows)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        mark = self.clock.start()
        require_columns(batch, self.needs, type(self).__name__)
        values, offsets, lengths = flat_lists(batch.column("input_ids"))
        errors = batch.column("error").to_pylist()
        for index, error in enumerate(errors):
            if error is None and lengths[index] == 0:
                errors[index] = "no tokens to embed"
            elif error is None and lengths[index] > self.max_length:
                errors[index] = f"{lengths[index]} tokens is more than the model's maximum of {self.max_length}"
        todo = np.array([index for index, error in enumerate(errors) if error is None], dtype=np.int64)
        vectors = np.zeros((len(errors), self.hidden_size), dtype=np.float32)
        shares = np.zeros(len(errors), dtype=np.float64)
        if len(todo):
            vectors[todo], shares[todo] = self.embed_flat(values, offsets, todo)
        valid = np.zeros(len(errors), dtype=bool)
        valid[todo] = True
        table = batch.drop_columns(["input_ids", "error"])
        added = [
            ("embedding", fixed_size_vectors(vectors, valid)),
            ("error", pa.array(errors, type=pa.string())),
            (PADDED_TOKENS, pa.array(shares)),
        ]
        return set_columns(table, added + self.clock.columns(len(errors), mark))

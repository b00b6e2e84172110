"""Predict step (the model actor): input_ids -> embedding, one compiled program per padded shape.

Per block: rows are sorted by length and cut into token-budget batches of a few padded shapes (`batching.py`); each
batch runs the encoder and the pooling in one compiled function, so token states never leave the device; results are
put back in the block's row order. Padding is masked out of attention and pooling, so a row's embedding does not
depend on its batch-mates (up to float rounding, within 1e-5 in float32).

Rows with `error` set (or with no tokens) pass through with a null embedding. The `input_ids` column is dropped, and
`_padded_tokens` (the row's share of the padded area it was computed in) is added for the run's padding report.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from textbatch.operators.batching import bucket_lengths, plan_batches
from textbatch.operators.columns import require_columns
from textbatch.operators.pooling import POOLINGS, l2_normalize, pool

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")
PADDED_TOKENS = "_padded_tokens"


def usable_length(config) -> int:
    """Longest input (specials included) the checkpoint can embed: XLM-R positions start after the pad id."""
    return int(config.max_position_embeddings) - int(config.pad_token_id) - 1


def fixed_size_vectors(vectors: np.ndarray, valid: np.ndarray) -> pa.FixedSizeListArray:
    """[rows, dim] float32 -> fixed_size_list<float32>[dim], null where `valid` is False."""
    dim = vectors.shape[1]
    values = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~valid))


class PredictEmbeddings:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the checkpoint once per actor."""

    needs = ("input_ids", "error")

    def __init__(
        self,
        model_path: str,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        dtype: str = "float32",
        batch_tokens: int = 4096,
        max_length: int | None = None,
        buckets: tuple[int, ...] | None = None,
    ):
        import jax
        import jax.numpy as jnp

        from textbatch.models import FlaxXLMRobertaModel

        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        started = time.perf_counter()
        model = FlaxXLMRobertaModel.from_pretrained(model_path, dtype=getattr(jnp, dtype))
        self.pad_id = int(model.config.pad_token_id)
        limit = usable_length(model.config)
        self.max_length = int(max_length or limit)
        if self.max_length > limit:
            raise ValueError(f"max_length {self.max_length} exceeds what {model_path} can take ({limit} tokens)")
        self.buckets = tuple(buckets) if buckets else bucket_lengths(self.max_length)
        if not self.max_length <= self.buckets[-1] <= limit:
            raise ValueError(
                f"the longest padded length {self.buckets[-1]} must be between max_length {self.max_length} and "
                f"what {model_path} can take ({limit})"
            )
        self.batch_tokens = int(batch_tokens)
        self.hidden_size = int(model.config.hidden_size)
        self.params = jax.device_put(model.params)
        self._shapes_seen: set[tuple[int, int]] = set()

        def embed(params, input_ids, mask):
            hidden = model(input_ids, attention_mask=mask, params=params).last_hidden_state  # [batch, len, hidden]
            vectors = pool(hidden, mask, pooling)  # [batch, hidden]
            return l2_normalize(vectors) if normalize else vectors

        self._embed = jax.jit(embed)
        logger.info(
            "loaded %s (%s, hidden %d) in %.1fs on %s; padded lengths %s",
            model_path,
            dtype,
            self.hidden_size,
            time.perf_counter() - started,
            jax.devices()[0].platform,
            self.buckets,
        )

    def embed_ids(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [len(rows), hidden] of token id lists (each 1..max_length long), and each row's padded share."""
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.zeros((len(rows), self.hidden_size), dtype=np.float32)
        shares = np.zeros(len(rows), dtype=np.float64)
        pending = []
        for batch in plan_batches(lengths, self.batch_tokens, self.buckets):
            ids = np.full((batch.size, batch.length), self.pad_id, dtype=np.int32)
            mask = np.zeros((batch.size, batch.length), dtype=np.int32)
            for slot, row in enumerate(batch.rows):
                ids[slot, : lengths[row]] = rows[row]
                mask[slot, : lengths[row]] = 1
            # Filler rows repeat the first real row: realistic input, no all-padding rows; their output is dropped.
            ids[len(batch.rows) :] = ids[0]
            mask[len(batch.rows) :] = mask[0]
            if (batch.size, batch.length) not in self._shapes_seen:
                self._shapes_seen.add((batch.size, batch.length))
                logger.debug("compiling for shape [%d, %d]", batch.size, batch.length)
            # JAX dispatches asynchronously: the next batch is padded on the host while this one runs.
            pending.append((batch, self._embed(self.params, ids, mask)))
            shares[batch.rows] = batch.padded_tokens / len(batch.rows)
        for batch, result in pending:
            vectors[batch.rows] = np.asarray(result)[: len(batch.rows)]
        return vectors, shares

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, self.needs, type(self).__name__)
        rows = batch.column("input_ids").to_pylist()
        errors = batch.column("error").to_pylist()
        for index, row in enumerate(rows):
            if errors[index] is None and not row:
                errors[index] = "no tokens to embed"
            elif errors[index] is None and len(row) > self.max_length:
                errors[index] = f"{len(row)} tokens is more than the model's maximum of {self.max_length}"
        todo = [index for index, error in enumerate(errors) if error is None]
        vectors = np.zeros((len(rows), self.hidden_size), dtype=np.float32)
        shares = np.zeros(len(rows), dtype=np.float64)
        if todo:
            vectors[todo], shares[todo] = self.embed_ids([rows[index] for index in todo])
        valid = np.zeros(len(rows), dtype=bool)
        valid[todo] = True
        table = batch.drop_columns(["input_ids", "error"])
        for name in ("embedding", PADDED_TOKENS):
            if name in table.column_names:
                table = table.drop_columns([name])
        return (
            table.append_column("embedding", fixed_size_vectors(vectors, valid))
            .append_column("error", pa.array(errors, type=pa.string()))
            .append_column(PADDED_TOKENS, pa.array(shares))
        )

"""Predict step (the model actor): input_ids -> embedding, one compiled program per padded shape.

The encoder is whatever `FlaxAutoModel` loads for the checkpoint, among the families encoders.py accepts (XLM-R,
FlauBERT); its usable length and pad id come from its config.

Per block: an XLM-R's rows of up to `pack_length` tokens are packed side by side into model rows of that length
(`packing.py`: one shape, ~98% real tokens); longer rows (and every FlauBERT row) are sorted by length and cut into
token-budget batches of a few padded shapes (`batching.py`, which weighs padding against compiling a new shape). Each
batch runs the encoder and the pooling in one compiled function, so token states never leave the device; results
are put back in the block's row order. Padding and the other rows of a packed model row are masked out of attention
and pooling, so a row's embedding does not depend on its batch-mates (up to float rounding, within 1e-5 in float32).

The token ids go from the Arrow column to the padded batch without Python lists (its flat values and offsets), and
programs are compiled ahead of their first call, timed, and kept in JAX's persistent compilation cache
(`compilation_cache.py`), so a rerun does not compile again.

Rows with `error` set (or with no tokens) pass through with a null embedding. The `input_ids` column is dropped;
added for the run report: `_padded_tokens` (the row's share of the padded area it was computed in) and the timing
columns `_load_ms`, `_model_ms`, `_compile_ms` and `_compiled_shapes` (a call's milliseconds, or shapes compiled, on
its first row, 0 on the others, so that their sum over the output is the actor's total).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa

from textbatch.operators.batching import bucket_lengths, pad_rows, plan_batches
from textbatch.operators.columns import require_columns
from textbatch.operators.compilation_cache import enable_compilation_cache
from textbatch.operators.encoders import encoder_config
from textbatch.operators.packing import PackedBatch, pack_rows, packed_inputs, plan_packed_batches
from textbatch.operators.padded_calls import usable_length
from textbatch.operators.pooling import POOLINGS, l2_normalize, pool, pool_segments
from textbatch.operators.programs import MEASURED, CompiledShapes, PlannedCall, ShapeCost

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")
PADDED_TOKENS = "_padded_tokens"
LOAD_MS, MODEL_MS, COMPILE_MS, SHAPES = "_load_ms", "_model_ms", "_compile_ms", "_compiled_shapes"
TIMING_COLUMNS = (LOAD_MS, MODEL_MS, COMPILE_MS, SHAPES)
SHAPE_COST = MEASURED  # what one more compiled shape is worth in padded tokens (programs.ShapeCost)
# Padded tokens per model call when none is given. On a CPU, xlm-roberta-base computes ~20% more tokens per second in
# calls of 1,024 tokens than of 4,096 (the activations stay in cache), and smaller batches pad less; accelerators
# want bigger calls.
CPU_BATCH_TOKENS, ACCELERATOR_BATCH_TOKENS = 1024, 4096
# Rows up to this many tokens are packed (XLM-R). Longer model rows would spend more on attention across rows that
# is masked out; shorter ones would leave more rows to the padded shapes. 128 tokens hold ~90% of the benchmark's rows.
PACK_LENGTH = 128


def packing_first_position(config: Any) -> int | None:
    """The position id of a packed row's first token, or None for a family whose encoder takes no per-query attention
    mask (FlauBERT: its rows are padded). XLM-R's positions start after its pad id."""
    if getattr(config, "model_type", None) == "xlm-roberta":
        return int(config.pad_token_id) + 1
    return None


def default_batch_tokens(platform: str) -> int:
    return CPU_BATCH_TOKENS if platform == "cpu" else ACCELERATOR_BATCH_TOKENS


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


def timing_columns(rows: int, milliseconds: dict[str, float]) -> list[tuple[str, pa.Array]]:
    """One int64 column per timing (and the count of shapes compiled): the call's total on the first row, 0 on the
    others."""
    columns = []
    for name in TIMING_COLUMNS:
        values = np.zeros(rows, dtype=np.int64)
        if rows:
            values[0] = round(milliseconds.get(name, 0.0))
        columns.append((name, pa.array(values)))
    return columns


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
        if pack_length is not None and pack_length < 0:
            raise ValueError(f"pack_length must be 0 (no packing) or more, got {pack_length}")
        self.shape_cost = ShapeCost(shape_cost)
        self.compilation_cache = enable_compilation_cache(compilation_cache)  # before anything compiles

        import jax

        from textbatch.models import FlaxAutoModel
        from textbatch.models.sharding import load_options

        config = encoder_config(model_path)  # refuses a model type it cannot embed with before reading weights
        model = FlaxAutoModel.from_pretrained(model_path, config=config, **load_options(dtype, **(weights or {})))
        self.pad_id = int(model.config.pad_token_id)  # FlauBERT's pad_index, XLM-R's <pad>: masked out either way
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
        self.batch_tokens = int(batch_tokens or default_batch_tokens(jax.devices()[0].platform))
        self.hidden_size = int(model.config.hidden_size)
        self.params = jax.device_put(model.params)
        self.first_position = packing_first_position(model.config)
        self.pack_length = min(int(pack_length or 0), self.max_length) if self.first_position is not None else 0
        # Rows per model row, at most: rows of a few tokens (empty texts) leave it part empty; the pooling stays small.
        self.max_segments = max(1, self.pack_length // 4)

        def embed(params, inputs):
            """Padded rows ({ids, mask}) -> [batch, hidden]; packed rows ({ids, segments, positions}) -> [batch,
            max_segments, hidden]. One jitted function: the two kinds trace apart by their inputs' structure."""
            if "segments" in inputs:
                segments = inputs["segments"]
                sees = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)  # [b, query, key]
                hidden = model(
                    inputs["ids"], attention_mask=sees, position_ids=inputs["positions"], params=params
                ).last_hidden_state
                vectors = pool_segments(hidden, segments, self.max_segments, pooling)
            else:
                # Every family takes the mask as attention_mask (FlauBERT then needs no `lengths`); no `langs`, as
                # transformers' pipelines pass none.
                hidden = model(inputs["ids"], attention_mask=inputs["mask"], params=params).last_hidden_state
                vectors = pool(hidden, inputs["mask"], pooling)  # [batch, hidden]
            return l2_normalize(vectors) if normalize else vectors

        self.programs = CompiledShapes(embed, "the encoder")
        self._load_seconds = time.perf_counter() - started
        logger.info(
            "loaded %s (%s, hidden %d) in %.1fs on %s; padded lengths %s",
            model_path,
            dtype,
            self.hidden_size,
            self._load_seconds,
            jax.devices()[0].platform,
            self.buckets,
        )

    @property
    def compile_seconds(self) -> float:
        return self.programs.seconds

    def _run(self, key: tuple, inputs: dict[str, np.ndarray]):
        """The compiled program for `inputs` (compiled the first time its `key` is seen) called on them."""
        import jax

        specs = {name: jax.ShapeDtypeStruct(array.shape, array.dtype) for name, array in inputs.items()}
        return self.programs.get(key, self.params, specs)(self.params, inputs)

    def embed_flat(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [len(rows), hidden] of the token id rows `values[offsets[r]:offsets[r+1]]` for r in `rows` (each
        1..max_length long), and each row's share of the padded area."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = offsets[rows + 1] - offsets[rows]
        vectors = np.zeros((len(rows), self.hidden_size), dtype=np.float32)
        shares = np.zeros(len(rows), dtype=np.float64)
        call = PlannedCall(self.programs, self.shape_cost)
        packed = np.flatnonzero(lengths <= self.pack_length)
        padded = np.flatnonzero(lengths > self.pack_length)

        def plan(lengths: np.ndarray) -> list:
            cost, known = self.shape_cost.current(), self.programs.programs
            return plan_batches(lengths, self.batch_tokens, self.buckets, shape_cost=cost, known_shapes=known)

        def run(batch):
            ids, mask = pad_rows(values, offsets, rows[padded[batch.rows]], batch.size, batch.length, self.pad_id)
            return self._run(batch.shape, {"ids": ids, "mask": mask})

        # Dispatch is asynchronous: the host pads (or compiles) the next batch while this one runs.
        pending = [(padded[batch.rows], batch, result) for batch, result in call.dispatch(lengths[padded], plan, run)]
        starts, stops = offsets[rows[packed]], offsets[rows[packed] + 1]
        bins = pack_rows(lengths[packed], self.pack_length, self.max_segments) if len(packed) else []
        batches = plan_packed_batches(bins, self.pack_length, self.batch_tokens) if bins else []
        for batch in batches:
            ids, segments, positions = packed_inputs(values, starts, stops, batch, self.pad_id, self.first_position)
            result = self._run(("packed", *batch.shape), {"ids": ids, "segments": segments, "positions": positions})
            call.padded_tokens += batch.padded_tokens
            pending.append((packed[batch.rows], batch, result))
        for targets, batch, result in pending:
            result = np.asarray(result)
            if isinstance(batch, PackedBatch):  # [model rows, max_segments, hidden] -> the packed rows in order
                result = np.concatenate([result[slot, : len(members)] for slot, members in enumerate(batch.members)])
            vectors[targets] = result[: len(targets)]
            shares[targets] = batch.padded_tokens / len(targets)
        call.done()
        return vectors, shares

    def embed_ids(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [len(rows), hidden] of token id lists (each 1..max_length long), and each row's padded share."""
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.fromiter((token for row in rows for token in row), dtype=np.int32, count=int(offsets[-1]))
        return self.embed_flat(values, offsets, np.arange(len(rows)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        compiled_before, shapes_before = self.compile_seconds, len(self.programs.programs)
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
        milliseconds = {
            LOAD_MS: 1000 * self._load_seconds,
            MODEL_MS: 1000 * (time.perf_counter() - started),
            COMPILE_MS: 1000 * (self.compile_seconds - compiled_before),
            SHAPES: len(self.programs.programs) - shapes_before,
        }
        if len(errors):
            self._load_seconds = 0.0  # counted once per actor, on its first non-empty block
        for name, column in added + timing_columns(len(errors), milliseconds):
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, column)
        return table

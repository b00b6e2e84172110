"""Token id rows through a compiled encoder function, in as few padded tokens and compiled shapes as the rows allow.

What every encoder step (embed, classify, label) shares. An XLM-R's rows of up to `pack_length` tokens are packed
side by side into model rows of that length (`packing.py`: one shape, ~98% real tokens); longer rows, and every row
of a family whose encoder takes no per-query attention mask (FlauBERT), are sorted by length and cut into token-budget
batches of a few padded shapes (`batching.py`), each new shape weighed against the padding it saves
(`programs.ShapeCost`). Programs are compiled ahead of their first call and timed. Every batch is dispatched before
any result is fetched, so the host pads (or compiles) the next batch while the device runs this one.

The compiled function is `function(params, inputs)`. A padded batch's inputs are {"ids", "mask"} [size, length];
a packed batch's {"ids", "segments", "positions"} [size, length], where segments number a model row's rows from 1
(0: padding) and positions count from each row's own start. It returns per-row outputs ([size, ...] padded,
[size, max_segments, ...] packed) or, with `per_token`, per-token outputs ([size, length, ...] either way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from textbatch.operators.batching import pad_rows, plan_batches
from textbatch.operators.packing import PackedBatch, pack_rows, packed_inputs, plan_packed_batches
from textbatch.operators.programs import MEASURED, CompiledShapes, PlannedCall, ShapeCost

# Padded tokens per model call when none is given. On a CPU, xlm-roberta-base computes ~20% more tokens per second in
# calls of 1,024 tokens than of 4,096 (the activations stay in cache), and smaller batches pad less; accelerators
# want bigger calls.
CPU_BATCH_TOKENS, ACCELERATOR_BATCH_TOKENS = 1024, 4096
# Rows up to this many tokens are packed (XLM-R). Longer model rows would spend more on attention across rows that
# is masked out; shorter ones would leave more rows to the padded shapes. 128 tokens hold ~90% of the benchmark's rows.
PACK_LENGTH = 128
SHAPE_COST = MEASURED  # what one more compiled shape is worth in padded tokens (programs.ShapeCost)


def default_batch_tokens(platform: str) -> int:
    return CPU_BATCH_TOKENS if platform == "cpu" else ACCELERATOR_BATCH_TOKENS


def packing_first_position(config: Any) -> int | None:
    """The position id of a packed row's first token, or None for a family whose encoder takes no per-query attention
    mask (FlauBERT: its rows are padded). XLM-R's positions start after its pad id."""
    if getattr(config, "model_type", None) == "xlm-roberta":
        return int(config.pad_token_id) + 1
    return None


def attention_within_segments(segments):
    """[batch, length] segment ids -> the [batch, query, key] mask letting each token see its own row's tokens only."""
    return (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)


def flat_rows(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token id rows as (flat int32 values, offsets [rows + 1]): row i is values[offsets[i]:offsets[i+1]]."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = np.concatenate([np.asarray(row, dtype=np.int32) for row in rows]) if len(rows) else np.zeros(0, np.int32)
    return values, offsets


class EncoderCalls:
    """`calls(values, offsets, rows)` -> (outputs, each row's share of the padded area it was computed in).

    `pack_length` 0 or None, or a config without packing (`packing_first_position`), pads every row. `shape_cost`
    and `buckets` steer the padded batches (`batching.plan_batches`).
    """

    def __init__(
        self,
        function: Callable,
        params: Any,
        *,
        describe: str,
        pad_id: int,
        first_position: int | None,
        batch_tokens: int,
        buckets: Sequence[int],
        pack_length: int | None,
        shape_cost: float | str | None = SHAPE_COST,
        per_token: bool = False,
    ):
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        if pack_length is not None and pack_length < 0:
            raise ValueError(f"pack_length must be 0 (no packing) or more, got {pack_length}")
        self.programs = CompiledShapes(function, describe)
        self.params = params
        self.pad_id, self.first_position = int(pad_id), first_position
        self.batch_tokens, self.buckets = int(batch_tokens), tuple(buckets)
        self.pack_length = min(int(pack_length or 0), self.buckets[-1]) if first_position is not None else 0
        # Rows per model row, at most: rows of a few tokens (empty texts) leave it part empty; the outputs stay small.
        self.max_segments = max(1, self.pack_length // 4)
        self.shape_cost = ShapeCost(shape_cost)
        self.per_token = per_token

    @classmethod
    def for_model(
        cls,
        function: Callable,
        model: Any,
        *,
        describe: str,
        max_length: int,
        batch_tokens: int | None,
        buckets: Sequence[int],
        pack_length: int | None,
        shape_cost: float | str | None = SHAPE_COST,
        per_token: bool = False,
    ) -> EncoderCalls:
        """Calls of `function` on a loaded model's parameters (placed on the device once), with its pad id and
        packing (`packing_first_position`; model rows no longer than `max_length`); `batch_tokens` None: the
        platform's default."""
        import jax

        return cls(
            function,
            jax.device_put(model.params),
            describe=describe,
            pad_id=model.config.pad_token_id,
            first_position=packing_first_position(model.config),
            batch_tokens=default_batch_tokens(jax.devices()[0].platform) if batch_tokens is None else batch_tokens,
            buckets=buckets,
            pack_length=min(int(pack_length or 0), max_length),
            shape_cost=shape_cost,
            per_token=per_token,
        )

    @property
    def compile_seconds(self) -> float:
        return self.programs.seconds

    def _run(self, key: tuple, inputs: dict[str, np.ndarray]):
        """The compiled program for `inputs` (compiled the first time its `key` is seen) called on them."""
        import jax

        specs = {name: jax.ShapeDtypeStruct(array.shape, array.dtype) for name, array in inputs.items()}
        return self.programs.get(key, self.params, specs)(self.params, inputs)

    def __call__(
        self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
        """Outputs of the token id rows `values[offsets[r]:offsets[r+1]]` for r in `rows` (each 1..the longest
        bucket long): an array [len(rows), ...], or with `per_token` one array [row length, ...] per row."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = offsets[rows + 1] - offsets[rows]
        call = PlannedCall(self.programs, self.shape_cost)
        packed = np.flatnonzero(lengths <= self.pack_length)
        padded = np.flatnonzero(lengths > self.pack_length)

        def plan(lengths: np.ndarray) -> list:
            cost, known = self.shape_cost.current(), self.programs.programs
            return plan_batches(lengths, self.batch_tokens, self.buckets, shape_cost=cost, known_shapes=known)

        def run(batch):
            ids, mask = pad_rows(values, offsets, rows[padded[batch.rows]], batch.size, batch.length, self.pad_id)
            return self._run(batch.shape, {"ids": ids, "mask": mask})

        pending = [(padded[batch.rows], batch, result) for batch, result in call.dispatch(lengths[padded], plan, run)]
        starts, stops = offsets[rows[packed]], offsets[rows[packed] + 1]
        bins = pack_rows(lengths[packed], self.pack_length, self.max_segments) if len(packed) else []
        for batch in plan_packed_batches(bins, self.pack_length, self.batch_tokens) if bins else []:
            ids, segments, positions = packed_inputs(values, starts, stops, batch, self.pad_id, self.first_position)
            result = self._run(("packed", *batch.shape), {"ids": ids, "segments": segments, "positions": positions})
            call.padded_tokens += batch.padded_tokens
            pending.append((packed[batch.rows], batch, result))
        outputs: list[np.ndarray] = [None] * len(rows)  # type: ignore[list-item]
        shares = np.zeros(len(rows), dtype=np.float64)
        for targets, batch, result in pending:
            for target, output in zip(targets, self._split(np.asarray(result), batch, lengths[targets])):
                outputs[target] = output
            shares[targets] = batch.padded_tokens / len(targets)
        call.done()
        if self.per_token:
            return outputs, shares
        return (np.stack(outputs) if outputs else np.zeros((0,), np.float32)), shares

    def _split(self, result: np.ndarray, batch, lengths: np.ndarray) -> list[np.ndarray]:
        """A batch's result cut into its rows' outputs, in `batch.rows` order."""
        if not isinstance(batch, PackedBatch):
            if self.per_token:
                return [result[slot, :length] for slot, length in enumerate(lengths)]
            return list(result[: len(lengths)])
        outputs, index = [], 0
        for slot, members in enumerate(batch.members):
            at = 0
            for segment in range(len(members)):
                length = int(lengths[index])
                outputs.append(result[slot, at : at + length] if self.per_token else result[slot, segment])
                at, index = at + length, index + 1
        return outputs

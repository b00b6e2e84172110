"""Generate step (the model actor): input_ids -> generated_text, one compiled program per padded prompt shape.

Per block: rows are sorted by prompt length and cut into batches of a few padded shapes (`batching.py`; a token
budget, a row limit, or both; a new shape must save more padding than its compilation costs); each batch runs the
seq2seq model's `generate` program (encoder, cache set-up and the whole decoding loop compiled together, ahead of its
first call, timed, and kept in JAX's persistent compilation cache), and the ids are decoded with the checkpoint's own
tokenizer. Batches are dispatched before any result is fetched, so the host decodes while the next batch runs. Prompts are
right-padded and masked: the encoder, the cross-attention and T5's relative positions ignore the padding, so a
prompt's output does not depend on its padded length or its batch-mates (tests compare with each prompt generated
alone, unpadded).

Columns out: `generated_text` (string; a list of `num_return_sequences` strings, best first, when that is > 1),
`n_generated_tokens` (int32, or a list alongside the texts: tokens after the decoder start token, up to and including
eos), `n_input_tokens` (the tokenizer's `n_tokens`: prompt tokens with `</s>`), `error`, and for the run report
`_padded_tokens` (the row's share of the padded prompt area) and the timing columns of predict.py. `input_ids` is
dropped.
Rows with `error` set (or with no tokens) pass through with a null text and 0 (or null) generated tokens; a row
whose output cannot be decoded gets an error and keeps the other rows' results.

Sampling (`do_sample`): the random key of a batch is the seed folded with a hash of the batch's padded prompts, so
a run is reproducible and batches do not share one random stream; a row's samples still depend on its batch-mates.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from textbatch.operators.batching import bucket_lengths, pad_rows, plan_batches
from textbatch.operators.columns import require_columns, set_columns
from textbatch.operators.compilation_cache import enable_compilation_cache
from textbatch.operators.predict import DTYPES, PADDED_TOKENS, flat_lists
from textbatch.operators.programs import MEASURED, CompiledShapes, PlannedCall, ShapeCost
from textbatch.operators.timing import ActorClock

logger = logging.getLogger(__name__)

# The generation options a job passes through (GenerationConfig's names); the special token ids come from the model.
GENERATION_OPTIONS = (
    "max_new_tokens",
    "min_new_tokens",
    "num_beams",
    "length_penalty",
    "early_stopping",
    "num_return_sequences",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
)


def generated_lengths(sequences: np.ndarray, eos_ids: tuple[int, ...]) -> np.ndarray:
    """Tokens generated per row of `sequences` [rows, length] (which start with the decoder start token): up to and
    including the first eos, else every position (what follows eos is filler)."""
    body = sequences[:, 1:]
    if not eos_ids:
        return np.full(len(sequences), body.shape[1], dtype=np.int32)
    is_eos = np.isin(body, eos_ids)
    return np.where(is_eos.any(axis=1), is_eos.argmax(axis=1) + 1, body.shape[1]).astype(np.int32)


@dataclasses.dataclass
class Generated:
    """What `generate_ids` returns for `rows` prompts and `returns` sequences per prompt."""

    sequences: list[np.ndarray]  # per prompt: [returns, length] int32, starting with the decoder start token
    lengths: np.ndarray  # [prompts, returns] generated tokens
    padded_share: np.ndarray  # [prompts] each prompt's share of the padded prompt area


class GenerateText:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the checkpoint and its tokenizer once per actor.

    `generation` holds GenerationConfig options (GENERATION_OPTIONS; unset ones come from the checkpoint's
    generation_config.json, else transformers' defaults). `batch_tokens` bounds the padded prompt tokens of a call,
    `batch_size` its prompts (beams and return sequences multiply the decoder's rows); give either or both.
    `shape_cost` and `compilation_cache` are PredictEmbeddings' options.
    """

    needs = ("input_ids", "n_tokens", "error")

    def __init__(
        self,
        model_path: str,
        *,
        generation: dict[str, Any] | None = None,
        seed: int = 0,
        dtype: str = "float32",
        batch_tokens: int | None = 2048,
        batch_size: int | None = None,
        max_length: int = 512,
        buckets: tuple[int, ...] | None = None,
        weights: dict[str, Any] | None = None,
        shape_cost: float | str | None = MEASURED,
        compilation_cache: str | None = None,
    ):
        started = time.perf_counter()
        self.shape_cost = ShapeCost(shape_cost)
        self.compilation_cache = enable_compilation_cache(compilation_cache)  # before anything compiles

        import jax

        from textbatch.models import FlaxAutoModelForSeq2SeqLM
        from textbatch.models.sharding import load_options
        from textbatch.tokenizers import AutoTokenizer

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if batch_tokens is None and batch_size is None:
            raise ValueError("give batch_tokens, batch_size or both")
        for name, value in (("batch_tokens", batch_tokens), ("batch_size", batch_size), ("max_length", max_length)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        generation = dict(generation or {})
        unknown = sorted(set(generation) - set(GENERATION_OPTIONS))
        if unknown:
            raise ValueError(f"unknown generation option(s) {unknown}; the options are {GENERATION_OPTIONS}")
        self.model = FlaxAutoModelForSeq2SeqLM.from_pretrained(model_path, **load_options(dtype, **(weights or {})))
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.config = self.model.resolve_generation_config(**generation)
        self.returns = self.config.num_return_sequences
        pad = self.config.pad_token_id
        self.pad_id = int(pad if pad is not None else self.model.config.pad_token_id)
        self.max_length = int(max_length)
        self.buckets = tuple(buckets) if buckets else bucket_lengths(self.max_length)
        if self.buckets[-1] < self.max_length:
            raise ValueError(f"the longest padded length {self.buckets[-1]} is below max_length {self.max_length}")
        self.batch_tokens = batch_tokens
        self.batch_size = batch_size
        self.seed = int(seed)
        self.params = jax.device_put(self.model.params)
        self.programs = CompiledShapes(self.model.generation_function(self.config), "generate")
        self.clock = ActorClock(self.programs, load_seconds=time.perf_counter() - started)
        logger.info(
            "loaded %s (%s) in %.1fs on %s; padded prompt lengths %s; generation %s",
            model_path,
            dtype,
            self.clock.load_seconds,
            jax.devices()[0].platform,
            self.buckets,
            self.config,
        )

    def _key(self, ids: np.ndarray):
        import jax

        key = jax.random.PRNGKey(self.seed)
        if self.config.do_sample:
            key = jax.random.fold_in(key, zlib.crc32(ids.tobytes()) & 0x7FFFFFFF)
        return key

    @property
    def compile_seconds(self) -> float:
        return self.programs.seconds

    def generate_flat(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> Generated:
        """Generate for the prompts `values[offsets[r]:offsets[r+1]]`, r in `rows` (token ids, each 1..max_length
        long, `</s>` included)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = offsets[rows + 1] - offsets[rows]
        sequences: list[np.ndarray | None] = [None] * len(rows)
        generated = np.zeros((len(rows), self.returns), dtype=np.int32)
        shares = np.zeros(len(rows), dtype=np.float64)
        eos = self.config.eos_token_ids
        call = PlannedCall(self.programs, self.shape_cost)

        def plan(lengths: np.ndarray) -> list:
            cost, known = self.shape_cost.current(), self.programs.programs
            limits = {"batch_size": self.batch_size, "shape_cost": cost, "known_shapes": known}
            return plan_batches(lengths, self.batch_tokens, self.buckets, **limits)

        def run(batch):
            ids, mask = pad_rows(values, offsets, rows[batch.rows], batch.size, batch.length, self.pad_id)
            placed = self.model.place_inputs({"input_ids": ids, "attention_mask": mask})  # rows over a mesh, if any
            arguments = (self.params, placed["input_ids"], placed["attention_mask"], self._key(ids))
            return self.programs.get(batch.shape, *arguments)(*arguments)

        for batch, (out, used) in call.dispatch(lengths, plan, run):
            out = np.asarray(out)[:, : int(used)].reshape(batch.size, self.returns, -1)  # a prompt's sequences together
            for slot, row in enumerate(batch.rows):
                sequences[row] = out[slot]
                generated[row] = generated_lengths(out[slot], eos)
            shares[batch.rows] = batch.padded_tokens / len(batch.rows)
        call.done()
        return Generated(sequences, generated, shares)

    def generate_ids(self, rows: list[list[int]]) -> Generated:
        """Generate for prompts given as token id lists (each 1..max_length long, `</s>` included)."""
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.fromiter((token for row in rows for token in row), dtype=np.int32, count=int(offsets[-1]))
        return self.generate_flat(values, offsets, np.arange(len(rows)))

    def _decode(self, sequences: np.ndarray) -> list[str] | Exception:
        try:
            return self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        except Exception as error:  # noqa: BLE001 - the row carries the message instead of failing the job
            return error

    def __call__(self, batch: pa.Table) -> pa.Table:
        mark = self.clock.start()
        require_columns(batch, self.needs, type(self).__name__)
        values, offsets, lengths = flat_lists(batch.column("input_ids"))
        errors = batch.column("error").to_pylist()
        for index, error in enumerate(errors):
            if error is None and lengths[index] == 0:
                errors[index] = "no tokens to generate from"
            elif error is None and lengths[index] > self.max_length:
                errors[index] = f"{lengths[index]} prompt tokens is more than max_length {self.max_length}"
        todo = [index for index, error in enumerate(errors) if error is None]
        texts: list[Any] = [None] * len(errors)
        counts: list[Any] = [None if self.returns > 1 else 0] * len(errors)
        shares = np.zeros(len(errors), dtype=np.float64)
        if todo:
            result = self.generate_flat(values, offsets, np.asarray(todo))
            shares[todo] = result.padded_share
            for position, index in enumerate(todo):
                decoded = self._decode(result.sequences[position])
                if isinstance(decoded, Exception):
                    errors[index] = f"decoding failed: {type(decoded).__name__}: {decoded}"
                    continue
                lengths = result.lengths[position].tolist()
                texts[index] = decoded if self.returns > 1 else decoded[0]
                counts[index] = lengths if self.returns > 1 else lengths[0]
        if self.returns > 1:
            text_column = pa.array(texts, type=pa.list_(pa.string()))
            count_column = pa.array(counts, type=pa.list_(pa.int32()))
        else:
            text_column = pa.array(texts, type=pa.string())
            count_column = pa.array(counts, type=pa.int32())
        table = batch.drop_columns(["input_ids", "error"])
        table = table.rename_columns(["n_input_tokens" if name == "n_tokens" else name for name in table.column_names])
        added = [
            ("generated_text", text_column),
            ("n_generated_tokens", count_column),
            ("error", pa.array(errors, type=pa.string())),
            (PADDED_TOKENS, pa.array(shares)),
        ]
        return set_columns(table, added + self.clock.columns(len(errors), mark))

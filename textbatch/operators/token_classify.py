"""Token-classification step (the model actor): input_ids + offsets + text -> entities, every token of a text tagged.

Per block: each text's tokens are cut into overlapping windows of the model's window (windows.py; a text that fits
is one window), every window of the block goes through `encoder_calls.EncoderCalls` (an XLM-R's short windows packed
side by side into model rows, the others batched by length into a few padded shapes), the model gives each token
its label scores (softmax, in float32), and entities.py turns each text's windows into entity spans with the
aggregation strategy of transformers' token-classification pipeline.

Columns in: input_ids (the whole text, framed once by its special tokens: Tokenize with `max_length=None`), offsets
(Tokenize's `offsets=True`), text (`keep_text=True`), error. A tokenizer without character offsets (FlauBERT's)
needs only input_ids and error (`TagEntities.needs`): its entities have null `start`/`end`, words are found from its
end-of-word marks (word_boundaries.py), and windows are merged by token positions. Columns out: `entities` (a list
of structs, see `entity_type`; null where `error` is set; empty when a text has no tokens or nothing but "O"),
`error`, and for the run report the internal `_padded_tokens`, `_windows` and `_entities` counts and the timing
columns (timing.py). input_ids, offsets and text are dropped.
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
from textbatch.operators.encoder_inputs import DTYPES, list_rows, resolve_buckets, usable_length
from textbatch.operators.entities import EntityAggregator, Window
from textbatch.operators.predict import PADDED_TOKENS
from textbatch.operators.timing import ActorClock
from textbatch.operators.tokenize import offsets_unavailable
from textbatch.operators.windows import special_frame, window_bounds
from textbatch.operators.word_boundaries import check_word_aggregation, continues_by_end_marks, end_of_word_suffix

logger = logging.getLogger(__name__)

WINDOWS = "_windows"
ENTITIES = "_entities"
DEFAULT_STRIDE = 128


def entity_type(aggregation: str) -> pa.DataType:
    """The `entities` column's type: with `none`, one struct per token (`entity`, `index`); else per group."""
    if aggregation == "none":
        fields = [("entity", pa.string()), ("score", pa.float32()), ("index", pa.int32())]
    else:
        fields = [("entity_group", pa.string()), ("score", pa.float32())]
    fields += [("word", pa.string()), ("start", pa.int32()), ("end", pa.int32())]
    return pa.list_(pa.struct(fields))


def uses_offsets(tokenizer) -> bool:
    """Whether the NER step reads character offsets (and the text) for this tokenizer: whenever it can give them."""
    return offsets_unavailable(tokenizer) is None


class TagEntities:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the checkpoint and its tokenizer once per actor.

    `max_length` is the window (special tokens included; default: all the checkpoint takes), `stride` the tokens two
    consecutive windows share; `batch_tokens` (default: 1,024 on a CPU, 4,096 on an accelerator), `shape_cost` and
    `pack_length` steer the model calls (encoder_calls.EncoderCalls); `compilation_cache` is JAX's persistent cache
    (a folder or URL, "off", or None for the default; see compilation_cache.py).
    """

    def __init__(
        self,
        model_path: str,
        *,
        aggregation: str = "simple",
        labels_only: tuple[str, ...] | None = None,
        stride: int = DEFAULT_STRIDE,
        dtype: str = "float32",
        batch_tokens: int | None = None,
        max_length: int | None = None,
        buckets: tuple[int, ...] | None = None,
        shape_cost: float | str | None = SHAPE_COST,
        pack_length: int | None = PACK_LENGTH,
        compilation_cache: str | None = None,
        weights: dict[str, Any] | None = None,
    ):
        import jax
        import jax.numpy as jnp

        from textbatch.models import FlaxAutoModelForTokenClassification
        from textbatch.models.sharding import load_options
        from textbatch.tokenizers import AutoTokenizer

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        enable_compilation_cache(compilation_cache)  # before anything compiles (a folder or URL, "off", None: default)
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        check_word_aggregation(self.tokenizer, aggregation, model_path)
        self.with_offsets = uses_offsets(self.tokenizer)
        self.needs = ("input_ids", "offsets", "text", "error") if self.with_offsets else ("input_ids", "error")
        self.word_end = end_of_word_suffix(self.tokenizer)
        self.specials = frozenset(self.tokenizer.all_special_tokens)
        model = FlaxAutoModelForTokenClassification.from_pretrained(model_path, **load_options(dtype, **(weights or {})))
        limit = usable_length(model.config)
        self.max_length = int(max_length or limit)
        self.buckets = resolve_buckets(self.max_length, buckets, limit, model_path)
        self.before, self.after = special_frame(self.tokenizer)
        self.window = self.max_length - self.before - self.after
        window_bounds(0, self.window, stride)  # checks the stride against the window
        self.stride = int(stride)
        self.unk_id = self.tokenizer.unk_token_id
        self.aggregator = EntityAggregator(
            model.config.id2label, self.tokenizer.convert_tokens_to_string, aggregation, labels_only
        )
        self.type = entity_type(aggregation)

        def scores(params, inputs):
            """[batch, len, labels] label scores of each token."""
            if "segments" in inputs:  # packed windows: each sees its own tokens, its positions from its own start
                sees = attention_within_segments(inputs["segments"])
                outputs = model(inputs["ids"], attention_mask=sees, position_ids=inputs["positions"], params=params)
            else:
                outputs = model(inputs["ids"], attention_mask=inputs["mask"], params=params)
            return jax.nn.softmax(outputs.logits.astype(jnp.float32), axis=-1)

        self.model_calls = EncoderCalls.for_model(
            scores, model, describe="the token classifier", max_length=self.max_length, batch_tokens=batch_tokens,
            buckets=self.buckets, pack_length=pack_length, shape_cost=shape_cost, per_token=True,
        )
        self.clock = ActorClock(self.model_calls.programs, load_seconds=time.perf_counter() - started)
        logger.info(
            "loaded %s (%s, labels %s) in %.1fs on %s; window %d tokens, stride %d; padded lengths %s",
            model_path,
            dtype,
            self.aggregator.labels,
            self.clock.load_seconds,
            jax.devices()[0].platform,
            self.max_length,
            self.stride,
            self.buckets,
        )

    def windows_of(self, ids: np.ndarray) -> list[tuple[int, int]]:
        """The [start, stop) ranges of text tokens (positions after the leading special tokens) of each window."""
        return window_bounds(len(ids) - self.before - self.after, self.window, self.stride)

    def tag(
        self, texts: list[str | None], rows: list[np.ndarray], spans: list[np.ndarray | None]
    ) -> tuple[list[list[dict]], np.ndarray, np.ndarray]:
        """Entities of each text (its framed ids, and its text and offsets or None without offsets), each text's
        padded share and window count."""
        plan = []  # (text number, start, stop) per model row
        model_rows = []
        for number, ids in enumerate(rows):
            head, tail = ids[: self.before], ids[len(ids) - self.after :]
            for start, stop in self.windows_of(ids):
                plan.append((number, start, stop))
                body = ids[self.before + start : self.before + stop]
                model_rows.append(np.concatenate([head, body, tail]))
        values, offsets = flat_rows(model_rows)
        outputs, shares = self.model_calls(values, offsets, np.arange(len(model_rows)))
        windows: list[list[Window]] = [[] for _ in rows]
        padded = np.zeros(len(rows), dtype=np.float64)
        for (number, start, stop), scores, share in zip(plan, outputs, shares):
            body = rows[number][self.before + start : self.before + stop]
            pieces = self.tokenizer.convert_ids_to_tokens([int(token) for token in body])
            unknown, offsets = body == self.unk_id, spans[number]
            windows[number].append(
                Window(
                    pieces=pieces,
                    unknown=unknown,
                    offsets=None if offsets is None else offsets[self.before + start : self.before + stop],
                    scores=scores[self.before : self.before + stop - start],
                    first_index=self.before + start,
                    continues=self.continues(pieces, unknown) if offsets is None else None,
                )
            )
            padded[number] += share
        entities = [self.aggregator(text, found) for text, found in zip(texts, windows)]
        counts = np.fromiter((len(found) for found in windows), dtype=np.int64, count=len(rows))
        return entities, padded, counts

    def continues(self, pieces: list[str], unknown: np.ndarray) -> list[bool] | None:
        """Without offsets: whether each token continues a word, from the end-of-word marks (None without them)."""
        if self.word_end is None:
            return None
        return continues_by_end_marks(pieces, unknown, self.word_end, self.specials)

    def __call__(self, batch: pa.Table) -> pa.Table:
        mark = self.clock.start()
        require_columns(batch, self.needs, type(self).__name__)
        rows = list_rows(batch.column("input_ids"))
        if self.with_offsets:
            spans = list_rows(batch.column("offsets"), width=2)
            texts = batch.column("text").to_pylist()
        else:
            spans = texts = [None] * len(rows)
        errors = batch.column("error").to_pylist()
        todo = [index for index, error in enumerate(errors) if error is None]
        results: list[list[dict] | None] = [None] * len(rows)
        padded = np.zeros(len(rows), dtype=np.float64)
        windows = np.zeros(len(rows), dtype=np.int64)
        if todo:
            found, padded[todo], windows[todo] = self.tag(
                [texts[index] for index in todo], [rows[index] for index in todo], [spans[index] for index in todo]
            )
            for index, entities in zip(todo, found):
                results[index] = entities
        counts = np.fromiter((len(found or ()) for found in results), dtype=np.int64, count=len(rows))
        consumed = ("input_ids", "offsets", "text", "error")
        table = batch.drop_columns([name for name in consumed if name in batch.column_names])
        added = [
            ("entities", pa.array(results, type=self.type)),
            ("error", pa.array(errors, type=pa.string())),
            (PADDED_TOKENS, pa.array(padded)),
            (WINDOWS, pa.array(windows)),
            (ENTITIES, pa.array(counts)),
        ]
        return set_columns(table, added + self.clock.columns(len(rows), mark))

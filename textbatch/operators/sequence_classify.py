"""Sequence-classification step (the model actor): input_ids -> label, score (and scores), one compiled program per
padded shape.

Per block: rows (a text, or a text pair framed as one sequence) go through `encoder_calls.EncoderCalls` (an XLM-R's
short rows packed side by side into model rows, each classified from its own `<s>` state; the others batched by
length into a few padded shapes), the model gives each row its logits, and the scores are those of transformers'
text-classification pipeline: `function` "softmax", "sigmoid" or "none" applied to the logits (default: the
checkpoint's problem type decides, see `default_function`); `label` and `score` are the best label and its score;
with `top_k`, `scores` lists the `top_k` best `{label, score}`, best first (equal scores keep label order).

A row's scores do not depend on its padding: FlauBERT classifiers whose summary_type reads the last position or
the mean over positions summarise the real tokens only (flaubert_summary.py), as the reference does for a text alone.

Rows with `error` set pass through with null results. Columns out: `label`, `score` (float32), `scores` (with
`top_k`), `error`, and the internal `_padded_tokens` and timing columns (timing.py); input_ids is dropped.
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
from textbatch.operators.encoder_inputs import DTYPES, resolve_buckets, usable_length
from textbatch.operators.flaubert_summary import summary_over_real_tokens
from textbatch.operators.pooling import pool_segments
from textbatch.operators.predict import PADDED_TOKENS, flat_lists
from textbatch.operators.timing import ActorClock

logger = logging.getLogger(__name__)

FUNCTIONS = ("softmax", "sigmoid", "none")
SCORES_TYPE = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))


def default_function(config) -> str:
    """The reference's choice: none for regression, sigmoid for multi-label (or a single output), else softmax."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    """[rows, labels] float32 logits -> scores."""
    if function == "softmax":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    if function == "none":
        return logits
    raise ValueError(f"function must be one of {FUNCTIONS}, got {function!r}")


def best_first(scores: np.ndarray, top_k: int) -> np.ndarray:
    """Label indices of the `top_k` highest scores, best first; equal scores keep label order."""
    return np.argsort(-scores, kind="stable")[:top_k]


class ClassifySequences:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the checkpoint once per actor (XLM-R or FlauBERT,
    any `FlaxAutoModelForSequenceClassification`). `batch_tokens` (default: 1,024 on a CPU, 4,096 on an accelerator),
    `shape_cost` and `pack_length` steer the model calls (encoder_calls.EncoderCalls); `compilation_cache` is JAX's
    persistent cache (a folder or URL, "off", or None for the default; see compilation_cache.py)."""

    needs = ("input_ids", "error")

    def __init__(
        self,
        model_path: str,
        *,
        function: str | None = None,
        top_k: int | None = None,
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

        from textbatch.models import FlaxAutoModelForSequenceClassification
        from textbatch.models.sharding import load_options

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if function is not None and function not in FUNCTIONS:
            raise ValueError(f"function must be one of {FUNCTIONS}, got {function!r}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        enable_compilation_cache(compilation_cache)  # before anything compiles (a folder or URL, "off", None: default)
        started = time.perf_counter()
        model = FlaxAutoModelForSequenceClassification.from_pretrained(model_path, **load_options(dtype, **(weights or {})))
        limit = usable_length(model.config)
        self.max_length = int(max_length or limit)
        self.buckets = resolve_buckets(self.max_length, buckets, limit, model_path)
        self.labels = [model.config.id2label[index] for index in range(model.config.num_labels)]
        self.function = function or default_function(model.config)
        self.top_k = top_k

        def logits(params, inputs):
            """[batch, labels] of padded rows; [batch, max_segments, labels] of packed ones (XLM-R)."""
            if "segments" in inputs:  # each packed row sees its own tokens and is classified from its own <s>
                segments = inputs["segments"]
                sees = attention_within_segments(segments)
                outputs = model(
                    inputs["ids"], attention_mask=sees, position_ids=inputs["positions"], params=params,
                    output_hidden_states=True,
                )
                hidden = outputs.hidden_states[-1]
                firsts = pool_segments(hidden, segments, self.model_calls.max_segments, "cls").astype(hidden.dtype)
                return model.classify_states(firsts, params).astype(jnp.float32)
            with summary_over_real_tokens(model.config, inputs["mask"]):  # FlauBERT's "last" / "mean" skip padding
                outputs = model(inputs["ids"], attention_mask=inputs["mask"], params=params)
            return outputs.logits.astype(jnp.float32)

        self.model_calls = EncoderCalls.for_model(
            logits, model, describe="the classifier", max_length=self.max_length, batch_tokens=batch_tokens,
            buckets=self.buckets, pack_length=pack_length, shape_cost=shape_cost,
        )
        self.clock = ActorClock(self.model_calls.programs, load_seconds=time.perf_counter() - started)
        logger.info(
            "loaded %s (%s, labels %s, %s) in %.1fs on %s; padded lengths %s",
            model_path,
            dtype,
            self.labels,
            self.function,
            self.clock.load_seconds,
            jax.devices()[0].platform,
            self.buckets,
        )

    def scores_flat(self, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores [len(rows), labels] of the token id rows `values[offsets[r]:offsets[r+1]]` for r in `rows` (framed,
        each 1..max_length long), and each row's share of the padded area."""
        logits, shares = self.model_calls(values, offsets, rows)
        return apply_function(logits.reshape(len(rows), len(self.labels)), self.function), shares

    def scores_of(self, rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Scores [rows, labels] of token id rows (framed, each 1..max_length long), and each row's padded share."""
        values, offsets = flat_rows(rows)
        return self.scores_flat(values, offsets, np.arange(len(rows)))

    def __call__(self, batch: pa.Table) -> pa.Table:
        mark = self.clock.start()
        require_columns(batch, self.needs, type(self).__name__)
        values, offsets, lengths = flat_lists(batch.column("input_ids"))
        errors = batch.column("error").to_pylist()
        for index, length in enumerate(lengths):
            if errors[index] is None and length > self.max_length:
                errors[index] = f"{length} tokens is more than the model's maximum of {self.max_length}"
        todo = np.array([index for index, error in enumerate(errors) if error is None], dtype=np.int64)
        labels: list[str | None] = [None] * len(errors)
        best: list[float | None] = [None] * len(errors)
        ranked: list[list[dict] | None] = [None] * len(errors)
        shares = np.zeros(len(errors), dtype=np.float64)
        if len(todo):
            scores, shares[todo] = self.scores_flat(values, offsets, todo)
            for index, row_scores in zip(todo, scores):
                order = best_first(row_scores, self.top_k or 1)
                labels[index], best[index] = self.labels[order[0]], float(row_scores[order[0]])
                if self.top_k is not None:
                    ranked[index] = [{"label": self.labels[k], "score": float(row_scores[k])} for k in order]
        added = [("label", pa.array(labels, type=pa.string())), ("score", pa.array(best, type=pa.float32()))]
        if self.top_k is not None:
            added.append(("scores", pa.array(ranked, type=SCORES_TYPE)))
        added += [("error", pa.array(errors, type=pa.string())), (PADDED_TOKENS, pa.array(shares))]
        table = batch.drop_columns(["input_ids", "error"])
        return set_columns(table, added + self.clock.columns(len(errors), mark))

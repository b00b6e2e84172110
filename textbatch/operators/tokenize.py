"""Tokenize step (a CPU actor): text (and text_pair) -> input_ids, n_tokens, truncated, error (and offsets).

The tokenizer is the checkpoint folder's own (`AutoTokenizer`: XLM-R, T5, FlauBERT), with its special tokens
(`<s> ... </s>` for XLM-R, `... </s>` for T5). An optional prompt template (`"summarize: {text}"`, see template.py)
is applied to each text first.

The rule for texts that are not ordinary strings is texts.py's (the job's README states the same):
- null text: `error = "text is null"`, no tokens (`n_tokens = 0`), and later a null embedding;
- a non-string value (only possible from non-Parquet sources) or bytes that are not UTF-8: `error` says so, likewise;
- empty or whitespace-only text is *not* an error: it becomes the special tokens alone (`<s></s>` for XLM-R) and gets
  what the model returns for "" when called directly; NUL and control characters go to the tokenizer unchanged;
- a text longer than `max_chars` characters is cut to them before tokenizing (so a huge row cannot exhaust the
  actor's memory): `truncated = True`, and `_cut_at_max_chars = 1` for the run report;
- a text longer than `max_length` tokens (specials included; the template's words count) is cut at the end:
  `truncated = True`.
No row is dropped; every row keeps its id and any other column it came with. The `text` column is dropped here
(it is not needed downstream and is the bulk of the data) unless `keep_text` is set (the NER job needs it for its
spans), in which case it holds the decoded (and cut) string.

Options for the other jobs:
- `max_length=None`: no truncation, the whole text is framed once (the NER job cuts it into windows itself);
- `pair=True`: a `text_pair` column is tokenized with `text` as one pair (`<s> A </s></s> B </s>` for XLM-R),
  cut to `max_length` the way the tokenizer's `truncation="longest_first"` cuts pairs; a null pair is an error
  ("text_pair is null") as a null text is; an empty pair ("") means the text alone, as in transformers'
  text-classification pipeline (its tokenizer call treats an empty text_pair as none);
- `offsets=True`: an `offsets` column, list<fixed_size_list<int32>[2]>: each token's (start, end) character span in
  the text, (0, 0) for special tokens, as the tokenizer's `return_offsets_mapping` gives them; a tokenizer without
  offsets (FlauBERT's) is refused when the step is built.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from textbatch.operators.columns import require_columns, set_columns
from textbatch.operators.row_errors import (
    NULL_PAIR,
    NULL_TEXT,
    TOKENIZER_FAILED,
    exception_message,
)
from textbatch.operators.template import PromptTemplate
from textbatch.operators.texts import column_texts
from textbatch.operators.timing import TOKENIZE_MS, on_first_row

logger = logging.getLogger(__name__)

__all__ = ["CUT_AT_MAX_CHARS", "NULL_PAIR", "NULL_TEXT", "OFFSET_TYPE", "Tokenize"]

OFFSET_TYPE = pa.list_(pa.list_(pa.int32(), 2))
CUT_AT_MAX_CHARS = "_cut_at_max_chars"  # 1 where a text (or its pair) was cut to max_chars; summed for the report


def offsets_unavailable(tokenizer) -> str | None:
    """Why `tokenizer` cannot give character offsets (None when it can)."""
    try:
        tokenizer("a", add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError) as error:
        return str(error)
    return None


class Tokenize:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the tokenizer once per actor."""

    def __init__(
        self,
        tokenizer_path: str,
        max_length: int | None,
        template: str | None = None,
        *,
        pair: bool = False,
        offsets: bool = False,
        keep_text: bool = False,
        max_chars: int | None = None,
    ):
        from textbatch.tokenizers import AutoTokenizer

        if offsets and (template is not None or pair):
            raise ValueError("offsets are character spans of the text itself: they cannot be combined with a template "
                             "or a text pair")
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        why = offsets_unavailable(self.tokenizer) if offsets else None
        if why is not None:  # refused here, rather than every row failing with the same error
            raise ValueError(f"offsets=True: the {type(self.tokenizer).__name__} of {tokenizer_path} gives no character "
                             f"offsets ({why})")
        self.template = PromptTemplate(template) if template is not None else None
        self.pair = bool(pair)
        self.offsets = bool(offsets)
        self.keep_text = bool(keep_text)
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, got {max_chars}")
        self.max_chars = max_chars
        self.needs = ("text", "text_pair") if self.pair else ("text",)
        self.max_length = None if max_length is None else int(max_length)
        special = self.tokenizer.num_special_tokens_to_add(self.pair)
        self.budget = None if max_length is None else self.max_length - special  # room for the texts' own tokens
        if self.budget is not None and self.budget < (2 if self.pair else 1):
            raise ValueError(f"max_length {max_length} leaves no room for text beside {special} special tokens")

    def _encode(self, texts: list[str]) -> list[tuple[list[int], list | None] | Exception]:
        """(token ids (no specials), offsets or None) of each text; a text the tokenizer rejects gets its exception
        instead."""
        if not texts:
            return []

        def encode(batch: list[str]) -> list[tuple[list[int], list | None]]:
            encoded = self.tokenizer(batch, add_special_tokens=False, return_offsets_mapping=self.offsets)
            spans = encoded["offset_mapping"] if self.offsets else [None] * len(batch)
            return list(zip(encoded["input_ids"], spans))

        try:
            return encode(texts)
        except Exception:  # noqa: BLE001 - find the culprits one by one; the rest of the batch still gets tokenized
            results: list[tuple[list[int], list | None] | Exception] = []
            for text in texts:
                try:
                    results.append(encode([text])[0])
                except Exception as error:  # noqa: BLE001 - the row carries the message instead of failing the job
                    results.append(error)
            return results

    def _fit(self, first: list[int], second: list[int] | None) -> tuple[list[int], list[int] | None, bool]:
        """The ids cut to the budget (pairs as the tokenizer's "longest_first" cuts them); and whether they were."""
        if self.budget is None:
            return first, second, False
        if second is None:
            budget = self.max_length - self.tokenizer.num_special_tokens_to_add(False)
            return first[:budget], None, len(first) > budget
        if len(first) + len(second) <= self.budget:
            return first, second, False
        keep_first, keep_second = self.tokenizer._truncated_lengths(
            len(first), len(second), self.budget, "longest_first"
        )
        return first[:keep_first], second[:keep_second], True

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        require_columns(batch, self.needs, type(self).__name__)
        given = column_texts(batch.column("text"), self.max_chars)
        texts, errors, cut = given.texts, given.errors, given.cut
        pairs: list[str | None] = [None] * len(texts)
        if self.pair:
            given_pairs = column_texts(batch.column("text_pair"), self.max_chars, name="text_pair")
            pairs, cut = given_pairs.texts, cut | given_pairs.cut
            errors = [error or pair_error for error, pair_error in zip(errors, given_pairs.errors)]
        todo = [index for index, error in enumerate(errors) if error is None]
        inputs = [texts[index] for index in todo]
        if self.template is not None:
            inputs = [self.template(text) for text in inputs]
        encoded = self._encode(inputs)
        encoded_pairs: list = [None] * len(todo)
        if self.pair:
            paired = [slot for slot, index in enumerate(todo) if pairs[index]]  # "" is no pair
            for slot, encoded_pair in zip(paired, self._encode([pairs[todo[slot]] for slot in paired])):
                encoded_pairs[slot] = encoded_pair

        rows: list[list[int]] = [[] for _ in texts]
        spans: list[list] = [[] for _ in texts]
        truncated = cut.copy()  # cut to max_chars; cutting to max_length below adds to it
        for index, first, second in zip(todo, encoded, encoded_pairs):
            failed = next((item for item in (first, second) if isinstance(item, Exception)), None)
            if failed is not None:
                errors[index] = exception_message(TOKENIZER_FAILED, failed)
                continue
            ids, ids_pair, cut_to_length = self._fit(list(first[0]), None if second is None else list(second[0]))
            truncated[index] |= cut_to_length
            rows[index] = self.tokenizer.build_inputs_with_special_tokens(ids, ids_pair)
            if self.offsets:
                content = iter(first[1][: len(ids)])
                mask = self.tokenizer.get_special_tokens_mask(ids)
                spans[index] = [(0, 0) if special else tuple(next(content)) for special in mask]

        lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
        table = batch.drop_columns([name for name in ("text", "text_pair") if name in batch.column_names])
        columns = [
            ("input_ids", _int32_lists(rows, lengths)),
            ("n_tokens", pa.array(lengths)),
            ("truncated", pa.array(truncated)),
            ("error", pa.array(errors, type=pa.string())),
            (CUT_AT_MAX_CHARS, pa.array(cut.astype(np.int8))),
        ]
        if self.offsets:
            columns.append(("offsets", _span_lists(spans, lengths)))
        if self.keep_text:
            columns.append(("text", pa.array(texts, type=pa.string())))
        columns.append((TOKENIZE_MS, on_first_row(len(rows), 1000 * (time.perf_counter() - started))))
        return set_columns(table, columns)


def _int32_lists(rows: list[list[int]], lengths: np.ndarray) -> pa.ListArray:
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((token for row in rows for token in row), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def _span_lists(spans: list[list], lengths: np.ndarray) -> pa.ListArray:
    """list<fixed_size_list<int32>[2]>: one (start, end) per token."""
    offsets = np.zeros(len(spans) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((bound for row in spans for span in row for bound in span), dtype=np.int32,
                       count=2 * int(offsets[-1]))
    pairs = pa.FixedSizeListArray.from_arrays(pa.array(flat), 2)
    return pa.ListArray.from_arrays(pa.array(offsets), pairs)

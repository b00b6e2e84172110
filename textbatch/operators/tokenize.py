"""Tokenize step (a CPU actor): text -> input_ids, n_tokens, truncated, error.

The tokenizer is the checkpoint folder's own (`AutoTokenizer`: XLM-R, T5, FlauBERT), with its special tokens
(`<s> ... </s>` for XLM-R, `... </s>` for T5). An optional prompt template (`"summarize: {text}"`, see template.py)
is applied to each text first.

The rule for texts that are not ordinary strings (the job's README states the same):
- null text: `error = "text is null"`, no tokens (`n_tokens = 0`), and later a null embedding;
- a non-string value (only possible from non-Parquet sources) or bytes that are not UTF-8: `error` says so, likewise;
- empty or whitespace-only text is *not* an error: it becomes the special tokens alone (`<s></s>` for XLM-R) and gets
  what the model returns for "" when called directly;
- a text longer than `max_length` tokens (specials included; the template's words count) is cut at the end:
  `truncated = True`.
No row is dropped; every row keeps its id and any other column it came with. The `text` column is dropped here
(it is not needed downstream and is the bulk of the data).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from textbatch.operators.columns import require_columns
from textbatch.operators.template import PromptTemplate

logger = logging.getLogger(__name__)

NULL_TEXT = "text is null"


def _as_text(value) -> tuple[str | None, str | None]:
    """(text, error): exactly one of them is None."""
    if value is None:
        return None, NULL_TEXT
    if isinstance(value, str):
        return value, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8"), None
        except UnicodeDecodeError as error:
            return None, f"text is not valid UTF-8 ({error.reason} at byte {error.start})"
    return None, f"text is a {type(value).__name__}, not a string"


class Tokenize:
    """Callable for `map_batches(batch_format="pyarrow")`: loads the tokenizer once per actor."""

    needs = ("text",)

    def __init__(self, tokenizer_path: str, max_length: int, template: str | None = None):
        from textbatch.tokenizers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.template = PromptTemplate(template) if template is not None else None
        self.max_length = int(max_length)
        special = self.tokenizer.num_special_tokens_to_add()
        self.budget = self.max_length - special  # room for the text's own tokens
        if self.budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for text beside {special} special tokens")

    def _encode(self, texts: list[str]) -> list[list[int] | Exception]:
        """Token ids of each text (no specials); a text the tokenizer rejects gets its exception instead."""
        if not texts:
            return []
        try:
            return list(self.tokenizer(texts, add_special_tokens=False)["input_ids"])
        except Exception:  # noqa: BLE001 - find the culprits one by one; the rest of the batch still gets tokenized
            results: list[list[int] | Exception] = []
            for text in texts:
                try:
                    results.append(list(self.tokenizer([text], add_special_tokens=False)["input_ids"][0]))
                except Exception as error:  # noqa: BLE001 - the row carries the message instead of failing the job
                    results.append(error)
            return results

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(batch, self.needs, type(self).__name__)
        values = batch.column("text").to_pylist()
        texts, errors = zip(*(_as_text(value) for value in values)) if values else ((), ())
        errors = list(errors)
        todo = [index for index, text in enumerate(texts) if text is not None]
        inputs = [texts[index] for index in todo]
        if self.template is not None:
            inputs = [self.template(text) for text in inputs]
        encoded = self._encode(inputs)

        rows: list[list[int]] = [[] for _ in values]
        truncated = np.zeros(len(values), dtype=bool)
        for index, ids in zip(todo, encoded):
            if isinstance(ids, Exception):
                errors[index] = f"tokenizer failed: {type(ids).__name__}: {ids}"
                continue
            if len(ids) > self.budget:
                truncated[index] = True
                ids = ids[: self.budget]
            rows[index] = self.tokenizer.build_inputs_with_special_tokens(list(ids))

        lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((token for row in rows for token in row), dtype=np.int32, count=int(offsets[-1]))
        table = batch.drop_columns(["text"])
        for name, column in (
            ("input_ids", pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))),
            ("n_tokens", pa.array(lengths)),
            ("truncated", pa.array(truncated)),
            ("error", pa.array(errors, type=pa.string())),
        ):
            if name in table.column_names:  # re-running over an already tokenized table replaces, never duplicates
                table = table.drop_columns([name])
            table = table.append_column(name, column)
        return table

"""What the tokenizers share: special tokens written in text, truncation, pairs, padding, offsets, tensors.

A concrete tokenizer (see `xlm_roberta.py`) only has to turn one text into ids (and character offsets), say how
special tokens frame one or two sequences, and turn tokens back into text. `BaseTokenizer.__call__` does the rest the
way transformers' Rust-backed tokenizers do it, in this order: split out special tokens -> encode each piece ->
truncate the pair without its special tokens -> add special tokens -> pad the batch -> tensors.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from textbatch.tokenizers.added_tokens import AddedToken

logger = logging.getLogger(__name__)


PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
# transformers treats a model_max_length above this as "no limit" (its default when a folder has no config).
LARGE_INTEGER = int(1e20)


class BatchEncoding(dict):
    """The tokenizer's output: a dict ("input_ids", "attention_mask", ...) whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key {name!r}; it has {sorted(self)}") from None

    def __getstate__(self) -> dict:
        return dict(self)

    def __setstate__(self, state: dict) -> None:
        self.update(state)

    def convert_to_tensors(self, tensor_type: str | None) -> BatchEncoding:
        """Turn every value into a numpy ("np") or jax ("jax") array, in place; ragged batches are refused."""
        if tensor_type is None:
            return self
        if tensor_type not in ("np", "jax"):
            raise ValueError(f"return_tensors must be None, 'np' or 'jax', got {tensor_type!r}")
        for key, value in self.items():
            try:
                array = np.asarray(value, dtype=np.int64)
            except ValueError as error:
                raise ValueError(
                    f"cannot make a tensor of {key!r}: the sequences have different lengths; "
                    "pass padding=True (or padding='max_length') together with return_tensors"
                ) from error
            if tensor_type == "jax":
                import jax.numpy as jnp

                # jax defaults to 32-bit integers; cast here so it does not warn about dropping int64.
                array = jnp.asarray(array.astype(np.int32))
            self[key] = array
        return self


@dataclasses.dataclass
class _Encoded:
    """One text's tokens before special tokens are added."""

    ids: list[int]
    offsets: list[tuple[int, int]] | None = None


def _resolve_strategies(padding, truncation, max_length, model_max_length):
    """Map the user's padding / truncation / max_length to (padding, truncation, max_length), as transformers does."""
    # Backward-compatible rule of the reference: max_length alone (no padding) switches truncation on.
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"
    if padding is True:
        padding = "longest"
    elif padding is False or padding is None:
        padding = "do_not_pad"
    if padding not in PADDING_STRATEGIES:
        raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
    if truncation is True:
        truncation = "longest_first"
    elif truncation is False or truncation is None:
        truncation = "do_not_truncate"
    if truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(
            f"truncation must be True, False, 'longest_first', 'only_first' or 'only_second', got {truncation!r}"
        )
    if max_length is None:
        if padding == "max_length":
            if model_max_length > LARGE_INTEGER:
                padding = "do_not_pad"
            else:
                max_length = model_max_length
        if truncation != "do_not_truncate":
            if model_max_length > LARGE_INTEGER:
                truncation = "do_not_truncate"
            else:
                max_length = model_max_length
    elif not isinstance(max_length, (int, np.integer)) or max_length < 0:
        raise ValueError(f"max_length must be a non-negative int or None, got {max_length!r}")
    return padding, truncation, None if max_length is None else int(max_length)


def truncated_lengths(len_a: int, len_b: int | None, max_length: int, strategy: str) -> tuple[int, int | None]:
    """How many tokens of each sequence to keep so that together they fit `max_length` (special tokens excluded).

    The arithmetic is the reference's (Rust tokenizers), including its "longest_first" split for pairs, which
    shortens the longer sequence down to the shorter one's length before cutting both, the second one keeping the
    odd token. Raises ValueError when the strategy cannot reach the length.
    """
    if max_length == 0:
        return 0, (0 if len_b is not None else None)
    total = len_a + (len_b or 0)
    if total <= max_length:
        return len_a, len_b
    to_remove = total - max_length
    if strategy == "longest_first":
        if len_b is None:
            return max_length, None
        n1, n2 = len_a, len_b
        swap = n1 > n2
        if swap:
            n1, n2 = n2, n1
        n2 = n1 if n1 > max_length else max(n1, max_length - n1)
        if n1 + n2 > max_length:
            n1 = max_length // 2
            n2 = n1 + max_length % 2
        if swap:
            n1, n2 = n2, n1
        return min(n1, len_a), min(n2, len_b)
    if strategy == "only_first":
        if len_a > to_remove:
            return len_a - to_remove, len_b
        raise ValueError(
            f"truncation='only_first' cannot fit max_length={max_length}: the first sequence has {len_a} tokens "
            f"but {to_remove} must go; use truncation='longest_first' or a larger max_length"
        )
    if strategy == "only_second":
        if len_b is None:
            raise ValueError("truncation='only_second' needs a second sequence (text_pair)")
        if len_b > to_remove:
            return len_a, len_b - to_remove
        raise ValueError(
            f"truncation='only_second' cannot fit max_length={max_length}: the second sequence has {len_b} tokens "
            f"but {to_remove} must go; use truncation='longest_first' or a larger max_length"
        )
    raise ValueError(f"unknown truncation strategy {strategy!r}")


def _pad(values: list, value, missing: int, side: str) -> list:
    if missing <= 0:
        return values
    return values + [value] * missing if side == "right" else [value] * missing + values


def _keep(values: list, n: int, side: str) -> list:
    if len(values) <= n:
        return values
    return values[:n] if side == "right" else values[len(values) - n :]


class BaseTokenizer:
    """Shared call / decode machinery. Subclasses set the special tokens and implement the hooks at the bottom."""

    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    # How a text (pair) is cut to fit; a tokenizer whose reference is a Python (slow) one splits pairs differently.
    _truncated_lengths = staticmethod(truncated_lengths)

    def __init__(
        self,
        special_tokens: dict[str, AddedToken | None],
        model_max_length: int,
        split_special_tokens: bool,
        clean_up_tokenization_spaces: bool,
        padding_side: str,
        truncation_side: str,
    ):
        for name in special_tokens:
            if name not in self.SPECIAL_TOKEN_NAMES:
                raise ValueError(f"unknown special token name {name!r}; expected one of {self.SPECIAL_TOKEN_NAMES}")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if truncation_side not in ("right", "left"):
            raise ValueError(f"truncation_side must be 'right' or 'left', got {truncation_side!r}")
        self._special_tokens = dict(special_tokens)
        self.model_max_length = int(model_max_length)
        self.split_special_tokens = bool(split_special_tokens)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.padding_side = padding_side
        self.truncation_side = truncation_side

    # -- special tokens --------------------------------------------------------------------------------------------
    def _special(self, name: str) -> str | None:
        token = self._special_tokens.get(name)
        return None if token is None else token.content

    def _special_id(self, name: str) -> int | None:
        content = self._special(name)
        return None if content is None else self.convert_tokens_to_ids(content)

    bos_token = property(lambda self: self._special("bos_token"))
    eos_token = property(lambda self: self._special("eos_token"))
    unk_token = property(lambda self: self._special("unk_token"))
    sep_token = property(lambda self: self._special("sep_token"))
    pad_token = property(lambda self: self._special("pad_token"))
    cls_token = property(lambda self: self._special("cls_token"))
    mask_token = property(lambda self: self._special("mask_token"))
    bos_token_id = property(lambda self: self._special_id("bos_token"))
    eos_token_id = property(lambda self: self._special_id("eos_token"))
    unk_token_id = property(lambda self: self._special_id("unk_token"))
    sep_token_id = property(lambda self: self._special_id("sep_token"))
    pad_token_id = property(lambda self: self._special_id("pad_token"))
    cls_token_id = property(lambda self: self._special_id("cls_token"))
    mask_token_id = property(lambda self: self._special_id("mask_token"))

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: token.content for name, token in self._special_tokens.items() if token is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """The distinct special token strings, in the reference's order (bos, eos, unk, sep, pad, cls, mask)."""
        seen: list[str] = []
        for name in self.SPECIAL_TOKEN_NAMES:
            content = self._special(name)
            if content is not None and content not in seen:
                seen.append(content)
        return seen

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(token) for token in self.all_special_tokens]

    # -- encoding --------------------------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        return_token_type_ids: bool | None = None,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        split_special_tokens: bool | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
    ) -> BatchEncoding:
        """Tokenize one text (or pair) or a batch of them; the result matches transformers' tokenizer call.

        `truncation=None` (the default) means "no truncation, unless `max_length` is given without padding", the
        reference's rule. A single text gives lists without a batch dimension unless `return_tensors` is set.
        """
        padding, truncation, max_length = _resolve_strategies(padding, truncation, max_length, self.model_max_length)
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        padding_side = padding_side or self.padding_side
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")

        is_batched = isinstance(text, (list, tuple))
        if is_batched:
            texts = list(text)
            if text_pair is None:
                pairs: list[str | None] = [None] * len(texts)
            elif isinstance(text_pair, (list, tuple)):
                if len(text_pair) != len(texts):
                    raise ValueError(f"text has {len(texts)} items but text_pair has {len(text_pair)}")
                pairs = list(text_pair)
            else:
                raise TypeError("when text is a batch (list), text_pair must be a list of the same length")
        elif isinstance(text, str):
            texts = [text]
            # The reference treats an empty text_pair string as "no pair" for a single input; so do we.
            pairs = [text_pair if text_pair else None]
        else:
            raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
        for name, items in (("text", texts), ("text_pair", pairs)):
            for index, item in enumerate(items):
                if not (isinstance(item, str) or (item is None and name == "text_pair")):
                    where = f"{name}[{index}]" if is_batched else name
                    raise TypeError(f"{where} must be a str, got {type(item).__name__}")

        with_offsets = return_offsets_mapping
        n_added_single = self.num_special_tokens_to_add(False) if add_special_tokens else 0
        n_added_pair = self.num_special_tokens_to_add(True) if add_special_tokens else 0
        input_ids, type_ids, special_masks, offsets = [], [], [], []
        warned = False
        for index, (first, second) in enumerate(zip(texts, pairs)):
            enc_a = self._encode_text(first, split_special_tokens, with_offsets)
            enc_b = None if second is None else self._encode_text(second, split_special_tokens, with_offsets)
            if truncation != "do_not_truncate":
                n_added = n_added_pair if enc_b is not None else n_added_single
                if max_length < n_added:
                    # The reference's budget (max_length - added) underflows here and it truncates nothing.
                    if not warned:
                        logger.warning(
                            "max_length=%d is smaller than the %d special tokens; not truncating", max_length, n_added
                        )
                        warned = True
                else:
                    try:
                        keep_a, keep_b = self._truncated_lengths(
                            len(enc_a.ids), None if enc_b is None else len(enc_b.ids), max_length - n_added, truncation
                        )
                    except ValueError as error:
                        raise ValueError(f"batch item {index}: {error}") from None
                    self._truncate(enc_a, keep_a)
                    if enc_b is not None:
                        self._truncate(enc_b, keep_b)
            ids_a, ids_b = enc_a.ids, None if enc_b is None else enc_b.ids
            if add_special_tokens:
                input_ids.append(self.build_inputs_with_special_tokens(ids_a, ids_b))
            else:
                input_ids.append(ids_a if ids_b is None else ids_a + ids_b)
            # The rest only when asked for: the pipeline's hot call wants bare ids.
            if return_token_type_ids:
                if add_special_tokens:
                    type_ids.append(self.create_token_type_ids_from_sequences(ids_a, ids_b))
                else:  # the reference gives type 0 throughout when no template is applied
                    type_ids.append([0] * len(input_ids[-1]))
            if return_special_tokens_mask or with_offsets:
                if add_special_tokens:
                    mask = self.get_special_tokens_mask(ids_a, ids_b)
                else:
                    mask = [0] * len(input_ids[-1])
                special_masks.append(mask)
                if with_offsets:
                    content = iter(enc_a.offsets + (enc_b.offsets if enc_b is not None else []))
                    offsets.append([(0, 0) if flag else next(content) for flag in mask])

        real_lengths = [len(ids) for ids in input_ids]
        if padding != "do_not_pad" and input_ids:
            target = max(real_lengths) if padding == "longest" else max_length
            if pad_to_multiple_of and target % pad_to_multiple_of:
                target += pad_to_multiple_of - target % pad_to_multiple_of
            pad_id = self.pad_token_id
            if pad_id is None:
                raise ValueError("asked to pad but this tokenizer has no pad_token")
            for row, n_real in enumerate(real_lengths):
                missing = target - n_real
                if missing > 0:  # longer rows stay as they are, as in the reference
                    input_ids[row] = _pad(input_ids[row], pad_id, missing, padding_side)
                    if return_token_type_ids:
                        type_ids[row] = _pad(type_ids[row], 0, missing, padding_side)
                    if special_masks:
                        special_masks[row] = _pad(special_masks[row], 1, missing, padding_side)
                    if with_offsets:
                        offsets[row] = _pad(offsets[row], (0, 0), missing, padding_side)

        data: dict[str, Any] = {"input_ids": input_ids}
        if return_token_type_ids:
            data["token_type_ids"] = type_ids
        if return_attention_mask:
            data["attention_mask"] = [
                _pad([1] * n_real, 0, len(ids) - n_real, padding_side) for n_real, ids in zip(real_lengths, input_ids)
            ]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = special_masks
        if with_offsets:
            data["offset_mapping"] = offsets
        if return_length:
            data["length"] = [len(ids) for ids in input_ids]

        if return_tensors is not None:
            return BatchEncoding(data).convert_to_tensors(return_tensors)
        if not is_batched:
            data = {key: value if key == "length" else value[0] for key, value in data.items()}
        return BatchEncoding(data)

    def _truncate(self, encoded: _Encoded, keep: int) -> None:
        encoded.ids = _keep(encoded.ids, keep, self.truncation_side)
        if encoded.offsets is not None:
            encoded.offsets = _keep(encoded.offsets, keep, self.truncation_side)

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """The ids of one text (or pair): `self(text, ...)["input_ids"]`."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def tokenize(
        self, text: str, pair: str | None = None, add_special_tokens: bool = False, split_special_tokens=None
    ) -> list[str]:
        """The token strings of a text: vocabulary pieces, or the covered text for unknown and special tokens."""
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        tokens_a = self._tokens_of(text, split_special_tokens)
        tokens_b = None if not pair else self._tokens_of(pair, split_special_tokens)
        if not add_special_tokens:
            return tokens_a + (tokens_b or [])
        ids_a, ids_b = [0] * len(tokens_a), None if tokens_b is None else [0] * len(tokens_b)
        mask = self.get_special_tokens_mask(ids_a, ids_b)
        framed = self.convert_ids_to_tokens(self.build_inputs_with_special_tokens(ids_a, ids_b))
        content = iter(tokens_a + (tokens_b or []))
        return [token if flag else next(content) for token, flag in zip(framed, mask)]

    # -- decoding --------------------------------------------------------------------------------------------------
    def decode(
        self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> str:
        """Text from ids (a list, an int, or a 1-d numpy / jax array)."""
        if isinstance(token_ids, dict):
            token_ids = token_ids["input_ids"]
        array = np.asarray(token_ids)
        if array.ndim > 1:
            raise ValueError(f"decode takes one sequence of ids, got shape {array.shape}; use batch_decode")
        ids = [int(i) for i in array.reshape(-1)]
        if skip_special_tokens:
            special = self._special_ids_for_decoding()
            ids = [i for i in ids if i not in special]
        text = self._decode_tokens(self.convert_ids_to_tokens(ids))
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        return text

    def batch_decode(
        self, sequences, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None
    ) -> list[str]:
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in sequences]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Token pieces joined back into text, as `decode` joins them (special tokens kept as written)."""
        return self._decode_tokens(list(tokens))

    def _special_ids_for_decoding(self) -> frozenset[int]:
        return frozenset(self.all_special_ids)

    # -- hooks a concrete tokenizer implements ---------------------------------------------------------------------
    def _encode_text(self, text: str, split_special_tokens: bool, with_offsets: bool) -> _Encoded:
        raise NotImplementedError

    def _tokens_of(self, text: str, split_special_tokens: bool) -> list[str]:
        raise NotImplementedError

    def _decode_tokens(self, tokens: list[str]) -> str:
        raise NotImplementedError

    def convert_tokens_to_ids(self, tokens):
        raise NotImplementedError

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        raise NotImplementedError

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        raise NotImplementedError

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        raise NotImplementedError

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        raise NotImplementedError

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None):
        raise NotImplementedError


def clean_up_tokenization(text: str) -> str:
    """The reference's optional decode clean-up: drop the space before punctuation and English contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text

"""What the sentencepiece-unigram tokenizers (XLM-R, T5) share: vocabulary lookups, text -> ids with offsets,
ids -> text, and reading tokenizer_config.json / special_tokens_map.json.

A subclass builds, in its __init__, the attributes these methods read: `_pieces` (id -> piece), `_token_to_id`,
`_unk_id`, `_unigram` (UnigramModel), `_normalizer` (PrecompiledCharsmap or None), `_splitter`
(AddedTokenSplitter over `_added_tokens`) and `_special_decode_ids`; it adds its own special-token framing.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import numpy as np

from textbatch.tokenizers.added_tokens import RUST_WHITESPACE, AddedToken
from textbatch.tokenizers.base import BaseTokenizer, _Encoded
from textbatch.tokenizers.sentencepiece_unigram import METASPACE

logger = logging.getLogger(__name__)

_WORD = re.compile(f"[^{re.escape(RUST_WHITESPACE)}]+")


def read_vocab_file(vocab_file: str | os.PathLike | bytes) -> tuple[bytes, str]:
    """(the model file's bytes, where they came from, for error messages) of a path or of bytes given directly."""
    if isinstance(vocab_file, (bytes, bytearray)):
        return bytes(vocab_file), "the given sentencepiece model bytes"
    where = os.fspath(vocab_file)
    with open(where, "rb") as handle:
        return handle.read(), where


class SentencePieceUnigramTokenizer(BaseTokenizer):
    # -- vocabulary ------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def __len__(self) -> int:
        return len(self._pieces)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Ids of token strings; a string that is not a vocabulary entry gives the unknown id, as in the reference."""
        if isinstance(tokens, str):
            return self._token_to_id.get(tokens, self._unk_id)
        return [self._token_to_id.get(token, self._unk_id) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self._piece(int(ids))
        skip = self._special_decode_ids if skip_special_tokens else frozenset()
        return [self._piece(int(i)) for i in ids if int(i) not in skip]

    def _piece(self, index: int) -> str:
        if not 0 <= index < len(self._pieces):
            raise IndexError(f"token id {index} is outside the vocabulary (0..{len(self._pieces) - 1})")
        return self._pieces[index]

    def _special_ids_for_decoding(self) -> frozenset[int]:
        return self._special_decode_ids

    # -- text -> ids ---------------------------------------------------------------------------------------------------
    def _encode_text(self, text: str, split_special_tokens: bool, with_offsets: bool) -> _Encoded:
        ids: list[int] = []
        offsets = [] if with_offsets else None
        self._run(text, split_special_tokens, ids, offsets, None)
        return _Encoded(ids, offsets)

    def _tokens_of(self, text: str, split_special_tokens: bool) -> list[str]:
        ids: list[int] = []
        tokens: list[str] = []
        self._run(text, split_special_tokens, ids, None, tokens)
        return tokens

    def _run(self, text, split_special_tokens, ids, offsets, tokens) -> None:
        spans = self._splitter.split(text, split_special_tokens)
        for start, end, token_id in spans:
            if token_id is not None:
                ids.append(token_id)
                if offsets is not None:
                    offsets.append((start, end))
                if tokens is not None:
                    tokens.append(text[start:end])
            else:
                segment = text if len(spans) == 1 else text[start:end]
                self._encode_segment(segment, start, ids, offsets, tokens)

    def _encode_segment(self, segment: str, base: int, ids, offsets, tokens) -> None:
        """Normalise, split into words and pieces, segment each piece; append ids (and offsets / token strings)."""
        if self._normalizer is not None:
            normalized, spans = self._normalizer.normalize(segment)
        else:
            normalized, spans = segment, None
        segment_piece = self._unigram.segment
        detail = offsets is not None or tokens is not None
        for match in _WORD.finditer(normalized):
            word = match.group()
            if METASPACE not in word:
                piece_ids, lengths = segment_piece(METASPACE + word)
                ids.extend(piece_ids)
                if detail:
                    self._details(METASPACE + word, 0, True, match.start(), lengths, spans, base, offsets, tokens)
                continue
            # Rare: the word itself holds "▁" (a model without charsmap); cut before each one (Metaspace).
            prepended = not word.startswith(METASPACE)
            combined = METASPACE + word if prepended else word
            cuts = [i for i, char in enumerate(combined) if char == METASPACE] + [len(combined)]
            for left, right in zip(cuts, cuts[1:]):
                piece = combined[left:right]
                piece_ids, lengths = segment_piece(piece)
                ids.extend(piece_ids)
                if detail:
                    self._details(combined, left, prepended, match.start(), lengths, spans, base, offsets, tokens)

    @staticmethod
    def _details(combined, left, prepended, word_start, lengths, spans, base, offsets, tokens) -> None:
        """Offsets (in input characters) and strings of the tokens that cover `combined[left:]` piece by piece.

        A character at `i` of `combined` is normalised character `word_start + i` (minus one after a prepended
        "▁", which itself stands on the word's first character).
        """
        position = left
        for length in lengths:
            first, last = position, position + length - 1
            if tokens is not None:
                tokens.append(combined[first : last + 1])
            if offsets is not None:
                shift = 1 if prepended else 0
                n_first = word_start + (first - shift if first > 0 else 0)
                n_last = word_start + (last - shift if last > 0 else 0)
                if spans is None:
                    offsets.append((base + n_first, base + n_last + 1))
                else:
                    offsets.append((base + spans[n_first][0], base + spans[n_last][1]))
            position += length

    # -- ids -> text ---------------------------------------------------------------------------------------------------
    def _decode_tokens(self, tokens: list[str]) -> str:
        # Metaspace decoding: "▁" becomes a space, except in the first token, where it is dropped.
        return "".join(
            token.replace(METASPACE, "") if index == 0 else token.replace(METASPACE, " ")
            for index, token in enumerate(tokens)
        )


_CONFIG_KEYS = ("model_max_length", "split_special_tokens", "clean_up_tokenization_spaces", "padding_side")
_CONFIG_KEYS += ("truncation_side",)


def kwargs_from_tokenizer_config(config: dict, special_map: dict, where: str) -> dict[str, Any]:
    """Constructor arguments from tokenizer_config.json and special_tokens_map.json (the latter wins, as in the
    reference); `added_tokens_decoder` supplies lstrip / rstrip / single_word of the special tokens."""
    kwargs: dict[str, Any] = {}
    for key in _CONFIG_KEYS:
        if config.get(key) is not None:
            kwargs[key] = config[key]
    flags: dict[str, AddedToken] = {}
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if isinstance(entry, dict) and isinstance(entry.get("content"), str):
            flags[entry["content"]] = AddedToken.coerce(entry)
    for name in BaseTokenizer.SPECIAL_TOKEN_NAMES:
        value = special_map.get(name, config.get(name))
        if value is None:
            continue
        token = AddedToken.coerce(value)
        if isinstance(value, str) and token.content in flags:
            found = flags[token.content]
            token = AddedToken(token.content, found.lstrip, found.rstrip, found.single_word, True)
        kwargs[name] = token
    ignored = sorted(set(config) - set(_CONFIG_KEYS) - set(BaseTokenizer.SPECIAL_TOKEN_NAMES))
    if ignored:
        logger.debug("%s: not used by textbatch's tokenizer: %s", where, ", ".join(ignored))
    return kwargs

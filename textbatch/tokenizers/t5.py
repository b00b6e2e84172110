"""T5's tokenizer: a sentencepiece unigram model (`spiece.model`) plus 100 sentinels, equal to transformers' ids.

transformers 5 converts `spiece.model` into the same Rust pipeline as XLM-RoBERTa's (precompiled charsmap ->
whitespace split -> Metaspace -> float64 unigram Viterbi), so the text -> pieces code is XLM-RoBERTa's, shared.
What T5 does differently:
  ids       the model's own piece ids (<pad>=0, </s>=1, <unk>=2, ...), then the sentinels in reverse order:
            `<extra_id_99>` = number of pieces, ..., `<extra_id_0>` = last id (so `<extra_id_0>` is 32099 in t5-small)
  framing   `A </s>` and `A </s> B </s>`; no bos, no token types
  special   eos, unk, pad, and the sentinels (`additional_special_tokens`), all skipped by
            `decode(..., skip_special_tokens=True)`
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from textbatch.tokenizers.added_tokens import AddedToken, AddedTokenSplitter
from textbatch.tokenizers.sentencepiece_tokenizer import (
    SentencePieceUnigramTokenizer,
    kwargs_from_tokenizer_config,
    read_vocab_file,
)
from textbatch.tokenizers.sentencepiece_unigram import (
    PIECE_CONTROL,
    PIECE_USER_DEFINED,
    PrecompiledCharsmap,
    UnigramModel,
    load_unigram_proto,
)

logger = logging.getLogger(__name__)

VOCAB_FILE = "spiece.model"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
# transformers' model_max_length when a folder says nothing: no limit (T5's relative positions have none either).
NO_LIMIT = int(1e30)
_SENTINEL = re.compile(r"<extra_id_(\d+)>")


def sentinel(index: int) -> str:
    return f"<extra_id_{index}>"


class T5Tokenizer(SentencePieceUnigramTokenizer):
    """T5 / FLAN-T5 / UL2 tokenizer over `spiece.model`; ids, offsets and decoding equal transformers' `T5Tokenizer`.

    `vocab_file` is a path to `spiece.model` or its bytes. `extra_ids` sentinels `<extra_id_0>` ... are added after
    the model's pieces; `additional_special_tokens` may list them (as hub configs do) and further special tokens,
    which get new ids after the sentinels.
    """

    model_input_names = ("input_ids", "attention_mask")

    def __init__(
        self,
        vocab_file: str | os.PathLike | bytes,
        eos_token: str | AddedToken = "</s>",
        unk_token: str | AddedToken = "<unk>",
        pad_token: str | AddedToken = "<pad>",
        extra_ids: int = 100,
        additional_special_tokens: list[str | AddedToken] | None = None,
        model_max_length: int = NO_LIMIT,
        split_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
    ):
        self._model_bytes, where = read_vocab_file(vocab_file)
        proto = load_unigram_proto(self._model_bytes, where, "T5")
        if extra_ids < 0:
            raise ValueError(f"extra_ids must be >= 0, got {extra_ids}")
        special = {
            "eos_token": AddedToken.coerce(eos_token),
            "unk_token": AddedToken.coerce(unk_token),
            "pad_token": AddedToken.coerce(pad_token),
        }
        super().__init__(
            special, model_max_length, split_special_tokens, clean_up_tokenization_spaces, padding_side, truncation_side
        )
        self.extra_ids = extra_ids

        # Vocabulary: the model's pieces with their scores, then the sentinels (score 0, as the reference's
        # converter gives them, so that split_special_tokens=True still finds them as pieces).
        vocab = [(piece.piece, piece.score) for piece in proto.pieces]
        vocab += [(sentinel(i), 0.0) for i in range(extra_ids - 1, -1, -1)]
        additional = [AddedToken.coerce(token) for token in (additional_special_tokens or [])]
        listed = [token for token in additional if _SENTINEL.fullmatch(token.content)]
        if listed and extra_ids and len(listed) != extra_ids:
            raise ValueError(
                f"additional_special_tokens lists {len(listed)} <extra_id_N> sentinels but extra_ids={extra_ids}; "
                "they must agree (or leave the sentinels out of the list)"
            )
        known = {piece for piece, _ in vocab}
        vocab += [(token.content, 0.0) for token in additional if token.content not in known]
        self._pieces = [piece for piece, _ in vocab]
        self._unigram = UnigramModel(vocab, unk_id=0)  # unk id fixed below, once the unk token's id is known
        self._token_to_id = self._unigram.piece_ids
        for name, token in special.items():
            if token.content not in self._token_to_id:
                raise ValueError(f"{name}={token.content!r} is not a piece of {where}")
        self._unk_id = self._token_to_id[special["unk_token"].content]
        self._unigram.unk_id = self._unk_id
        self._eos_id = self._token_to_id[special["eos_token"].content]
        charsmap = proto.normalizer_spec.precompiled_charsmap
        self._normalizer = PrecompiledCharsmap(charsmap) if charsmap else None

        # Sentinels first by number, then any other additional special tokens, in the order given.
        sentinels = [AddedToken(sentinel(i)) for i in range(extra_ids)]
        others = [token for token in additional if not _SENTINEL.fullmatch(token.content)]
        self._additional = sentinels + [token for token in listed if token.content not in known] + others

        # Matched in raw text: the special tokens, the model's control and user-defined pieces, the additional ones.
        self._added_tokens: list[tuple[AddedToken, int]] = []
        seen: set[str] = set()
        candidates = list(special.values())
        candidates += [
            AddedToken(piece.piece, special=piece.type == PIECE_CONTROL)
            for piece in proto.pieces
            if piece.type in (PIECE_CONTROL, PIECE_USER_DEFINED)
        ]
        candidates += self._additional
        for token in candidates:
            if token.content not in seen:
                seen.add(token.content)
                self._added_tokens.append((token, self._token_to_id[token.content]))
        self._splitter = AddedTokenSplitter(self._added_tokens)
        self._special_decode_ids = frozenset(i for token, i in self._added_tokens if token.special)

    # -- loading and saving ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_url: str | os.PathLike, **overrides: Any) -> T5Tokenizer:
        """Load `spiece.model` (+ `tokenizer_config.json`, `special_tokens_map.json` when present) from a local
        folder, an fsspec URL or a hub id; keyword arguments override what the files say."""
        from textbatch.storage import Folder

        folder = Folder.open(path_or_url)
        if not folder.exists(VOCAB_FILE):
            raise FileNotFoundError(
                f"{folder.location(VOCAB_FILE)} not found: a T5 tokenizer folder needs its sentencepiece model under "
                "that name (tokenizer.json alone is not read)"
            )
        config = folder.read_json(CONFIG_FILE) if folder.exists(CONFIG_FILE) else {}
        special_map = folder.read_json(SPECIAL_TOKENS_MAP_FILE) if folder.exists(SPECIAL_TOKENS_MAP_FILE) else {}
        kwargs = kwargs_from_tokenizer_config(config, special_map, folder.location(CONFIG_FILE))
        for name in ("bos_token", "sep_token", "cls_token", "mask_token"):
            kwargs.pop(name, None)  # T5 has none of these
        if config.get("extra_ids") is not None:
            kwargs["extra_ids"] = int(config["extra_ids"])
        # transformers 4 wrote "additional_special_tokens", transformers 5 writes "extra_special_tokens".
        for key in ("additional_special_tokens", "extra_special_tokens"):
            listed = special_map.get(key, config.get(key))
            if listed:
                kwargs["additional_special_tokens"] = listed
                break
        kwargs.update(overrides)
        return cls(folder.read_bytes(VOCAB_FILE), **kwargs)

    def save_pretrained(self, path_or_url: str | os.PathLike) -> None:
        """Write `spiece.model`, `tokenizer_config.json` and `special_tokens_map.json` (the hub's T5 layout), which
        this class and transformers' `T5Tokenizer.from_pretrained` both load."""
        from textbatch.storage import Folder

        folder = Folder.open(path_or_url, create=True)
        folder.write_bytes(VOCAB_FILE, self._model_bytes)
        additional = [token.content for token in self._additional]
        named = {name: token.content for name, token in self._special_tokens.items()}
        config = {
            **named,
            "additional_special_tokens": additional,
            "extra_ids": self.extra_ids,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self.split_special_tokens,
            "tokenizer_class": "T5Tokenizer",
        }
        folder.write_bytes(CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False).encode("utf-8"))
        special_map = {**named, "additional_special_tokens": additional}
        folder.write_bytes(SPECIAL_TOKENS_MAP_FILE, json.dumps(special_map, indent=2, ensure_ascii=False).encode())

    # -- vocabulary and sentinels ----------------------------------------------------------------------------------
    @property
    def additional_special_tokens(self) -> list[str]:
        return [token.content for token in self._additional]

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return [self._token_to_id[token] for token in self.additional_special_tokens]

    @property
    def all_special_tokens(self) -> list[str]:
        """eos, unk, pad, then the sentinels and other additional special tokens (the reference's order)."""
        named = super().all_special_tokens
        return named + [token for token in self.additional_special_tokens if token not in named]

    def get_sentinel_tokens(self) -> list[str]:
        """`<extra_id_0>`, `<extra_id_1>`, ... in that order."""
        found = [token for token in self.additional_special_tokens if _SENTINEL.fullmatch(token)]
        return sorted(found, key=lambda token: int(_SENTINEL.fullmatch(token).group(1)))

    def get_sentinel_token_ids(self) -> list[int]:
        return [self._token_to_id[token] for token in self.get_sentinel_tokens()]

    # -- special-token framing -------------------------------------------------------------------------------------
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 2 if pair else 1

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """`A </s>` or `A </s> B </s>`."""
        if token_ids_1 is None:
            return [*token_ids_0, self._eos_id]
        return [*token_ids_0, self._eos_id, *token_ids_1, self._eos_id]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("pass one sequence that already has its special tokens, not a pair")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [0] * len(token_ids_0) + [1]
        return [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None) -> list[int]:
        """All zeros: T5 has no token types."""
        return [0] * (len(token_ids_0) + 1 + (0 if token_ids_1 is None else len(token_ids_1) + 1))

    def __repr__(self) -> str:
        return (
            f"T5Tokenizer(vocab_size={self.vocab_size}, extra_ids={self.extra_ids}, "
            f"model_max_length={self.model_max_length}, special_tokens={self.special_tokens_map})"
        )

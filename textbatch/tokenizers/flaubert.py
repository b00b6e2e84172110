"""FlauBERT's tokenizer: Moses pre-processing + BPE (vocab.json, merges.txt), equal to transformers' ids.

Per piece of text between special tokens, as transformers' `FlaubertTokenizer` (a Python tokenizer) does it:
  "``" and "''" -> '"'  ->  NFC  ->  lower-case if `do_lowercase` (uncased checkpoints)
  -> Moses pipeline for French (see moses_bpe.py) -> words -> BPE pieces -> ids (unknown pieces -> <unk>).
A sequence is framed `<s> A </s>` or `<s> A </s> B </s>`; token type ids are 0 for `<s> A </s>` and 1 for `B </s>`.

On accents: the reference lower-cases uncased checkpoints but keeps their accents (FlauBERT's uncased vocabulary
holds "é", "à", ...); its XLM-style `do_lowercase_and_remove_accent` is always off. We do the same.

Character offsets are not available: Moses rewrites the text (quotes, spaces, punctuation) before splitting it, so
a token does not map to a span of the input; the reference has none either (it silently ignores the request).
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from typing import Any

import numpy as np

from textbatch.tokenizers.added_tokens import AddedToken, AddedTokenSplitter
from textbatch.tokenizers.base import BaseTokenizer, BatchEncoding, _Encoded
from textbatch.tokenizers.moses_bpe import (
    END_OF_WORD,
    BytePairEncoder,
    MosesPreTokenizer,
    read_merges,
)

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
# transformers' "no limit" when a folder does not say model_max_length.
VERY_LARGE_INTEGER = int(1e30)
LANGUAGE = "fr"  # the reference always runs Moses for French
DEFAULT_ADDITIONAL_SPECIAL_TOKENS = tuple(f"<special{i}>" for i in range(10))


def _read_text(source: str | os.PathLike | bytes, what: str) -> tuple[str, str]:
    """(text, where) of a file path or its bytes; newlines read the way Python's text mode reads them."""
    if isinstance(source, (bytes, bytearray)):
        text = bytes(source).decode("utf-8")
        return text.replace("\r\n", "\n").replace("\r", "\n"), f"the given {what} bytes"
    where = os.fspath(source)
    with open(where, encoding="utf-8") as handle:
        return handle.read(), where


def python_truncated_lengths(len_a: int, len_b: int | None, max_length: int, strategy: str) -> tuple[int, int | None]:
    """How many tokens of each sequence to keep, with the arithmetic of transformers' Python tokenizers.

    It differs from the Rust tokenizers' (`base.truncated_lengths`): for pairs, "longest_first" first trims the
    longer sequence down to the shorter one, then takes the odd remaining token from the *second* sequence when the
    first is not the longer; and nothing raises: a sequence too short to lose enough tokens is emptied.
    """
    total = len_a + (len_b or 0)
    to_remove = total - max_length
    if to_remove <= 0:
        return len_a, len_b
    if strategy == "only_first" or (strategy == "longest_first" and len_b is None):
        return max(len_a - to_remove, 0), len_b
    if strategy == "longest_first":
        first_remove = min(abs(len_b - len_a), to_remove)
        second_remove = to_remove - first_remove
        if len_a > len_b:
            remove_a = first_remove + second_remove // 2
            remove_b = second_remove - second_remove // 2
        else:
            remove_a = second_remove // 2
            remove_b = first_remove + second_remove - second_remove // 2
        return max(len_a - remove_a, 0), max(len_b - remove_b, 0)
    if strategy == "only_second":
        return (len_a, None) if len_b is None else (len_a, max(len_b - to_remove, 0))
    raise ValueError(f"unknown truncation strategy {strategy!r}")


class FlaubertTokenizer(BaseTokenizer):
    """FlauBERT's Moses + BPE tokenizer; tokens, ids and decoding equal transformers' `FlaubertTokenizer`.

    `vocab_file` / `merges_file` are paths or the files' bytes. Special tokens may be strings or `AddedToken`s.
    """

    model_input_names = ("input_ids", "attention_mask")
    end_of_word_suffix = END_OF_WORD  # ends the last BPE piece of every word (the name of tokenizers' BPE option)
    _truncated_lengths = staticmethod(python_truncated_lengths)

    def __init__(
        self,
        vocab_file: str | os.PathLike | bytes,
        merges_file: str | os.PathLike | bytes,
        do_lowercase: bool = False,
        unk_token: str | AddedToken = "<unk>",
        bos_token: str | AddedToken = "<s>",
        sep_token: str | AddedToken = "</s>",
        pad_token: str | AddedToken = "<pad>",
        cls_token: str | AddedToken = "</s>",
        mask_token: str | AddedToken = "<special1>",
        additional_special_tokens: list[str | AddedToken] | tuple = DEFAULT_ADDITIONAL_SPECIAL_TOKENS,
        lang2id: dict[str, int] | None = None,
        id2lang: dict[int, str] | None = None,
        eos_token: str | AddedToken | None = None,
        model_max_length: int = VERY_LARGE_INTEGER,
        split_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
    ):
        vocab_text, vocab_where = _read_text(vocab_file, "vocab.json")
        merges_text, _ = _read_text(merges_file, "merges.txt")
        try:
            vocab = json.loads(vocab_text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{vocab_where} is not valid JSON: {error}") from None
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise ValueError(f"{vocab_where} must map token strings to integer ids")
        if lang2id is not None and id2lang is not None and len(lang2id) != len(id2lang):
            raise ValueError(f"lang2id has {len(lang2id)} languages but id2lang has {len(id2lang)}")
        if lang2id is not None and LANGUAGE not in lang2id:
            logger.warning("lang2id %s has no %r, the language FlauBERT's tokenizer runs Moses for", lang2id, LANGUAGE)

        special = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "unk_token": unk_token,
            "sep_token": sep_token,
            "pad_token": pad_token,
            "cls_token": cls_token,
            "mask_token": mask_token,
        }
        special = {name: None if value is None else AddedToken.coerce(value) for name, value in special.items()}
        super().__init__(
            special, model_max_length, split_special_tokens, clean_up_tokenization_spaces, padding_side, truncation_side
        )
        self._additional = [AddedToken.coerce(token) for token in additional_special_tokens or ()]
        self.do_lowercase = bool(do_lowercase)
        self.lang2id = lang2id
        self.id2lang = id2lang
        self._vocab_bytes = vocab_text.encode("utf-8")
        self._merges_bytes = merges_text.encode("utf-8")

        self._vocab: dict[str, int] = vocab
        self._id_to_piece = {token_id: token for token, token_id in vocab.items()}
        # Special tokens missing from vocab.json get the next ids, in the reference's order.
        self._added: dict[str, int] = {}
        next_id = len(vocab)
        for content in self.all_special_tokens:
            if content in vocab:
                self._added[content] = vocab[content]
            else:
                self._added[content] = next_id
                next_id += 1
        self._id_to_added = {token_id: content for content, token_id in self._added.items()}
        self._unk_id = self._lookup(self.unk_token) if self.unk_token is not None else None
        self._splitter = AddedTokenSplitter(
            (self._token_object(content), token_id) for content, token_id in self._added.items()
        )

        self._moses = MosesPreTokenizer(LANGUAGE)
        self._bpe = BytePairEncoder(read_merges(merges_text))

    def _token_object(self, content: str) -> AddedToken:
        for token in list(self._special_tokens.values()) + self._additional:
            if token is not None and token.content == content:
                return token
        return AddedToken(content)

    # -- loading and saving ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_url: str | os.PathLike, **overrides: Any) -> FlaubertTokenizer:
        """Load vocab.json and merges.txt (+ tokenizer_config.json, special_tokens_map.json when present) from a
        local folder, an fsspec URL or a hub id; keyword arguments override what the files say."""
        from textbatch.storage import Folder

        folder = Folder.open(path_or_url)
        for name in (VOCAB_FILE, MERGES_FILE):
            if not folder.exists(name):
                raise FileNotFoundError(
                    f"{folder.location(name)} not found: a FlauBERT tokenizer folder needs {VOCAB_FILE} and {MERGES_FILE}"
                )
        config = folder.read_json(CONFIG_FILE) if folder.exists(CONFIG_FILE) else {}
        special_map = folder.read_json(SPECIAL_TOKENS_MAP_FILE) if folder.exists(SPECIAL_TOKENS_MAP_FILE) else {}
        kwargs = _kwargs_from_config(config, special_map, folder.location(CONFIG_FILE))
        kwargs.update(overrides)
        return cls(folder.read_bytes(VOCAB_FILE), folder.read_bytes(MERGES_FILE), **kwargs)

    def save_pretrained(self, path_or_url: str | os.PathLike) -> None:
        """Write vocab.json, merges.txt (as read) and tokenizer_config.json, which this class and transformers'
        `FlaubertTokenizer.from_pretrained` both load."""
        from textbatch.storage import Folder

        folder = Folder.open(path_or_url, create=True)
        folder.write_bytes(VOCAB_FILE, self._vocab_bytes)
        folder.write_bytes(MERGES_FILE, self._merges_bytes)
        config: dict[str, Any] = {
            name: token.content for name, token in self._special_tokens.items() if token is not None
        }
        config.update(
            additional_special_tokens=[token.content for token in self._additional],
            do_lowercase=self.do_lowercase,
            lang2id=self.lang2id,
            id2lang=self.id2lang,
            model_max_length=self.model_max_length,
            clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            split_special_tokens=self.split_special_tokens,
            tokenizer_class="FlaubertTokenizer",
        )
        folder.write_bytes(CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False).encode("utf-8"))

    # -- vocabulary ------------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Entries of vocab.json (special tokens added beyond it not counted, as in the reference)."""
        return len(self._vocab)

    def __len__(self) -> int:
        return len(self.get_vocab())

    def get_vocab(self) -> dict[str, int]:
        return {**self._vocab, **self._added}

    @property
    def do_lower_case(self) -> bool:
        """The reference's XLM-style lower-case-and-strip-accents switch: always off for FlauBERT."""
        return False

    @property
    def additional_special_tokens(self) -> list[str]:
        return [token.content for token in self._additional]

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (bos, eos, unk, sep, pad, cls, mask), then the additional ones, without repeats."""
        tokens = super().all_special_tokens
        for token in self._additional:
            if token.content not in tokens:
                tokens.append(token.content)
        return tokens

    def _lookup(self, token: str) -> int | None:
        token_id = self._added.get(token)
        return self._vocab.get(token, self._unk_id) if token_id is None else token_id

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Ids of token strings; a string that is not in the vocabulary gives the unknown id, as in the reference."""
        if isinstance(tokens, str):
            return self._lookup(tokens)
        return [self._lookup(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        """Token strings of ids; an id outside the vocabulary gives the unknown token, as in the reference."""
        if isinstance(ids, (int, np.integer)):
            return self._token_of(int(ids))
        skip = self._special_ids_for_decoding() if skip_special_tokens else frozenset()
        return [self._token_of(int(i)) for i in ids if int(i) not in skip]

    def _token_of(self, index: int) -> str:
        token = self._id_to_added.get(index)
        if token is None:
            token = self._id_to_piece.get(index, self.unk_token)
        return token

    def _special_ids_for_decoding(self) -> frozenset[int]:
        return frozenset(self.all_special_ids)

    # -- special-token framing -------------------------------------------------------------------------------------
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """`<s> A </s>` or `<s> A </s> B </s>` (bos and sep, not cls)."""
        bos, sep = self.bos_token_id, self.sep_token_id
        if token_ids_1 is None:
            return [bos, *token_ids_0, sep]
        return [bos, *token_ids_0, sep, *token_ids_1, sep]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        """1 where `build_inputs_with_special_tokens` puts a special token (or, for ids that already have them,
        where an id is any special token's, the additional ones included)."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("pass one sequence that already has its special tokens, not a pair")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None) -> list[int]:
        """0 for `<s> A </s>`, 1 for `B </s>`."""
        first = [0] * (len(token_ids_0) + 2)
        return first if token_ids_1 is None else first + [1] * (len(token_ids_1) + 1)

    # -- text -> tokens ------------------------------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, **kwargs) -> BatchEncoding:
        """As `BaseTokenizer.__call__`, with two details of the Python reference for a single text: an empty
        `text_pair` still makes a pair (`<s> A </s> </s>`), and `length` is an int."""
        if not isinstance(text, str):
            return super().__call__(text, text_pair, **kwargs)
        batch = super().__call__([text], None if text_pair is None else [text_pair], **kwargs)
        if kwargs.get("return_tensors") is not None:
            return batch
        return BatchEncoding({key: value[0] for key, value in batch.items()})

    def _pieces(self, text: str) -> list[str]:
        """BPE pieces of plain text (no special tokens in it)."""
        text = unicodedata.normalize("NFC", text.replace("``", '"').replace("''", '"'))
        if self.do_lowercase:
            text = text.lower()
        pieces: list[str] = []
        for word in self._moses.words(self._moses.normalize(text)):
            if word:
                pieces.extend(self._bpe(word))
        return pieces

    def _tokens_of(self, text: str, split_special_tokens: bool) -> list[str]:
        tokens: list[str] = []
        for start, end, token_id in self._splitter.split(text, split_special_tokens):
            if token_id is not None:
                tokens.append(self._id_to_added[token_id])
            else:
                tokens.extend(self._pieces(text[start:end]))
        return tokens

    def _encode_text(self, text: str, split_special_tokens: bool, with_offsets: bool) -> _Encoded:
        if with_offsets:
            raise NotImplementedError(
                "FlaubertTokenizer cannot return offsets: Moses rewrites the text (quotes, spaces, punctuation) "
                "before splitting it, so tokens have no exact character spans; call it without "
                "return_offsets_mapping (transformers' FlaubertTokenizer has no offsets either)"
            )
        ids: list[int] = []
        lookup = self._lookup
        for start, end, token_id in self._splitter.split(text, split_special_tokens):
            if token_id is not None:
                ids.append(token_id)
            else:
                ids.extend(lookup(piece) for piece in self._pieces(text[start:end]))
        return _Encoded(ids)

    # -- ids -> text ---------------------------------------------------------------------------------------------------
    def _decode_tokens(self, tokens: list[str]) -> str:
        """Concatenate the pieces, each end-of-word mark becoming a space."""
        return "".join(tokens).replace(END_OF_WORD, " ").strip()

    def __repr__(self) -> str:
        return (
            f"FlaubertTokenizer(vocab_size={self.vocab_size}, do_lowercase={self.do_lowercase}, "
            f"model_max_length={self.model_max_length}, special_tokens={self.special_tokens_map})"
        )


_CONFIG_KEYS = (
    "model_max_length",
    "split_special_tokens",
    "clean_up_tokenization_spaces",
    "padding_side",
    "truncation_side",
    "do_lowercase",
    "lang2id",
    "id2lang",
)


def _kwargs_from_config(config: dict, special_map: dict, where: str) -> dict[str, Any]:
    """Constructor arguments from tokenizer_config.json and special_tokens_map.json (the latter wins, as in the
    reference); `added_tokens_decoder` supplies lstrip / rstrip / single_word of the special tokens."""
    kwargs: dict[str, Any] = {key: config[key] for key in _CONFIG_KEYS if config.get(key) is not None}
    flags: dict[str, AddedToken] = {}
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if isinstance(entry, dict) and isinstance(entry.get("content"), str):
            flags[entry["content"]] = AddedToken.coerce(entry)

    def token(value: Any) -> AddedToken:
        found = AddedToken.coerce(value)
        if isinstance(value, str) and found.content in flags:
            flag = flags[found.content]
            found = AddedToken(found.content, flag.lstrip, flag.rstrip, flag.single_word, True)
        return found

    for name in BaseTokenizer.SPECIAL_TOKEN_NAMES:
        value = special_map.get(name, config.get(name))
        if value is not None:
            kwargs[name] = token(value)
    for key in ("additional_special_tokens", "extra_special_tokens"):  # transformers 5 writes the latter
        value = special_map.get(key, config.get(key))
        if isinstance(value, list):
            kwargs["additional_special_tokens"] = [token(item) for item in value]
            break
    if isinstance(kwargs.get("id2lang"), dict):  # JSON object keys are strings; the ids are ints
        kwargs["id2lang"] = {int(k) if str(k).isdigit() else k: v for k, v in kwargs["id2lang"].items()}
    ignored = sorted(set(config) - set(_CONFIG_KEYS) - set(BaseTokenizer.SPECIAL_TOKEN_NAMES))
    if ignored:
        logger.debug("%s: not used by textbatch's tokenizer: %s", where, ", ".join(ignored))
    return kwargs

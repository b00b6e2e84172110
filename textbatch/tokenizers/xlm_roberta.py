"""XLM-RoBERTa's tokenizer: a sentencepiece unigram model in fairseq's id layout, equal to transformers' ids.

The reference (transformers 5) converts `sentencepiece.bpe.model` (a unigram model, despite the name) into a Rust
tokenizer and we reproduce that pipeline, reading the model with sentencepiece's own protobuf:

  raw text --split out special tokens ("<s>", "</s>", "<mask>" ...)--> pieces of plain text, each:
    precompiled charsmap (the model's NFKC-like table, applied per grapheme cluster)
    -> split on whitespace -> prefix every word with "▁" and cut it before each "▁" (Metaspace)
    -> best segmentation of each piece under the unigram scores (Viterbi), consecutive unknowns fused
  ids: <s>=0 <pad>=1 </s>=2 <unk>=3, sentencepiece piece k>=3 -> k+1, <mask> last.

Why not simply `SentencePieceProcessor.encode`: sentencepiece adds its path scores in float32 while the reference
uses float64, so near-equal segmentations are broken differently (rare, but real on multilingual text); the
reference also looks the charsmap up per grapheme rather than by longest match, keeps "<s>"-like vocabulary
entries matchable, and splits on Unicode whitespace. The Viterbi below is the reference's, in float64, so ties
go the same way; a cache per piece keeps it fast.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from textbatch.tokenizers.added_tokens import (
    AddedToken,
    AddedTokenSplitter,
)
from textbatch.tokenizers.sentencepiece_tokenizer import (
    SentencePieceUnigramTokenizer,
    kwargs_from_tokenizer_config,
    read_vocab_file,
)
from textbatch.tokenizers.sentencepiece_unigram import (
    PIECE_CONTROL,
    PIECE_UNKNOWN,
    PIECE_USER_DEFINED,
    PrecompiledCharsmap,
    UnigramModel,
    load_unigram_proto,
)

logger = logging.getLogger(__name__)

VOCAB_FILE = "sentencepiece.bpe.model"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"



def _load_model_proto(data: bytes, where: str):
    proto = load_unigram_proto(data, where, "XLM-RoBERTa (whose 'sentencepiece.bpe.model' really is one)")
    head = [(p.piece, p.type) for p in proto.pieces[:3]]
    if len(head) < 3 or head[0][1] != PIECE_UNKNOWN or head[1][1] != PIECE_CONTROL or head[2][1] != PIECE_CONTROL:
        raise ValueError(
            f"{where} does not start with <unk>, <s>, </s> (ids 0, 1, 2; found {head}); the fairseq id layout of "
            "XLM-RoBERTa replaces exactly those three pieces"
        )
    return proto


class XLMRobertaTokenizer(SentencePieceUnigramTokenizer):
    """XLM-RoBERTa tokenizer over a sentencepiece unigram model; ids, offsets and decoding equal transformers'.

    `vocab_file` is a path to `sentencepiece.bpe.model` or its bytes. Special tokens may be strings or
    `AddedToken`s (e.g. `AddedToken("<mask>", lstrip=True)`, as XLM-R's hub config has it).
    """

    model_input_names = ("input_ids", "attention_mask")

    def __init__(
        self,
        vocab_file: str | os.PathLike | bytes,
        bos_token: str | AddedToken = "<s>",
        eos_token: str | AddedToken = "</s>",
        sep_token: str | AddedToken = "</s>",
        cls_token: str | AddedToken = "<s>",
        unk_token: str | AddedToken = "<unk>",
        pad_token: str | AddedToken = "<pad>",
        mask_token: str | AddedToken = "<mask>",
        model_max_length: int = 512,
        split_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
    ):
        self._model_bytes, where = read_vocab_file(vocab_file)
        proto = _load_model_proto(self._model_bytes, where)
        special = {
            "bos_token": AddedToken.coerce(bos_token),
            "eos_token": AddedToken.coerce(eos_token),
            "unk_token": AddedToken.coerce(unk_token),
            "sep_token": AddedToken.coerce(sep_token),
            "pad_token": AddedToken.coerce(pad_token),
            "cls_token": AddedToken.coerce(cls_token),
            "mask_token": AddedToken.coerce(mask_token),
        }
        super().__init__(
            special, model_max_length, split_special_tokens, clean_up_tokenization_spaces, padding_side, truncation_side
        )

        names = {name: token.content for name, token in special.items()}
        vocab = [(names["bos_token"], 0.0), (names["pad_token"], 0.0), (names["eos_token"], 0.0)]
        vocab.append((names["unk_token"], 0.0))
        vocab += [(piece.piece, piece.score) for piece in proto.pieces[3:]]
        vocab.append((names["mask_token"], 0.0))
        self._pieces = [piece for piece, _ in vocab]
        self._unk_id = 3
        self._unigram = UnigramModel(vocab, unk_id=self._unk_id)
        self._token_to_id = self._unigram.piece_ids  # shared, not copied
        charsmap = proto.normalizer_spec.precompiled_charsmap
        self._normalizer = PrecompiledCharsmap(charsmap) if charsmap else None
        for name, content in names.items():
            if content not in self._token_to_id:
                raise ValueError(f"{name}={content!r} is not in the vocabulary (bos, pad, eos, unk, mask define it)")
        self._bos_id = self._token_to_id[names["bos_token"]]
        self._eos_id = self._token_to_id[names["eos_token"]]

        # Tokens matched in raw text: our special tokens, plus the model's own control (special) and user-defined
        # (ordinary) pieces, as the reference registers them.
        self._added_tokens: list[tuple[AddedToken, int]] = []
        seen: set[str] = set()
        for name in self.SPECIAL_TOKEN_NAMES:
            token = special[name]
            if token.content not in seen:
                seen.add(token.content)
                flags = (token.lstrip, token.rstrip, token.single_word)
                self._added_tokens.append((AddedToken(token.content, *flags), self._token_to_id[token.content]))
        for piece in proto.pieces:
            if piece.type in (PIECE_CONTROL, PIECE_USER_DEFINED) and piece.piece not in seen:
                if piece.piece in self._token_to_id:
                    seen.add(piece.piece)
                    token = AddedToken(piece.piece, special=piece.type == PIECE_CONTROL)
                    self._added_tokens.append((token, self._token_to_id[piece.piece]))
        self._splitter = AddedTokenSplitter(self._added_tokens)
        self._special_decode_ids = frozenset(i for token, i in self._added_tokens if token.special)

    # -- loading and saving ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_url: str | os.PathLike, **overrides: Any) -> XLMRobertaTokenizer:
        """Load `sentencepiece.bpe.model` (+ `tokenizer_config.json`, `special_tokens_map.json` when present) from a
        local folder, an fsspec URL or a hub id; keyword arguments override what the files say."""
        from textbatch.storage import Folder

        folder = Folder.open(path_or_url)
        if not folder.exists(VOCAB_FILE):
            raise FileNotFoundError(
                f"{folder.location(VOCAB_FILE)} not found: an XLM-RoBERTa tokenizer folder needs its sentencepiece "
                "model under that name"
            )
        model_bytes = folder.read_bytes(VOCAB_FILE)
        config = folder.read_json(CONFIG_FILE) if folder.exists(CONFIG_FILE) else {}
        special_map = folder.read_json(SPECIAL_TOKENS_MAP_FILE) if folder.exists(SPECIAL_TOKENS_MAP_FILE) else {}
        kwargs = kwargs_from_tokenizer_config(config, special_map, folder.location(CONFIG_FILE))
        kwargs.update(overrides)
        return cls(model_bytes, **kwargs)

    def save_pretrained(self, path_or_url: str | os.PathLike) -> None:
        """Write `sentencepiece.bpe.model`, `tokenizer_config.json` and `special_tokens_map.json`, which this class
        and transformers' `XLMRobertaTokenizer.from_pretrained` both load."""
        import json

        from textbatch.storage import Folder

        folder = Folder.open(path_or_url, create=True)
        folder.write_bytes(VOCAB_FILE, self._model_bytes)
        token_dicts = {}
        for name, token in self._special_tokens.items():
            token_dicts[name] = {
                "content": token.content,
                "lstrip": token.lstrip,
                "normalized": False,
                "rstrip": token.rstrip,
                "single_word": token.single_word,
            }
        decoder = {}
        for token, token_id in sorted(self._added_tokens, key=lambda item: item[1]):
            decoder[str(token_id)] = {
                "content": token.content,
                "lstrip": token.lstrip,
                "normalized": False,
                "rstrip": token.rstrip,
                "single_word": token.single_word,
                "special": token.special,
            }
        config = {
            "added_tokens_decoder": decoder,
            **{name: token.content for name, token in self._special_tokens.items()},
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self.split_special_tokens,
            "tokenizer_class": "XLMRobertaTokenizer",
        }
        folder.write_bytes(CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False).encode("utf-8"))
        folder.write_bytes(
            SPECIAL_TOKENS_MAP_FILE, json.dumps(token_dicts, indent=2, ensure_ascii=False).encode("utf-8")
        )

    # -- special-token framing -------------------------------------------------------------------------------------
    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 4 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """`<s> A </s>` or `<s> A </s></s> B </s>`."""
        if token_ids_1 is None:
            return [self._bos_id, *token_ids_0, self._eos_id]
        return [self._bos_id, *token_ids_0, self._eos_id, self._eos_id, *token_ids_1, self._eos_id]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        """1 where `build_inputs_with_special_tokens` puts a special token (or, for ids that already have them,
        where an id is a special token's)."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("pass one sequence that already has its special tokens, not a pair")
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1, 1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None) -> list[int]:
        """All zeros: XLM-RoBERTa has no token types."""
        return [0] * (len(token_ids_0) + 2 + (0 if token_ids_1 is None else len(token_ids_1) + 2))

    def __repr__(self) -> str:
        return (
            f"XLMRobertaTokenizer(vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
            f"special_tokens={self.special_tokens_map})"
        )

"""Tiny sentencepiece models for tests, built on the spot (no network, no hub).

`build_xlmr_tokenizer_folder(folder)` trains a unigram model (a couple of thousand pieces) on
`tests/data/multilingual.txt` and writes it as an XLM-RoBERTa tokenizer folder that both textbatch and transformers
load. Other tests (operators, pipelines) can call it on their own `tmp_path`; training takes a fraction of a second.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

MULTILINGUAL_TXT = Path(__file__).resolve().parents[1] / "data" / "multilingual.txt"

# The hub's xlm-roberta-base config has "<mask>" swallow the whitespace on its left; the tests use both layouts.
HUB_LIKE_CONFIG = {
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": True,
    "cls_token": "<s>",
    "eos_token": "</s>",
    "mask_token": "<mask>",
    "model_max_length": 512,
    "pad_token": "<pad>",
    "sep_token": "</s>",
    "tokenizer_class": "XLMRobertaTokenizer",
    "unk_token": "<unk>",
}


def read_multilingual_lines() -> list[str]:
    """The test corpus, one text per line; split on "\\n" only, so U+2028, U+0085, "\\r" stay inside lines."""
    text = MULTILINGUAL_TXT.read_bytes().decode("utf-8")
    return text.split("\n")[:-1]  # the file ends with a newline


def train_unigram_model(lines: list[str], vocab_size: int = 2500) -> bytes:
    """A unigram sentencepiece model with XLM-R's layout (<unk>=0, <s>=1, </s>=2) and the nmt_nfkc charsmap."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for line in lines if line.strip()]),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces than asked for
        character_coverage=0.9995,  # leaves the rarest characters unknown, so <unk> gets tested too
        num_threads=1,
        seed_sentencepiece_size=100_000,
        minloglevel=2,
    )
    return model.getvalue()


def build_xlmr_tokenizer_folder(folder: str | Path, hub_like_config: bool = False, vocab_size: int = 2500) -> Path:
    """Write `sentencepiece.bpe.model` (+ `tokenizer_config.json` with model_max_length 512) into `folder`.

    With `hub_like_config`, the config also carries `added_tokens_decoder` with "<mask>" lstrip=True and
    clean_up_tokenization_spaces=True, like the xlm-roberta-base files on the hub.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_bytes = train_unigram_model(read_multilingual_lines(), vocab_size)
    (folder / "sentencepiece.bpe.model").write_bytes(model_bytes)
    config = {"model_max_length": 512}
    if hub_like_config:
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model_bytes)
        mask_id = len(proto.pieces) + 1
        plain = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
        config = dict(HUB_LIKE_CONFIG)
        config["added_tokens_decoder"] = {
            "0": {"content": "<s>", **plain},
            "1": {"content": "<pad>", **plain},
            "2": {"content": "</s>", **plain},
            "3": {"content": "<unk>", **plain},
            str(mask_id): {"content": "<mask>", **plain, "lstrip": True},
        }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


def build_tie_model_folder(folder: str | Path) -> Path:
    """A hand-made unigram model where two segmentations of "ab" tie in float32 but not in float64.

    Paths for "▁ab": "▁" + "ab" = -0.5 + -0.5 = -1.0 exactly, and "▁a" + "b" = -(1 - 2**-24) - 0.75 * 2**-24
    = -1 + 2**-26, which is better in float64 (transformers) but rounds to -1.0 in float32 (sentencepiece), where
    the path found first ("▁" + "ab") is kept.
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.trainer_spec.model_type = 1  # unigram
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = 0, 1, 2
    proto.trainer_spec.pad_id = -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    proto.normalizer_spec.escape_whitespaces = True
    near_one = float(np.float32(-(1 - 2**-24)))
    tiny = float(np.float32(-0.75 * 2**-24))
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [("\u2581", -0.5, 1), ("ab", -0.5, 1), ("\u2581a", near_one, 1), ("b", tiny, 1), ("a", -20.0, 1)]
    for text, score, kind in pieces:
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = text, score, kind
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sentencepiece.bpe.model").write_bytes(proto.SerializeToString())
    return folder

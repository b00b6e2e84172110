"""A small T5 sentencepiece model trained on the spot with T5's settings, and the folders the T5 tests load.

T5's `spiece.model` is a unigram model with <pad>=0, </s>=1, <unk>=2 and no <s> (bos_id=-1), nmt_nfkc normalisation.
`build_t5_tokenizer_folder` writes one as a tokenizer folder that textbatch and transformers both load: bare
(`spiece.model` only) or hub-like (plus tokenizer_config.json / special_tokens_map.json listing the 100 sentinels and
model_max_length 512, as google/flan-t5-* ship them).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

from tests.tokenizers.spm_fixture import read_multilingual_lines

SENTINELS = [f"<extra_id_{i}>" for i in range(100)]


def train_t5_unigram_model(lines: list[str], vocab_size: int = 2000) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for line in lines if line.strip()]),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=0.9995,  # the rarest characters stay unknown, so <unk> is exercised
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        seed_sentencepiece_size=100_000,
        minloglevel=2,
    )
    return model.getvalue()


def build_t5_tokenizer_folder(folder: str | Path, hub_like_config: bool = False, vocab_size: int = 2000) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(train_t5_unigram_model(read_multilingual_lines(), vocab_size))
    if hub_like_config:
        named = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
        config = {
            **named,
            "additional_special_tokens": SENTINELS,
            "extra_ids": 100,
            "model_max_length": 512,
            "tokenizer_class": "T5Tokenizer",
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        (folder / "special_tokens_map.json").write_text(
            json.dumps({**named, "additional_special_tokens": SENTINELS}, indent=2)
        )
    return folder


def load_reference_tokenizer(folder: str | Path):
    from transformers import T5Tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return T5Tokenizer.from_pretrained(str(folder))


def test_the_trained_model_has_t5_layout(tmp_path):
    from sentencepiece import sentencepiece_model_pb2

    folder = build_t5_tokenizer_folder(tmp_path)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((folder / "spiece.model").read_bytes())
    assert [piece.piece for piece in proto.pieces[:3]] == ["<pad>", "</s>", "<unk>"]
    assert proto.trainer_spec.bos_id == -1 and proto.trainer_spec.model_type == 1
    assert proto.normalizer_spec.precompiled_charsmap  # nmt_nfkc
    assert len(proto.pieces) > 1000

"""What the tiny-checkpoint scripts share: the sample corpus' texts, and a sentencepiece unigram model trained on them
reproducibly (one thread, no shuffling), each family with its own special-token ids."""

from __future__ import annotations

import io
import pathlib

import pyarrow.parquet as pq


def corpus_texts(corpus: pathlib.Path) -> list[str]:
    """The non-empty texts of the corpus' Parquet files, in file order."""
    texts = []
    for path in sorted(corpus.glob("*.parquet")):
        texts += [text for text in pq.read_table(path, columns=["text"]).column("text").to_pylist() if text]
    if not texts:
        raise FileNotFoundError(f"no texts under {corpus}; run scripts/make_sample_corpus.py first")
    return texts


def train_sentencepiece(texts: list[str], vocab_size: int, *, unk_id: int, bos_id: int, eos_id: int, pad_id: int) -> bytes:
    """A serialized unigram model of up to `vocab_size` pieces (-1 leaves a special token out)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([line for text in texts for line in text.splitlines() if line.strip()]),
        model_writer=model,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # the corpus is small: take what it supports, up to vocab_size
        character_coverage=1.0,  # every character of the sample corpus gets a piece
        normalization_rule_name="nmt_nfkc",  # sentencepiece's default, as XLM-R and T5 were trained
        unk_id=unk_id,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        num_threads=1,  # reproducible
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()

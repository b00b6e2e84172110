"""Tiny FlauBERT checkpoint folders for the job tests: the test BPE tokenizer of tests/tokenizers/flaubert_fixture.py
and a transformers model of any head (emb 24, 2 layers, 4 heads, 64 positions), saved by transformers, seeded.

    folder = build_flaubert_checkpoint(tmp_path / "ner", transformers.FlaubertForTokenClassification, labels=NER)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from tests.tokenizers.flaubert_fixture import build_flaubert_tokenizer_folder

POSITIONS = 64


def build_flaubert_checkpoint(
    folder: Path, model_class: type, *, labels: tuple[str, ...] | None = None, seed: int = 3, scale_head: str = "",
    **config,
) -> Path:
    """Write the tokenizer and a random `model_class` into `folder` and return it. `scale_head` names a head weight
    (e.g. "classifier.weight") drawn from N(0, 1) so that the labels vary; `config` overrides FlaubertConfig."""
    build_flaubert_tokenizer_folder(folder, model_max_length=POSITIONS)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    if labels is not None:
        config.update(id2label=dict(enumerate(labels)), label2id={label: index for index, label in enumerate(labels)})
    torch.manual_seed(seed)
    settings = transformers.FlaubertConfig(
        vocab_size=len(vocab), emb_dim=24, n_layers=2, n_heads=4, max_position_embeddings=POSITIONS, **config
    )
    model = model_class(settings).eval()
    if scale_head:
        with torch.no_grad():
            model.get_parameter(scale_head).normal_(0.0, 1.0)
    model.save_pretrained(folder)
    return folder

"""Make the bundled tiny XLM-RoBERTa: textbatch/assets/xlm-roberta-tiny/ (tokenizer + seeded random weights).

1. Trains a sentencepiece unigram model on the bundled sample corpus (run make_sample_corpus.py first), with
   XLM-R's piece layout (<unk>=0, <s>=1, </s>=2), saved as an XLM-R tokenizer folder.
2. Builds an XLM-R of the same vocabulary with random weights from seed 0 (hidden 64, 2 layers, 4 heads,
   intermediate 128, 514 positions so that 512 tokens fit, like xlm-roberta-base) and saves it as a Hugging Face
   checkpoint (config.json + model.safetensors) that transformers loads too.
The weights are random: the embeddings it gives are not meaningful, only reproducible. Deterministic: running the
script again writes the same files.

    python scripts/make_tiny_xlm_roberta.py [--corpus textbatch/assets/sample_corpus] [--out ...]
"""

from __future__ import annotations

import argparse
import logging
import pathlib

from sample_sentencepiece import corpus_texts, train_sentencepiece

logger = logging.getLogger("make_tiny_xlm_roberta")

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "textbatch" / "assets"
ARCHITECTURE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
CARD = """# xlm-roberta-tiny (random weights)

Made by `scripts/make_tiny_xlm_roberta.py`: a sentencepiece unigram tokenizer of {pieces} pieces trained on
`../sample_corpus`, and an XLM-RoBERTa encoder (hidden 64, 2 layers, 4 heads, intermediate 128, 512 usable
positions) with random weights from seed 0. It exists to run the embedding job without downloads; its embeddings
carry no meaning.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=pathlib.Path, default=ASSETS / "sample_corpus")
    parser.add_argument("--out", type=pathlib.Path, default=ASSETS / "xlm-roberta-tiny")
    parser.add_argument("--vocab-size", type=int, default=4000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from textbatch.models import FlaxXLMRobertaModel, XLMRobertaConfig
    from textbatch.tokenizers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer(train_sentencepiece(corpus_texts(args.corpus), args.vocab_size, unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), **ARCHITECTURE)
    FlaxXLMRobertaModel(config, seed=0).save_pretrained(args.out)
    (args.out / "README.md").write_text(CARD.format(pieces=len(tokenizer)))
    size = sum(path.stat().st_size for path in args.out.iterdir())
    logger.info("wrote %s: vocabulary %d, %.2f MB", args.out, len(tokenizer), size / 1e6)


if __name__ == "__main__":
    main()

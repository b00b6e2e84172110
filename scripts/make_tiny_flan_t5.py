"""Make the bundled tiny FLAN-T5-style checkpoint: textbatch/assets/flan-t5-tiny/ (spiece.model + random weights).

1. Trains a sentencepiece unigram model on the bundled sample corpus (run make_sample_corpus.py first) with T5's
   settings: <pad>=0, </s>=1, <unk>=2, no <s>, nmt_nfkc normalisation. It is saved as a T5 tokenizer folder (the
   100 <extra_id_N> sentinels come after the pieces, as in every T5 vocabulary).
2. Builds a T5 v1.1 / FLAN-T5 layout of that vocabulary (gated-gelu feed-forward, untied lm_head, relative position
   buckets 32 / max distance 128) at toy sizes (d_model 32, 2 + 2 layers, 4 heads of 8, d_ff 64) with random weights
   from seed 0, and saves it as a Hugging Face checkpoint (config.json, generation_config.json, model.safetensors)
   that transformers' T5ForConditionalGeneration loads too.
The weights are random: what it generates is reproducible nonsense. Deterministic: running the script again writes
the same files.

    python scripts/make_tiny_flan_t5.py [--corpus textbatch/assets/sample_corpus] [--out ...]
"""

from __future__ import annotations

import argparse
import logging
import pathlib

from sample_sentencepiece import corpus_texts, train_sentencepiece

logger = logging.getLogger("make_tiny_flan_t5")

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "textbatch" / "assets"
ARCHITECTURE = dict(
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)
CARD = """# flan-t5-tiny (random weights)

Made by `scripts/make_tiny_flan_t5.py`: a sentencepiece unigram tokenizer of {pieces} pieces (+ 100 sentinels)
trained with T5's settings on `../sample_corpus`, and a T5 v1.1 / FLAN-T5 layout (gated-gelu, untied lm_head,
d_model 32, 2 encoder + 2 decoder layers, 4 heads, d_ff 64) with random weights from seed 0. It exists to run the
generation job without downloads; what it generates carries no meaning.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=pathlib.Path, default=ASSETS / "sample_corpus")
    parser.add_argument("--out", type=pathlib.Path, default=ASSETS / "flan-t5-tiny")
    parser.add_argument("--vocab-size", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from textbatch.models import FlaxT5ForConditionalGeneration, T5Config
    from textbatch.tokenizers import T5Tokenizer

    tokenizer = T5Tokenizer(train_sentencepiece(corpus_texts(args.corpus), args.vocab_size, pad_id=0, eos_id=1, unk_id=2, bos_id=-1))
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    # The vocabulary is exactly the tokenizer's (FLAN-T5 pads to a multiple of 128; with random weights the padding
    # ids would be generated and could not be decoded).
    config = T5Config(vocab_size=len(tokenizer), **ARCHITECTURE)
    FlaxT5ForConditionalGeneration(config, seed=0).save_pretrained(args.out)
    (args.out / "README.md").write_text(CARD.format(pieces=len(tokenizer) - tokenizer.extra_ids))
    size = sum(path.stat().st_size for path in args.out.iterdir())
    logger.info("wrote %s: vocabulary %d, %.2f MB", args.out, len(tokenizer), size / 1e6)


if __name__ == "__main__":
    main()

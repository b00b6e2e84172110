"""Make the bundled tiny token- and sequence-classification checkpoints of the NER and classification demos:
textbatch/assets/xlm-roberta-tiny-ner/ and textbatch/assets/xlm-roberta-tiny-classifier/.

Both reuse the tokenizer of textbatch/assets/xlm-roberta-tiny/ (its files are copied) and hold an XLM-RoBERTa of odd,
tiny sizes (hidden 24, 2 layers, 4 heads, intermediate 37, 512 usable positions) with random weights from a fixed
seed, built and saved by transformers (PyTorch), so that transformers loads them as its own.

With the usual small initialisation (std 0.02) a random encoder gives nearly the same states to every text, and a
random head then predicts one label almost everywhere. So the weights are scaled up (initializer_range 0.4), and each
head is calibrated on the sample corpus: its logits are centred and scaled to a spread of about two, so that labels
vary from token to token and from text to text; the NER head's "O" bias is then raised until about three tokens in
four are "O", so that entities are sparse, as in real text. The predictions are reproducible, not meaningful.

    python scripts/make_tiny_ner_and_classifier.py [--out-ner ...] [--out-classifier ...]

Needs torch and transformers (the `test` extra). Deterministic: running it again writes the same files.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import shutil

logger = logging.getLogger("make_tiny_ner_and_classifier")

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "textbatch" / "assets"
TOKENIZER_FOLDER = ASSETS / "xlm-roberta-tiny"
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")
ARCHITECTURE = dict(
    hidden_size=24,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
CLASSIFIER_LABELS = ("negative", "neutral", "positive")
NER_SEED = 11
CLASSIFIER_SEED = 12
INITIALIZER_RANGE = 0.4  # large enough that a text's states (and its <s> state) depend on its content
LOGIT_SPREAD = 2.0  # standard deviation of each head's logits over the sample corpus after calibration
O_SHARE = 0.75  # the share of sample-corpus tokens the NER head tags "O"
CALIBRATION_TOKENS = 128  # per text, when calibrating
SAMPLE_CORPUS = ASSETS / "sample_corpus"

CARD = """# {name} (random weights)

Made by `scripts/make_tiny_ner_and_classifier.py` with transformers: the tokenizer of `../xlm-roberta-tiny`, and an
XLM-RoBERTa {head} (hidden 24, 2 layers, 4 heads, intermediate 37, 512 usable positions) with random weights
from seed {seed}, scaled up and calibrated on the sample corpus so that predictions vary. Labels: {labels}.
It exists to run the {job} job without downloads and to test it against transformers' pipeline; its predictions are
reproducible, not meaningful.
"""


def copy_tokenizer(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_FOLDER / name, out / name)


def config_for(labels: tuple[str, ...], vocab_size: int, **extra):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=vocab_size,
        id2label=dict(enumerate(labels)),
        initializer_range=INITIALIZER_RANGE,
        label2id={label: index for index, label in enumerate(labels)},
        **ARCHITECTURE,
        **extra,
    )


def vocab_size() -> int:
    from textbatch.tokenizers import XLMRobertaTokenizer

    return len(XLMRobertaTokenizer.from_pretrained(TOKENIZER_FOLDER))


def sample_batch(tokenizer_folder: pathlib.Path):
    """The sample corpus's texts (cut to CALIBRATION_TOKENS), tokenized by transformers, as one padded batch."""
    import pyarrow.parquet as pq
    from transformers import XLMRobertaTokenizer

    texts = [text for text in pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist() if text]
    tokenizer = XLMRobertaTokenizer.from_pretrained(tokenizer_folder)
    return tokenizer(texts, padding=True, truncation=True, max_length=CALIBRATION_TOKENS, return_tensors="pt")


def calibrate(linear, features) -> None:
    """Centre and scale `linear`'s outputs on `features` [n, in]: mean 0, standard deviation LOGIT_SPREAD."""
    import torch

    with torch.no_grad():
        logits = features @ linear.weight.T  # [n, labels]
        scale = LOGIT_SPREAD / logits.std()
        linear.weight.mul_(scale)
        linear.bias.copy_(-logits.mean(dim=0) * scale)


def raise_o_bias(linear, features, index: int) -> None:
    """Raise the "O" bias (bisection) until about O_SHARE of the rows of `features` are tagged "O"."""
    import torch

    with torch.no_grad():
        base = features @ linear.weight.T + linear.bias
        low, high = 0.0, 10.0 * LOGIT_SPREAD
        for _ in range(40):
            boost = (low + high) / 2
            shifted = base.clone()
            shifted[:, index] += boost
            share = (shifted.argmax(dim=-1) == index).float().mean().item()
            low, high = (boost, high) if share < O_SHARE else (low, boost)
        linear.bias[index] += high


def make_ner(out: pathlib.Path, vocab: int) -> None:
    import torch
    from transformers import XLMRobertaForTokenClassification

    torch.manual_seed(NER_SEED)
    model = XLMRobertaForTokenClassification(config_for(NER_LABELS, vocab)).eval()
    copy_tokenizer(out)
    batch = sample_batch(out)
    with torch.no_grad():
        hidden = model.roberta(**batch).last_hidden_state  # [texts, len, hidden]
    tokens = hidden[batch["attention_mask"].bool()]  # [real tokens, hidden]
    calibrate(model.classifier, tokens)
    raise_o_bias(model.classifier, tokens, NER_LABELS.index("O"))
    model.save_pretrained(out)
    (out / "README.md").write_text(
        CARD.format(
            name=out.name, head="token classifier", seed=NER_SEED, labels=", ".join(NER_LABELS), job="NER (label)"
        )
    )


def make_classifier(out: pathlib.Path, vocab: int) -> None:
    import torch
    from transformers import XLMRobertaForSequenceClassification

    torch.manual_seed(CLASSIFIER_SEED)
    config = config_for(CLASSIFIER_LABELS, vocab, problem_type="single_label_classification")
    model = XLMRobertaForSequenceClassification(config).eval()
    copy_tokenizer(out)
    batch = sample_batch(out)
    with torch.no_grad():
        first = model.roberta(**batch).last_hidden_state[:, 0]  # [texts, hidden]: the <s> states
        features = torch.tanh(model.classifier.dense(first))  # what out_proj sees
    calibrate(model.classifier.out_proj, features)
    model.save_pretrained(out)
    (out / "README.md").write_text(
        CARD.format(
            name=out.name,
            head="sequence classifier",
            seed=CLASSIFIER_SEED,
            labels=", ".join(CLASSIFIER_LABELS),
            job="classification",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-ner", type=pathlib.Path, default=ASSETS / "xlm-roberta-tiny-ner")
    parser.add_argument("--out-classifier", type=pathlib.Path, default=ASSETS / "xlm-roberta-tiny-classifier")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    vocab = vocab_size()
    make_ner(args.out_ner, vocab)
    make_classifier(args.out_classifier, vocab)
    for out in (args.out_ner, args.out_classifier):
        size = sum(path.stat().st_size for path in out.iterdir())
        logger.info("wrote %s: %.2f MB", out, size / 1e6)


if __name__ == "__main__":
    main()

"""Embedding benchmark: this project's job end to end vs transformers (PyTorch), same weights, same texts, one run.

Protocol (../shared/ARCHITECTURE.md): xlm-roberta-base sizes with seeded random weights, N rows whose token lengths
are log-normal (median 48, sigma 0.8) clipped to 8..512; tokens/s counts real (unpadded) tokens.

    python bench/embed.py                    # 512 rows, fp32, transformers unsorted and length-sorted
    python bench/embed.py --dtype bfloat16   # our job in bf16 (transformers stays fp32; add --torch-bf16 for autocast)

The textbatch figure is the whole job (read Parquet, tokenize actors, model actor, pool, write Parquet) including
JAX compilation, after Ray has started; the transformers figures are the bare model call plus mean pooling over
pre-tokenised batches of 32, so they leave out everything but the model. CTranslate2 (fp32 and int8, through its own
converter from the same weights) runs too when it is installed (`pip install ctranslate2`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")
BASE_SIZES = dict(
    vocab_size=250002,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
)


def make_checkpoint(folder: Path) -> Path:
    """xlm-roberta-base sizes, seeded random weights, with the bundled tokenizer beside them."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.XLMRobertaModel(transformers.XLMRobertaConfig(**BASE_SIZES))
    model.save_pretrained(folder)
    tokenizer_source = ROOT / "textbatch" / "assets" / "xlm-roberta-tiny"
    for name in TOKENIZER_FILES:
        if (tokenizer_source / name).exists():
            shutil.copy(tokenizer_source / name, folder / name)
    return folder


def make_corpus(folder: Path, rows: int, tokenizer, seed: int = 0) -> np.ndarray:
    """Writes `rows` texts in 4 Parquet files; returns their token lengths (with <s> and </s>).

    Texts are runs of words from the bundled sample corpus. Sentencepiece pieces never cross a space, so a text's
    token count is the sum of its words' counts, which lets each text be cut to its drawn length word by word.
    """
    sample = pq.read_table(ROOT / "textbatch" / "assets" / "sample_corpus").column("text").to_pylist()
    words = [w for text in sample if text for w in text.split()]
    counts = [len(ids) for ids in tokenizer(words, add_special_tokens=False)["input_ids"]]
    rng = np.random.default_rng(seed)
    targets = np.clip(np.round(rng.lognormal(np.log(48), 0.8, size=rows)), 8, 512).astype(int)
    texts, lengths = [], []
    for target in targets:
        chosen, total = [], 2  # <s> and </s>
        start = int(rng.integers(len(words)))
        for offset in range(len(words)):
            i = (start + offset) % len(words)
            if total + counts[i] > target:
                break
            chosen.append(words[i])
            total += counts[i]
        texts.append(" ".join(chosen))
        lengths.append(total)
    folder.mkdir(parents=True, exist_ok=True)
    for part, index in enumerate(np.array_split(np.arange(rows), 4)):
        table = pa.table({"id": [f"row-{i}" for i in index], "text": [texts[i] for i in index]})
        pq.write_table(table, folder / f"part-{part}.parquet")
    return np.asarray(lengths)


def run_textbatch(corpus: Path, checkpoint: Path, output: Path, dtype: str, batch_tokens: int) -> dict:
    import ray

    from textbatch.jobs.embed import EmbedOptions, run_embed

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    summary = run_embed(
        EmbedOptions(
            input=str(corpus), output=str(output), model=str(checkpoint), dtype=dtype, batch_tokens=batch_tokens
        )
    )
    ray.shutdown()
    return {
        "tokens_per_second": summary.tokens_per_second,
        "padding_efficiency": summary.padding_efficiency,
        "seconds": summary.wall_seconds,
    }


def time_batches(forward, encoded: list[list[int]], sort: bool, batch_size: int = 32) -> dict:
    """Runs `forward` (ids of one batch -> pooled embeddings) over batches of 32, in corpus or length order."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i])) if sort else list(range(len(encoded)))
    real = padded = 0
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start : start + batch_size]]
        forward(batch)
        real += sum(map(len, batch))
        padded += len(batch) * max(map(len, batch))
    seconds = time.perf_counter() - started
    return {"tokens_per_second": real / seconds, "padding_efficiency": real / padded, "seconds": seconds}


def mean_pool(hidden: np.ndarray, lengths: list[int]) -> np.ndarray:
    mask = (np.arange(hidden.shape[1])[None, :] < np.asarray(lengths)[:, None])[..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


def transformers_forward(checkpoint: Path, bf16: bool):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    model = transformers.XLMRobertaModel.from_pretrained(checkpoint, add_pooling_layer=False).eval()

    def forward(batch: list[list[int]]):
        width = max(map(len, batch))
        ids = torch.tensor([row + [1] * (width - len(row)) for row in batch])
        mask = (ids != 1).long()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)

    return forward


@contextlib.contextmanager
def _vocabulary_padded_to_model_size():
    """The bench pairs the bundled 1,512-piece tokenizer with xlm-r-base's 250,002-row embedding; CTranslate2 insists
    the two sizes agree, so the vocabulary is padded with placeholders (ids are passed directly, never strings)."""
    from ctranslate2.converters import transformers as ct2_transformers

    loader = ct2_transformers.XLMRobertaLoader
    original = loader.get_vocabulary

    def padded(self, model, tokenizer):
        tokens = original(self, model, tokenizer)
        return tokens + [f"<unused{i}>" for i in range(len(tokens), model.config.vocab_size)]

    loader.get_vocabulary = padded
    try:
        yield
    finally:
        loader.get_vocabulary = original


def ctranslate2_forward(checkpoint: Path, workdir: Path, quantization: str):
    """CTranslate2's own converter on the same weights; None when ctranslate2 is not installed."""
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        return None
    converted = workdir / f"ct2-{quantization}"
    if not (converted / "model.bin").exists():
        # CTranslate2 4.8 reads config.position_embedding_type, which transformers 5 no longer writes.
        patched = workdir / "ct2-source"
        shutil.copytree(checkpoint, patched, dirs_exist_ok=True)
        config = json.loads((patched / "config.json").read_text())
        config["position_embedding_type"] = "absolute"
        (patched / "config.json").write_text(json.dumps(config))
        with _vocabulary_padded_to_model_size():
            TransformersConverter(str(patched)).convert(str(converted), quantization=quantization, force=True)
    encoder = ctranslate2.Encoder(str(converted), device="cpu", compute_type=quantization, intra_threads=os.cpu_count())

    def forward(batch: list[list[int]]):
        hidden = np.asarray(encoder.forward_batch(batch).last_hidden_state)
        return mean_pool(hidden, [len(row) for row in batch])

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--torch-bf16", action="store_true", help="run transformers under bf16 autocast")
    parser.add_argument("--workdir", default="/tmp/textbatch-bench")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    checkpoint = make_checkpoint(workdir / "xlm-roberta-base-random")
    from textbatch.tokenizers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer.from_pretrained(str(checkpoint))
    corpus = workdir / f"corpus-{args.rows}"
    shutil.rmtree(corpus, ignore_errors=True)
    lengths = make_corpus(corpus, args.rows, tokenizer)
    texts = pq.read_table(corpus).column("text").to_pylist()
    print(f"corpus: {args.rows} rows, {lengths.sum()} tokens, median length {np.median(lengths):.0f}")

    results = {}
    results[f"textbatch job ({args.dtype})"] = run_textbatch(
        corpus, checkpoint, workdir / "output", args.dtype, args.batch_tokens
    )
    encoded = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
    peers = {f"transformers {'bf16 autocast' if args.torch_bf16 else 'fp32'}": transformers_forward(
        checkpoint, args.torch_bf16)}
    for quantization in ("float32", "int8"):
        forward = ctranslate2_forward(checkpoint, workdir, quantization)
        if forward is not None:
            peers[f"CTranslate2 {quantization}"] = forward
    for name, forward in peers.items():
        results[f"{name}, batches of 32"] = time_batches(forward, encoded, sort=False)
        results[f"{name}, length-sorted 32"] = time_batches(forward, encoded, sort=True)

    ours = next(iter(results.values()))["tokens_per_second"]
    print("\n| run | real tokens/s | padding efficiency | seconds | textbatch / this |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        print(
            f"| {name} | {result['tokens_per_second']:,.0f} | {result['padding_efficiency']:.0%} | "
            f"{result['seconds']:.1f} | {ours / result['tokens_per_second']:.2f}x |"
        )


if __name__ == "__main__":
    main()

"""NER tagging and classification benchmark: this project's label and classify jobs end to end vs transformers
(PyTorch) on the same weights and texts, rows/s and tokens/s side by side.

Protocol (../shared/ARCHITECTURE.md): xlm-roberta-base sizes (hidden 768, 12 layers, 12 heads, intermediate 3072,
vocabulary 250002) with seeded random weights and a token-classification head (9 BIO labels) or a sequence
classifier (3 labels), written by transformers; N rows whose token lengths are log-normal (median 48, sigma 0.8)
clipped to 8..512; tokens/s counts real (unpadded) tokens.

    python bench/label_classify.py               # 384 rows, fp32
    python bench/label_classify.py --rows 1024 --dtype bfloat16

Per task, one after the other:
- textbatch: the whole job (read Parquet, tokenize actors, model actor, spans / labels, write Parquet) after Ray has
  started, twice: "cold" with an empty JAX compilation cache (every padded shape compiles) and "warm" with the cache
  the first run filled (a nightly rerun);
- transformers loop: tokenizer + model forward in length-sorted batches of 32 + softmax/argmax, no aggregation
  (the least a hand-written loop does);
- transformers pipeline: `pipeline("token-classification", aggregation_strategy="simple")` /
  `pipeline("text-classification")` with batch_size 32 over the texts in corpus order (what most users run).
The load average is printed before each run, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import embed as embed_bench
import numpy as np
import pyarrow.parquet as pq
from embed import BASE_SIZES, TOKENIZER_FILES

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "textbatch" / "assets" / "xlm-roberta-tiny"
NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
CLASSES = ("negative", "neutral", "positive")
BATCH = 32


def make_checkpoint(folder: Path, task: str) -> Path:
    """xlm-roberta-base sizes, seeded random weights, the head of `task`, the bundled tokenizer beside them."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    import transformers

    labels = NER_LABELS if task == "label" else CLASSES
    config = transformers.XLMRobertaConfig(
        **BASE_SIZES, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}
    )
    torch.manual_seed(0)
    head = transformers.XLMRobertaForTokenClassification if task == "label" else transformers.XLMRobertaForSequenceClassification
    head(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(TOKENIZER / name, folder / name)
    return folder


def make_corpus(folder: Path, rows: int, seed: int = 0) -> list[str]:
    """The embedding bench's corpus (log-normal token lengths, 4 Parquet files); returns its texts in row order."""
    from textbatch.tokenizers import XLMRobertaTokenizer

    embed_bench.make_corpus(folder, rows, XLMRobertaTokenizer.from_pretrained(TOKENIZER), seed)
    return pq.read_table(folder).column("text").to_pylist()


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def run_textbatch(task: str, corpus: Path, checkpoint: Path, output: Path, dtype: str, cache: str) -> dict:
    if task == "label":
        from textbatch.jobs.label import LabelOptions as Options
        from textbatch.jobs.label import run_label as run
    else:
        from textbatch.jobs.classify import ClassifyOptions as Options
        from textbatch.jobs.classify import run_classify as run
    extra = {"compilation_cache": cache} if "compilation_cache" in Options.__dataclass_fields__ else {}
    summary = run(Options(input=str(corpus), output=str(output), model=str(checkpoint), dtype=dtype, **extra))
    return {"seconds": summary.wall_seconds, "rows": summary.rows, "tokens": summary.tokens,
            "padding": summary.padding_efficiency}


def run_loop(task: str, texts: list[str], checkpoint: Path) -> dict:
    """Tokenize, forward in length-sorted batches of 32, softmax and argmax: the bare work."""
    import torch
    import transformers

    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(checkpoint)
    head = transformers.AutoModelForTokenClassification if task == "label" else transformers.AutoModelForSequenceClassification
    model = head.from_pretrained(checkpoint, dtype=torch.float32).eval()
    started = time.perf_counter()
    encoded = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
    order = np.argsort([-len(ids) for ids in encoded], kind="stable")
    tokens = 0
    with torch.inference_mode():
        for start in range(0, len(order), BATCH):
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in order[start : start + BATCH]]}, return_tensors="pt")
            scores = model(**batch).logits.softmax(-1)
            scores.argmax(-1).tolist()
            tokens += int(batch["attention_mask"].sum())
    return {"seconds": time.perf_counter() - started, "rows": len(texts), "tokens": tokens}


def run_pipeline(task: str, texts: list[str], checkpoint: Path) -> dict:
    import torch
    import transformers

    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(checkpoint)
    if task == "label":
        model = transformers.AutoModelForTokenClassification.from_pretrained(checkpoint, dtype=torch.float32)
        pipe = transformers.pipeline("token-classification", model=model, tokenizer=tokenizer,
                                     aggregation_strategy="simple")
    else:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float32)
        pipe = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(texts, batch_size=BATCH, **({} if task == "label" else {"truncation": True}))
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"])
    return {"seconds": time.perf_counter() - started, "rows": len(texts), "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=384)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--tasks", default="label,classify")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "textbatch-bench-label-classify")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    import ray

    args.work.mkdir(parents=True, exist_ok=True)
    texts = make_corpus(args.work / "corpus", args.rows)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    table = []
    for task in args.tasks.split(","):
        checkpoint = make_checkpoint(args.work / f"xlmr-base-{task}", task)
        cache = args.work / f"jax-cache-{task}"
        shutil.rmtree(cache, ignore_errors=True)
        job = (task, args.work / "corpus", checkpoint, args.work / "out", args.dtype, str(cache))
        systems = (
            ("textbatch cold", run_textbatch, job),
            ("textbatch warm", run_textbatch, job),  # the cache the cold run filled
            ("transformers loop", run_loop, (task, texts, checkpoint)),
            ("transformers pipeline", run_pipeline, (task, texts, checkpoint)),
        )
        runs = []
        for name, run, arguments in systems:
            print(f"{task}: {name} ({load()})", flush=True)
            result = run(*arguments)
            runs.append((name, result))
            print(f"  {result['rows'] / result['seconds']:.1f} rows/s, {result['tokens'] / result['seconds']:.0f} tok/s,"
                  f" {result['seconds']:.1f} s", flush=True)
        loop = next(result for name, result in runs if name == "transformers loop")
        for name, result in runs:
            ratio = (result["rows"] / result["seconds"]) / (loop["rows"] / loop["seconds"])
            table.append((task, name, result["rows"] / result["seconds"], result["tokens"] / result["seconds"],
                          ratio, result["seconds"]))
    print(f"\n{args.rows} rows, {args.dtype}, xlm-roberta-base sizes, {os.cpu_count()} CPUs\n")
    print("| job | system | rows/s | tokens/s | vs transformers loop | seconds |")
    print("|---|---|---|---|---|---|")
    for task, name, rows, tokens, ratio, seconds in table:
        print(f"| {task} | {name} | {rows:.1f} | {tokens:,.0f} | {ratio:.2f}x | {seconds:.1f} |")


if __name__ == "__main__":
    main()

"""Classify the texts (or text pairs) of a Parquet corpus with a sequence-classification checkpoint on Ray Data,
writing Parquet.

With no arguments: the bundled sample corpus, classified by the bundled tiny random-weight classifier (labels
negative, neutral, positive; its labels are reproducible nonsense), output in ./output/labels/.

    python pipelines/classify.py --input data/ --output out/ --model path/to/checkpoint --top-k 3
    python pipelines/classify.py --input pairs/ --text-column premise --text-pair-column hypothesis --model ...
    ray submit cluster.yaml pipelines/classify.py -- --input s3://bucket/texts/ --output s3://bucket/labels/ ...

Output columns: id, label, score, scores (with --top-k: the k best {label, score}, best first), n_tokens (with the
special tokens; both texts of a pair), truncated (cut to --max-length, a pair longest first; or a text cut to
--max-chars), error. Scores are those of transformers' text-classification pipeline: softmax over the labels, or
sigmoid when the checkpoint's problem_type is multi_label_classification (or it has one output), raw logits for
regression; --function overrides. A null text (or null pair) comes out with an error and no label; the other rows
are unaffected. XLM-RoBERTa and FlauBERT checkpoints work.
"""

from __future__ import annotations

import sys

from textbatch.jobs.classify import ClassifyOptions, run_classify
from textbatch.jobs.cli import (
    add_job_arguments,
    job_parser,
    options_from_args,
    prepare_driver,
    run_and_print,
)
from textbatch.operators.sequence_classify import FUNCTIONS


def parse_args(argv: list[str] | None = None) -> ClassifyOptions:
    defaults = ClassifyOptions()
    parser = job_parser("classify.py", __doc__)
    add_job_arguments(
        parser,
        defaults,
        model_help="sequence-classification checkpoint folder, URL or hub id (default: the bundled tiny classifier)",
        max_length_help="tokens per text or pair, special tokens included; longer inputs are truncated "
        "(default: all the checkpoint takes, 512 for XLM-R and FlauBERT)",
        batch_tokens_help="padded tokens per model call (default: 1024 on a CPU, 4096 on a GPU or TPU)",
    )
    parser.add_argument(
        "--text-pair-column", help="a second text column: classify each (text, pair) as one input (default: none)"
    )
    parser.add_argument("--top-k", type=int, help="also write `scores`: the k best labels with their scores")
    parser.add_argument(
        "--function",
        choices=FUNCTIONS,
        help="score function (default: softmax, or sigmoid for multi-label checkpoints, none for regression)",
    )
    return options_from_args(parser, ClassifyOptions, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    prepare_driver()
    return run_and_print("classify.py", lambda: run_classify(options))


if __name__ == "__main__":
    sys.exit(main())

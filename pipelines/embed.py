"""Embed a Parquet corpus with an XLM-RoBERTa or FlauBERT checkpoint on Ray Data, writing Parquet.

With no arguments: the bundled sample corpus, the bundled tiny checkpoint, output in ./output/embeddings/.

    python pipelines/embed.py --input data/ --output out/ --model path/to/checkpoint
    ray submit cluster.yaml pipelines/embed.py -- --input s3://bucket/texts/ --output s3://bucket/embeddings/ ...

Output columns: id, embedding (fixed-size list of float32; null when error is set), n_tokens, truncated, error.
A null text comes out with error "text is null" and no embedding; an empty text is embedded as "<s></s>".
"""

from __future__ import annotations

import argparse
import sys

from textbatch.jobs.cli import (
    add_job_arguments,
    job_parser,
    options_from_args,
    prepare_driver,
    run_and_print,
)
from textbatch.jobs.embed import EmbedOptions, run_embed


def parse_args(argv: list[str] | None = None) -> EmbedOptions:
    defaults = EmbedOptions()
    parser = job_parser("embed.py", __doc__)
    add_job_arguments(
        parser,
        defaults,
        model_help="XLM-R or FlauBERT checkpoint folder, URL or hub id (default: the bundled tiny XLM-R)",
        max_length_help="tokens per text, <s> and </s> included; longer texts are truncated "
        "(default: all the checkpoint takes, 512 for XLM-R and FlauBERT)",
        batch_tokens_help="padded tokens per model call (default: 1024 on a CPU, 4096 on a GPU or TPU)",
    )
    parser.add_argument("--pooling", choices=("mean", "cls"), default=defaults.pooling, help="default: %(default)s")
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=defaults.normalize,
        help="L2-normalise the embeddings (default: on)",
    )
    return options_from_args(parser, EmbedOptions, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    prepare_driver()
    return run_and_print("embed.py", lambda: run_embed(options))


if __name__ == "__main__":
    sys.exit(main())

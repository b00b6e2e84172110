"""Embed a Parquet corpus with an XLM-RoBERTa checkpoint on Ray Data, writing Parquet.

With no arguments: the bundled sample corpus, the bundled tiny checkpoint, output in ./output/embeddings/.

    python pipelines/embed.py --input data/ --output out/ --model path/to/checkpoint
    ray submit cluster.yaml pipelines/embed.py -- --input s3://bucket/texts/ --output s3://bucket/embeddings/ ...

Output columns: id, embedding (fixed-size list of float32; null when error is set), n_tokens, truncated, error.
A null text comes out with error "text is null" and no embedding; an empty text is embedded as "<s></s>".
"""

from __future__ import annotations

import argparse
import logging
import sys

from textbatch.jobs.embed import DEFAULT_OUTPUT, SAMPLE_CORPUS, TINY_MODEL, EmbedOptions, run_embed


def parse_args(argv: list[str] | None = None) -> EmbedOptions:
    defaults = EmbedOptions()
    parser = argparse.ArgumentParser(
        prog="embed.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--input",
        default=str(SAMPLE_CORPUS),
        help="Parquet file, folder, glob or URL, or a datasets save_to_disk folder "
        "(default: the bundled sample corpus)",
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder or URL (default: %(default)s)")
    parser.add_argument(
        "--model", default=str(TINY_MODEL), help="checkpoint folder, URL or hub id (default: the bundled tiny XLM-R)"
    )
    parser.add_argument("--text-column", default=defaults.text_column, help="default: %(default)s")
    parser.add_argument("--id-column", default=defaults.id_column, help="default: %(default)s")
    parser.add_argument("--pooling", choices=("mean", "cls"), default=defaults.pooling, help="default: %(default)s")
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=defaults.normalize,
        help="L2-normalise the embeddings (default: on)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per text, <s> and </s> included; longer texts are truncated "
        "(default: all the checkpoint takes, 512 for XLM-R)",
    )
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=defaults.batch_tokens,
        help="padded tokens per model call (default: %(default)s)",
    )
    parser.add_argument("--model-actors", type=int, default=defaults.model_actors, help="default: %(default)s")
    parser.add_argument("--tokenizer-actors", type=int, default=defaults.tokenizer_actors, help="default: %(default)s")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default=defaults.dtype,
        help="computation dtype (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        return EmbedOptions(**{key: value for key, value in vars(args).items()})
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray

    # Connects to a running cluster (`ray submit`, RAY_ADDRESS) when there is one, else starts Ray on this machine.
    if not ray.is_initialized():
        ray.init()
    summary = run_embed(options)
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tag named entities in a Parquet corpus with a token-classification checkpoint on Ray Data, writing Parquet.

With no arguments: the bundled sample corpus, tagged by the bundled tiny random-weight NER checkpoint (labels O,
B-/I-PER, ORG, LOC, MISC; its entities are reproducible nonsense), output in ./output/entities/.

    python pipelines/label.py --input data/ --output out/ --model path/to/xlm-roberta-ner --aggregation first
    ray submit cluster.yaml pipelines/label.py -- --input s3://bucket/texts/ --output s3://bucket/entities/ ...

Output columns: id, entities, n_tokens (the text's tokens with <s> and </s>), truncated (the text was cut to
--max-chars), error. `entities` is a list of {entity_group, score, word, start, end} (with --aggregation none:
{entity, score, index, word, start, end}, one per token), as transformers' token-classification pipeline returns
them; `start`/`end` are character offsets into the text (text[start:end] is the entity). Texts longer than the
window (--max-length) are tagged in windows that share --stride tokens, and the windows' spans merged, so every
token is tagged. A null text comes out with error "text is null" and no entities; the other rows are unaffected.
XLM-RoBERTa and FlauBERT checkpoints work; FlauBERT's tokenizer gives no character offsets, so its `start`/`end` are
null (as in transformers' pipeline with that tokenizer), its words come from the BPE end-of-word marks, and its
windows are merged by token positions.
"""

from __future__ import annotations

import sys

from textbatch.jobs.cli import (
    add_job_arguments,
    job_parser,
    options_from_args,
    prepare_driver,
    run_and_print,
)
from textbatch.jobs.label import LabelOptions, run_label
from textbatch.operators.entities import AGGREGATIONS


def _labels(value: str) -> tuple[str, ...]:
    return tuple(label.strip() for label in value.split(",") if label.strip())


def parse_args(argv: list[str] | None = None) -> LabelOptions:
    defaults = LabelOptions()
    parser = job_parser("label.py", __doc__)
    add_job_arguments(
        parser,
        defaults,
        model_help="token-classification checkpoint folder, URL or hub id (default: the bundled tiny NER model)",
        max_length_help="the window: tokens per model call, <s> and </s> included; longer texts are tagged in "
        "overlapping windows (default: all the checkpoint takes, 512 for XLM-R and FlauBERT)",
        batch_tokens_help="padded tokens per model call (default: 1024 on a CPU, 4096 on a GPU or TPU)",
    )
    parser.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        default=defaults.aggregation,
        help="how tokens become entities, as in transformers' pipeline: none (one result per token), simple "
        "(group neighbouring tokens of one type), first / average / max (label whole words by their first "
        "token / mean scores / best token, then group) (default: %(default)s)",
    )
    parser.add_argument(
        "--labels-only",
        type=_labels,
        metavar="LABEL,...",
        help="keep only these labels, e.g. B-PER,I-PER or PER,LOC (default: every label but O)",
    )
    parser.add_argument(
        "--stride",
        type=int,
        help="tokens two consecutive windows share (default: 128, or half the window's text tokens if less)",
    )
    return options_from_args(parser, LabelOptions, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    prepare_driver()
    return run_and_print("label.py", lambda: run_label(options))


if __name__ == "__main__":
    sys.exit(main())

"""Generate text from a Parquet corpus of prompts with a T5 / FLAN-T5 / UL2 checkpoint on Ray Data, writing Parquet.

With no arguments: the bundled sample corpus, "summarized" by the bundled tiny random-weight FLAN-T5 (its output is
reproducible nonsense), output in ./output/generations/.

    python pipelines/generate.py --input data/ --output out/ --model path/to/flan-t5-base \\
        --template "summarize: {text}" --num-beams 4 --max-new-tokens 64
    ray submit cluster.yaml pipelines/generate.py -- --input s3://bucket/articles/ --output s3://bucket/summaries/ ...

Output columns: id, generated_text (a list of strings, best first, when --num-return-sequences > 1; null when error
is set), n_input_tokens (prompt tokens with </s>), n_generated_tokens (after the start token, up to and including
</s>; a list alongside the texts), truncated (the prompt was cut to --max-length, or its text to --max-chars),
error. A null prompt comes out with error "text is null"; the other rows are unaffected. Prompts are batched by
length, padded to a few shapes; padding never changes a prompt's output. Generation options left out take the
checkpoint's generation_config.json.
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
from textbatch.jobs.generate import GenerateOptions, run_generate


def _early_stopping(value: str) -> bool | str:
    choices = {"true": True, "false": False, "never": "never"}
    if value.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected true, false or never, got {value!r}")
    return choices[value.lower()]


def add_generation_arguments(parser: argparse.ArgumentParser, defaults: GenerateOptions) -> None:
    group = parser.add_argument_group(
        "generation", "as transformers' generate; left out: the checkpoint's generation_config.json"
    )
    group.add_argument(
        "--max-new-tokens", type=int, default=defaults.max_new_tokens, help="default: %(default)s"
    )
    group.add_argument("--min-new-tokens", type=int, help="eos is suppressed until this many tokens")
    group.add_argument("--num-beams", type=int, help="beam search when > 1 (usually 1 in checkpoints: greedy)")
    group.add_argument("--length-penalty", type=float, help="beam search: score / length**penalty")
    group.add_argument(
        "--early-stopping", type=_early_stopping, metavar="{true,false,never}", help="beam search stopping rule"
    )
    group.add_argument(
        "--num-return-sequences", type=int, help="sequences per prompt (needs --num-beams > 1 or --do-sample)"
    )
    group.add_argument("--do-sample", action=argparse.BooleanOptionalAction, help="sample instead of searching")
    group.add_argument("--temperature", type=float, help="sampling temperature")
    group.add_argument("--top-k", type=int, help="sampling: keep the k most likely tokens (0: all)")
    group.add_argument("--top-p", type=float, help="sampling: keep the smallest set of tokens with this mass")
    group.add_argument("--seed", type=int, default=defaults.seed, help="sampling seed (default: %(default)s)")
    group.add_argument("--repetition-penalty", type=float, help="divide the scores of tokens already generated")
    group.add_argument("--no-repeat-ngram-size", type=int, help="never repeat an n-gram of this size")


def parse_args(argv: list[str] | None = None) -> GenerateOptions:
    defaults = GenerateOptions()
    parser = job_parser("generate.py", __doc__)
    add_job_arguments(
        parser,
        defaults,
        model_help="checkpoint folder, URL or hub id (default: the bundled tiny FLAN-T5)",
        max_length_help="prompt tokens, </s> and the template's words included; longer prompts are cut at the end "
        "(default: 512)",
        text_column_flags=("--text-column", "--prompt-column"),
        batch_tokens_help=f"padded prompt tokens per model call (default: {defaults.batch_tokens}, "
        "or no token limit when --batch-size is given)",
    )
    parser.set_defaults(batch_tokens=None)  # resolved below: the default applies only without --batch-size
    parser.add_argument("--batch-size", type=int, help="prompts per model call (default: as many as --batch-tokens)")
    parser.add_argument(
        "--template", help='prompt template, e.g. "summarize: {text}" ({text} is the row\'s text; default: the text)'
    )
    add_generation_arguments(parser, defaults)
    args = parser.parse_args(argv)
    if args.batch_tokens is None and args.batch_size is None:
        args.batch_tokens = defaults.batch_tokens
    return options_from_args(parser, GenerateOptions, args)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    prepare_driver()
    return run_and_print("generate.py", lambda: run_generate(options))


if __name__ == "__main__":
    sys.exit(main())

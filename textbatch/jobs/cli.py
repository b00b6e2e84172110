"""The command-line options every job has, so that each pipelines/*.py only adds its own.

    parser = job_parser("embed.py", __doc__)
    add_job_arguments(parser, EmbedOptions(), model_help=..., max_length_help=...)
    parser.add_argument("--pooling", ...)          # the job's own options
    options = options_from_args(parser, EmbedOptions, parser.parse_args(argv))
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from textbatch.jobs.common import DTYPES, ON_BAD_FILE, JobOptions, JobSummary

Options = TypeVar("Options", bound=JobOptions)


def job_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_job_arguments(
    parser: argparse.ArgumentParser,
    defaults: JobOptions,
    *,
    model_help: str,
    max_length_help: str,
    text_column_flags: tuple[str, ...] = ("--text-column",),
    batch_tokens_help: str = "padded tokens per model call (default: %(default)s)",
) -> None:
    """--input, --output, --model, --text-column, --id-column, --max-length, --batch-tokens, --model-actors,
    --tokenizer-actors, --dtype, --devices-per-actor, --mesh, --load-in-8bit, and the robustness options
    (add_robustness_arguments); defaults from `defaults` (a job's options with no arguments)."""
    parser.add_argument(
        "--input",
        default=defaults.input,
        help="Parquet file, folder, glob or URL, or a datasets save_to_disk folder "
        "(default: the bundled sample corpus)",
    )
    parser.add_argument("--output", default=defaults.output, help="output folder or URL (default: %(default)s)")
    parser.add_argument("--model", default=defaults.model, help=model_help)
    parser.add_argument(
        *text_column_flags, dest="text_column", default=defaults.text_column, help="default: %(default)s"
    )
    parser.add_argument("--id-column", default=defaults.id_column, help="default: %(default)s")
    parser.add_argument("--max-length", type=int, default=defaults.max_length, help=max_length_help)
    parser.add_argument("--batch-tokens", type=int, default=defaults.batch_tokens, help=batch_tokens_help)
    parser.add_argument("--model-actors", type=int, default=defaults.model_actors, help="default: %(default)s")
    parser.add_argument("--tokenizer-actors", type=int, default=defaults.tokenizer_actors, help="default: %(default)s")
    parser.add_argument(
        "--dtype", choices=DTYPES, default=defaults.dtype,
        help="computation dtype; bfloat16 also stores the weights in it (default: %(default)s)",
    )
    parser.add_argument(
        "--devices-per-actor", type=int, default=defaults.devices_per_actor,
        help="GPUs or TPU chips each model actor owns, reserved from Ray (default: 1 GPU when the cluster has any)",
    )
    parser.add_argument(
        "--mesh", default=defaults.mesh, metavar="data=N,model=M",
        help="split each actor's devices into N data replicas of the model split M ways "
        "(default with --devices-per-actor above 1: the model axis as wide as the weights need)",
    )
    parser.add_argument(
        "--load-in-8bit", action="store_true", default=defaults.load_in_8bit,
        help="store dense kernels as int8 with per-channel scales (about a quarter of float32)",
    )
    add_robustness_arguments(parser, defaults)


def add_robustness_arguments(parser: argparse.ArgumentParser, defaults: JobOptions) -> None:
    """--max-chars, --on-bad-file, --batch-retries: bad rows, bad files, failures."""
    group = parser.add_argument_group("bad rows, bad files and failures")
    group.add_argument(
        "--max-chars", type=int, default=defaults.max_chars,
        help="characters kept per text, cut before tokenizing; a cut text is marked truncated (default: %(default)s)",
    )
    group.add_argument(
        "--on-bad-file", choices=ON_BAD_FILE, default=defaults.on_bad_file,
        help="an unreadable input file, a missing or non-text column, null or duplicate ids: stop before any model "
        "loads (fail), or go on without the file and list it in the summary and the output's metadata (skip) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--batch-retries", type=int, default=defaults.batch_retries,
        help="times a batch whose step raised runs again before it is split to give the failing rows an error; an "
        "actor that died is restarted and its batch retried without limit (default: %(default)s)",
    )


def options_from_args(
    parser: argparse.ArgumentParser, options_class: type[Options], args: argparse.Namespace
) -> Options:
    """The parsed `args` as `options_class`; invalid values exit with status 2 and the options' message."""
    try:
        return options_class(**vars(args))
    except ValueError as error:
        parser.error(str(error))


def run_and_print(prog: str, run: Callable[[], JobSummary]) -> int:
    """Run a job and print its summary: exit status 0. A bad input (preflight.BadInputError) prints its message
    alone, not a traceback, and gives status 1."""
    from textbatch.operators.preflight import BadInputError

    try:
        summary = run()
    except BadInputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    print(summary.format())
    return 0


def prepare_driver() -> None:
    """Log at INFO, and connect to a running cluster (`ray submit`, RAY_ADDRESS) when there is one, else start Ray
    on this machine."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray

    if not ray.is_initialized():
        ray.init()

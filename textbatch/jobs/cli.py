"""The command-line options every job has, so that each pipelines/*.py only adds its own.

    parser = job_parser("embed.py", __doc__)
    add_job_arguments(parser, EmbedOptions(), model_help=..., max_length_help=...)
    parser.add_argument("--pooling", ...)          # the job's own options
    options = options_from_args(parser, EmbedOptions, parser.parse_args(argv))
    ...
    prepare_driver()
    return run_and_print("embed.py", lambda: run_embed(options))
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

from textbatch.jobs.common import DTYPES, ON_BAD_FILE, JobOptions, JobSummary
from textbatch.redact import RedactingFilter, redact

Options = TypeVar("Options", bound=JobOptions)


# What every job's --help ends with: the rules they share.
NOTHING_LOST = """\
Any row that cannot be processed comes out with an error and the reason; a bad input file stops the job before
any model loads, naming the file (--on-bad-file skip goes on without it). See the README's "Bad rows, bad files
and failures"."""


def job_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=NOTHING_LOST, formatter_class=argparse.RawDescriptionHelpFormatter
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
    --tokenizer-actors, --dtype, --devices-per-actor, --mesh, --load-in-8bit, the robustness options
    (add_robustness_arguments) and the commit options (add_commit_arguments); defaults from `defaults` (a job's
    options with no arguments)."""
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
    add_commit_arguments(parser, defaults)


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


def add_commit_arguments(parser: argparse.ArgumentParser, defaults: JobOptions) -> None:
    """--incremental, --commit-bytes, --rows-per-model-call: how the output is committed (textbatch/jobs/commit.py)."""
    group = parser.add_argument_group(
        "committing",
        "The output is committed by its _SUCCESS manifest, written last. Rerunning a killed run with\n"
        "the same arguments resumes it: input groups it finished are kept, not recomputed.",
    )
    group.add_argument(
        "--incremental", action="store_true", default=defaults.incremental,
        help="process only the input files the committed output has not seen (new or changed ones) and add their "
        "parts to it; the options must be those the output was made with",
    )
    group.add_argument(
        "--commit-bytes", type=int, default=defaults.commit_bytes, metavar="BYTES",
        help="input bytes per commit group: consecutive input files are committed together up to this size, so a "
        f"killed run loses at most the groups in flight (default: {defaults.commit_bytes / 2**20:g} MiB; 1: one "
        "group per file)",
    )
    group.add_argument(
        "--rows-per-model-call", type=int, default=defaults.rows_per_model_call, metavar="ROWS",
        help="rows a model actor sorts and batches at once, and so a write task's size: fewer rows, less padding "
        "efficiency but groups committed sooner (default: %(default)s)",
    )


def options_from_args(
    parser: argparse.ArgumentParser, options_class: type[Options], args: argparse.Namespace
) -> Options:
    """The parsed `args` as `options_class`; invalid values exit with status 2 and the options' message."""
    try:
        return options_class(**vars(args))
    except ValueError as error:
        parser.error(str(error))


def prepare_driver() -> None:
    """Log at INFO with credentials redacted, and connect to a running cluster (`ray submit`, RAY_ADDRESS) when
    there is one, else start Ray on this machine."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
    import ray

    if not ray.is_initialized():
        ray.init()


def run_and_print(prog: str, run: Callable[[], JobSummary]) -> int:
    """Run a job and print its summary: exit status 0. On an error, status 1: a bad input (preflight.BadInputError)
    prints its message alone, anything else its traceback; both with credentials redacted (a location in a message
    may carry a password or a signed token)."""
    from textbatch.operators.preflight import BadInputError

    try:
        summary = run()
    except BadInputError as error:
        print(redact(f"{prog}: error: {error}"), file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the CLI's last stop: report, redacted, and exit non-zero
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        print(redact(text), file=sys.stderr, end="")
        return 1
    print(summary.format())
    return 0

"""The command-line options every job has, so that each pipelines/*.py only adds its own.

    parser = job_parser("embed.py", __doc__)
    add_job_arguments(parser, EmbedOptions(), model_help=..., max_length_help=...)
    parser.add_argument("--pooling", ...)          # the job's own options
    options = options_from_args(parser, EmbedOptions, parser.parse_args(argv))
"""

from __future__ import annotations

import argparse
import logging
from typing import TypeVar

from textbatch.jobs.common import DTYPES, JobOptions

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
    --tokenizer-actors, --dtype, --devices-per-actor, --mesh, --load-in-8bit; defaults from `defaults` (a job's
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


def options_from_args(
    parser: argparse.ArgumentParser, options_class: type[Options], args: argparse.Namespace
) -> Options:
    """The parsed `args` as `options_class`; invalid values exit with status 2 and the options' message."""
    try:
        return options_class(**vars(args))
    except ValueError as error:
        parser.error(str(error))


def prepare_driver() -> None:
    """Log at INFO, and connect to a running cluster (`ray submit`, RAY_ADDRESS) when there is one, else start Ray
    on this machine."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray

    if not ray.is_initialized():
        ray.init()

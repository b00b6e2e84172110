"""The generation job: Parquet (or a `datasets` folder) of prompts -> Parquet of texts a seq2seq model (T5, FLAN-T5,
UL2) generated from them.

    from textbatch.jobs.generate import GenerateOptions, run_generate
    summary = run_generate(GenerateOptions(input="s3://bucket/articles/", output="s3://bucket/summaries/",
                                           model="path/to/flan-t5-base", template="summarize: {text}",
                                           num_beams=4, max_new_tokens=64))
    print(summary.format())

The plan is the shared read -> tokenize (with the prompt template) start of every job (common.py), then GenerateText
model actors (operators/generate.py), then the shared Parquet write. `build_generate_dataset(options)` returns the
lazy Ray Dataset without running it. With default options the bundled sample corpus is "summarized" by the bundled
tiny random-weight FLAN-T5 into ./output/generations/.

Generation options left at None take the checkpoint's generation_config.json (else transformers' defaults), except
`max_new_tokens`, which defaults to 64 here (transformers' default of 20 tokens in all cuts most summaries short).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping
from typing import Any

from textbatch.jobs.common import (
    ASSETS,
    SAMPLE_CORPUS,
    JobOptions,
    JobSummary,
    base_metadata,
    check_job_input,
    map_model,
    model_location,
    read_and_tokenize,
    run_job,
)
from textbatch.operators.generate import GENERATION_OPTIONS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OUTPUT",
    "OUTPUT_COLUMNS",
    "SAMPLE_CORPUS",
    "TINY_MODEL",
    "GenerateOptions",
    "GenerateSummary",
    "build_generate_dataset",
    "run_generate",
]

TINY_MODEL = ASSETS / "flan-t5-tiny"
DEFAULT_OUTPUT = os.path.join("output", "generations")
DEFAULT_MAX_LENGTH = 512  # source tokens: what T5 and FLAN-T5 were trained on (relative positions set no limit)
OUTPUT_COLUMNS = ("id", "generated_text", "n_input_tokens", "n_generated_tokens", "truncated", "error")


@dataclasses.dataclass(frozen=True)
class GenerateOptions(JobOptions):
    """The shared options (common.JobOptions) with the generation job's defaults, the prompt template, the row
    limit per model call, and every generation option (None: the checkpoint's own setting)."""

    output: str = DEFAULT_OUTPUT
    model: str = str(TINY_MODEL)
    max_length: int | None = None  # prompt tokens, </s> included (the template's words count); default 512
    batch_tokens: int | None = 2048  # padded prompt tokens per model call
    batch_size: int | None = None  # prompts per model call (beams and return sequences multiply the decoder rows)
    template: str | None = None  # e.g. "summarize: {text}"
    # Generation (GenerationConfig's names and meanings).
    max_new_tokens: int | None = 64
    min_new_tokens: int | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | str | None = None
    num_return_sequences: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    seed: int = 0  # sampling only

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_tokens is None and self.batch_size is None:
            raise ValueError("give batch_tokens, batch_size or both")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.template is not None:
            from textbatch.operators.template import PromptTemplate

            PromptTemplate(self.template)  # fails here, on the driver, with the template in the message
        from textbatch.models.generation import GenerationConfig

        GenerationConfig().replace(**self.generation())  # the same checks generate makes, before any actor starts

    def generation(self) -> dict[str, Any]:
        """The generation options that are set (the rest come from the checkpoint)."""
        values = {name: getattr(self, name) for name in GENERATION_OPTIONS}
        return {name: value for name, value in values.items() if value is not None}

    @property
    def returns(self) -> int:
        return self.num_return_sequences or 1


@dataclasses.dataclass(frozen=True)
class GenerateSummary(JobSummary):
    """The shared run report; `tokens` are prompt tokens, plus the tokens generated."""

    generated_tokens: int = 0
    generated_tokens_per_second: float = 0.0

    def lines(self) -> list[tuple[str, str]]:
        renamed = {"tokens": "prompt tokens", "tokens/s": "prompt tokens/s"}
        lines = [(renamed.get(label, label), value) for label, value in super().lines()]
        at = 1 + next(index for index, (label, _) in enumerate(lines) if label == "prompt tokens/s")
        lines[at:at] = [
            ("generated tokens", f"{self.generated_tokens}"),
            ("generated tokens/s", f"{self.generated_tokens_per_second:,.0f}"),
        ]
        return lines


def resolved_max_length(options: GenerateOptions) -> int:
    return options.max_length or DEFAULT_MAX_LENGTH


def build_generate_dataset(
    options: GenerateOptions,
    *,
    checked=None,
    sources: Mapping[str, int] | None = None,
    model_operator: type | None = None,
    tokenize_operator: type | None = None,
):
    """The lazy Ray Dataset of the job: columns id, n_input_tokens, truncated, generated_text, n_generated_tokens,
    error, _padded_tokens (and _group, with `sources`: the input files to read -> their commit group).

    `checked`: the input's preflight (common.check_job_input; default: run it now). `model_operator` and
    `tokenize_operator` replace GenerateText and Tokenize (subclasses taking the same arguments)."""
    from textbatch.operators.generate import GenerateText

    checked = checked if checked is not None else check_job_input(options)
    max_length = resolved_max_length(options)
    dataset = read_and_tokenize(
        options,
        max_length,
        template=options.template,
        checked=checked,
        sources=sources,
        tokenize_operator=tokenize_operator,
    )
    return map_model(
        dataset,
        model_operator or GenerateText,
        {
            "model_path": model_location(options.model),
            "generation": options.generation(),
            "seed": options.seed,
            "dtype": options.dtype,
            "batch_tokens": options.batch_tokens,
            "batch_size": options.batch_size,
            "max_length": max_length,
            "buckets": options.padded_lengths,
            "compilation_cache": options.compilation_cache,
        },
        options,
    )


def run_metadata(options: GenerateOptions) -> dict[str, Any]:
    """What the output files' metadata records about the run."""
    return {
        **base_metadata(options, "generate", resolved_max_length(options)),
        "batch_size": options.batch_size,
        "template": options.template,
        "generation": options.generation(),
        "seed": options.seed,
    }


def run_generate(
    options: GenerateOptions, *, model_operator: type | None = None, tokenize_operator: type | None = None
) -> GenerateSummary:
    """Run the job (connecting to, or starting, Ray as `ray.init()` does) and return its summary. The input is
    checked before any model loads (a bad file raises preflight.BadInputError); the operators are
    build_generate_dataset's."""
    operators = {"model_operator": model_operator, "tokenize_operator": tokenize_operator}
    run = run_job(
        options,
        job="generate",
        metadata=run_metadata(options),
        build_dataset=functools.partial(build_generate_dataset, options, **operators),
        columns=OUTPUT_COLUMNS,
        tokens_column="n_input_tokens",
        sum_columns=("n_generated_tokens",),
    )
    counts, wall = run.counts, run.wall_seconds
    generated = int(counts.sums.get("n_generated_tokens", 0))
    summary = GenerateSummary.from_run(
        run,
        generated_tokens=generated,
        generated_tokens_per_second=generated / wall if wall > 0 else 0.0,
    )
    logger.debug("generation job done:\n%s", summary.format())
    return summary

"""The classification job: Parquet (or a `datasets` folder) of texts, or text pairs -> Parquet of labels and scores.

    from textbatch.jobs.classify import ClassifyOptions, run_classify
    summary = run_classify(ClassifyOptions(input="s3://bucket/pairs/", output="s3://bucket/labels/", model="...",
                                           text_pair_column="hypothesis", top_k=3))
    print(summary.format())

The plan is the shared read -> tokenize start of every job (common.py; with `text_pair_column` the two texts are
tokenized as one pair), then ClassifySequences model actors (operators/sequence_classify.py), then the shared
Parquet write. Scores are those of transformers' text-classification pipeline: softmax for a single-label model,
sigmoid for `problem_type == "multi_label_classification"` (or a single output), raw logits for regression;
`function` overrides. `build_classify_dataset(options)` returns the lazy Ray Dataset without running it. With default
options the bundled sample corpus is classified by the bundled tiny random-weight classifier (negative / neutral /
positive) into ./output/labels/.

Any sequence-classification checkpoint `FlaxAutoModelForSequenceClassification` loads works: XLM-RoBERTa and FlauBERT.
A FlauBERT classifier's summary_type "first", "last", "cls_index" or "mean" is computed over each row's real tokens
(so padding changes nothing, as in the reference's one-text-at-a-time pipeline); "attn", which transformers does not
implement either, is refused when the job starts.
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
    JobSummary,
    base_metadata,
    check_job_input,
    checkpoint_config,
    map_model,
    model_location,
    read_and_tokenize,
    run_job,
)
from textbatch.jobs.encoder_options import EncoderJobOptions
from textbatch.operators.sequence_classify import FUNCTIONS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OUTPUT",
    "SAMPLE_CORPUS",
    "TINY_MODEL",
    "ClassifyOptions",
    "ClassifySummary",
    "build_classify_dataset",
    "output_columns",
    "run_classify",
]

TINY_MODEL = ASSETS / "xlm-roberta-tiny-classifier"
DEFAULT_OUTPUT = os.path.join("output", "labels")


@dataclasses.dataclass(frozen=True)
class ClassifyOptions(EncoderJobOptions):
    """The shared options (common.JobOptions, encoder_options.EncoderJobOptions) with the classification job's
    defaults, plus the pair column, top-k and the score function."""

    output: str = DEFAULT_OUTPUT
    model: str = str(TINY_MODEL)
    max_length: int | None = None  # tokens per text (pair), specials included; default: all the checkpoint takes
    text_pair_column: str | None = None
    top_k: int | None = None  # also write `scores`: the top_k best {label, score}
    function: str | None = None  # softmax, sigmoid or none; default: the checkpoint's problem type decides

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.function is not None and self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {FUNCTIONS}, got {self.function!r}")


@dataclasses.dataclass(frozen=True)
class ClassifySummary(JobSummary):
    """The shared run report; `tokens` are the tokens classified (both texts of a pair)."""


def output_columns(options: ClassifyOptions) -> tuple[str, ...]:
    scores = ("scores",) if options.top_k is not None else ()
    return ("id", "label", "score", *scores, "n_tokens", "truncated", "error")


def resolve_max_length(options: ClassifyOptions) -> tuple[int, Any]:
    """(max_length the job uses, the checkpoint's config); fails early for a checkpoint without a classifier."""
    from textbatch.models import FlaxAutoModelForSequenceClassification
    from textbatch.operators.encoder_inputs import usable_length
    from textbatch.operators.encoders import check_runnable
    from textbatch.operators.flaubert_summary import check_summary_type

    location = model_location(options.model)
    config = checkpoint_config(location, FlaxAutoModelForSequenceClassification)
    check_runnable(config, location)
    if config.model_type == "flaubert":
        check_summary_type(config, location)
    limit = usable_length(config)
    if options.max_length is not None and options.max_length > limit:
        raise ValueError(f"--max-length {options.max_length} exceeds what {options.model} can take ({limit} tokens)")
    return options.max_length or limit, config


def build_classify_dataset(
    options: ClassifyOptions,
    *,
    checked=None,
    sources: Mapping[str, int] | None = None,
    model_operator: type | None = None,
    tokenize_operator: type | None = None,
):
    """The lazy Ray Dataset of the job: columns id, n_tokens, truncated, label, score, [scores], error, and the
    internal _padded_tokens (and _group, with `sources`: the input files to read -> their commit group).

    `checked`: the input's preflight (common.check_job_input; default: run it now). `model_operator` and
    `tokenize_operator` replace ClassifySequences and Tokenize (subclasses taking the same arguments)."""
    from textbatch.operators.sequence_classify import ClassifySequences

    checked = checked if checked is not None else check_job_input(options, options.text_pair_column)
    max_length, _ = resolve_max_length(options)
    dataset = read_and_tokenize(
        options,
        max_length,
        pair_column=options.text_pair_column,
        checked=checked,
        sources=sources,
        tokenize_operator=tokenize_operator,
    )
    return map_model(
        dataset,
        model_operator or ClassifySequences,
        {
            "model_path": model_location(options.model),
            "function": options.function,
            "top_k": options.top_k,
            "dtype": options.dtype,
            "max_length": max_length,
            "buckets": options.padded_lengths,
            "compilation_cache": options.compilation_cache,
            **options.model_call_options(),
        },
        options,
    )


def run_metadata(options: ClassifyOptions, max_length: int, config: Any) -> dict[str, Any]:
    """What the output files' metadata records about the run."""
    from textbatch.operators.sequence_classify import default_function

    return {
        **base_metadata(options, "classify", max_length),
        "model_type": config.model_type,
        "text_pair_column": options.text_pair_column,
        "top_k": options.top_k,
        "function": options.function or default_function(config),
        "id2label": {str(key): value for key, value in config.id2label.items()},
    }


def run_classify(
    options: ClassifyOptions, *, model_operator: type | None = None, tokenize_operator: type | None = None
) -> ClassifySummary:
    """Run the job (connecting to, or starting, Ray as `ray.init()` does) and return its summary. The input is
    checked before any model loads (a bad file raises preflight.BadInputError); the operators are
    build_classify_dataset's."""
    max_length, config = resolve_max_length(options)
    operators = {"model_operator": model_operator, "tokenize_operator": tokenize_operator}
    run = run_job(
        options,
        job="classify",
        metadata=run_metadata(options, max_length, config),
        build_dataset=functools.partial(build_classify_dataset, options, **operators),
        columns=output_columns(options),
        pair_column=options.text_pair_column,
    )
    summary = ClassifySummary.from_run(run)
    logger.debug("classification job done:\n%s", summary.format())
    return summary

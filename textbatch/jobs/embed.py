"""The embedding job: Parquet (or a `datasets` folder) of texts -> Parquet of embeddings.

    from textbatch.jobs.embed import EmbedOptions, run_embed
    summary = run_embed(EmbedOptions(input="s3://bucket/texts/", output="s3://bucket/embeddings/", model="..."))
    print(summary.format())

`build_embed_dataset(options)` returns the lazy Ray Dataset (read -> tokenize actors -> model actors) without
running it; `run_embed(options)` writes it and returns an `EmbedSummary`. With default options the bundled sample
corpus is embedded with the bundled tiny checkpoint into ./output/embeddings/. What every job shares (options,
resources, the read and tokenize steps, the write, the summary) is in common.py.

The model may be any encoder checkpoint `FlaxAutoModel` loads among XLM-RoBERTa and FlauBERT (operators/encoders.py);
a T5 checkpoint is refused when the job starts.
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
    map_model,
    model_location,
    read_and_tokenize,
    run_job,
)
from textbatch.jobs.encoder_options import EncoderJobOptions
from textbatch.operators.encoder_inputs import usable_length
from textbatch.operators.pooling import POOLINGS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OUTPUT",
    "SAMPLE_CORPUS",
    "TINY_MODEL",
    "EmbedOptions",
    "EmbedSummary",
    "build_embed_dataset",
    "run_embed",
]

TINY_MODEL = ASSETS / "xlm-roberta-tiny"
DEFAULT_OUTPUT = os.path.join("output", "embeddings")


@dataclasses.dataclass(frozen=True)
class EmbedOptions(EncoderJobOptions):
    """The shared options (common.JobOptions: input, output, model, columns, max_length, actors, dtype, resources;
    encoder_options.EncoderJobOptions: batch_tokens, shape_cost, pack_length) with the embedding job's defaults, plus
    pooling and normalize."""

    output: str = DEFAULT_OUTPUT
    model: str = str(TINY_MODEL)
    max_length: int | None = None  # tokens per text, <s> and </s> included; default: all the checkpoint takes
    pooling: str = "mean"
    normalize: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"max_length must leave room for <s>, </s> and a token; got {self.max_length}")


@dataclasses.dataclass(frozen=True)
class EmbedSummary(JobSummary):
    """The shared run report; `tokens` are the tokens embedded."""


def resolved_max_length(options: EmbedOptions) -> tuple[int, Any]:
    """(max_length the job uses, the checkpoint's config): the option, bounded by what the checkpoint can take;
    fails early, on the driver, for a checkpoint that is not an encoder the job supports (XLM-R, FlauBERT)."""
    from textbatch.operators.encoders import encoder_config

    config = encoder_config(model_location(options.model))
    limit = usable_length(config)
    if options.max_length is not None and options.max_length > limit:
        raise ValueError(f"--max-length {options.max_length} exceeds what {options.model} can take ({limit} tokens)")
    return options.max_length or limit, config


def build_embed_dataset(
    options: EmbedOptions,
    *,
    checked=None,
    sources: Mapping[str, int] | None = None,
    model_operator: type | None = None,
    tokenize_operator: type | None = None,
):
    """The lazy Ray Dataset of the job: columns id, n_tokens, truncated, embedding, error, _padded_tokens (and
    _group, with `sources`: the input files to read -> their commit group).

    `checked`: the input's preflight (common.check_job_input; default: run it now). `model_operator` and
    `tokenize_operator` replace PredictEmbeddings and Tokenize (subclasses taking the same arguments)."""
    from textbatch.operators.predict import PredictEmbeddings

    checked = checked if checked is not None else check_job_input(options)
    max_length, _ = resolved_max_length(options)
    dataset = read_and_tokenize(
        options, max_length, checked=checked, sources=sources, tokenize_operator=tokenize_operator
    )
    return map_model(
        dataset,
        model_operator or PredictEmbeddings,
        {
            "model_path": model_location(options.model),
            "pooling": options.pooling,
            "normalize": options.normalize,
            "dtype": options.dtype,
            "max_length": max_length,
            "buckets": options.padded_lengths,
            "compilation_cache": options.compilation_cache,
            **options.model_call_options(),
        },
        options,
    )


def run_metadata(options: EmbedOptions, max_length: int, config: Any) -> dict[str, Any]:
    """What the output files' metadata records about the run."""
    return {
        **base_metadata(options, "embed", max_length),
        "model_type": config.model_type,
        "embedding_dim": int(config.hidden_size),
        "pooling": options.pooling,
        "normalize": options.normalize,
    }


def run_embed(
    options: EmbedOptions, *, model_operator: type | None = None, tokenize_operator: type | None = None
) -> EmbedSummary:
    """Run the job (connecting to, or starting, Ray as `ray.init()` does) and return its summary. The input is
    checked before any model loads (a bad file raises preflight.BadInputError); the operators are
    build_embed_dataset's."""
    from textbatch.operators.write import OUTPUT_COLUMNS

    max_length, config = resolved_max_length(options)
    operators = {"model_operator": model_operator, "tokenize_operator": tokenize_operator}
    run = run_job(
        options,
        job="embed",
        metadata=run_metadata(options, max_length, config),
        build_dataset=functools.partial(build_embed_dataset, options, **operators),
        columns=OUTPUT_COLUMNS,
    )
    summary = EmbedSummary.from_run(run)
    logger.debug("embedding job done:\n%s", summary.format())
    return summary

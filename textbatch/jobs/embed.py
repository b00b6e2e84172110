"""The embedding job: Parquet (or a `datasets` folder) of texts -> Parquet of embeddings.

    from textbatch.jobs.embed import EmbedOptions, run_embed
    summary = run_embed(EmbedOptions(input="s3://bucket/texts/", output="s3://bucket/embeddings/", model="..."))
    print(summary.format())

`build_embed_dataset(options)` returns the lazy Ray Dataset (read -> tokenize actors -> model actors) without
running it; `run_embed(options)` writes it and returns an `EmbedSummary`. With default options the bundled sample
corpus is embedded with the bundled tiny checkpoint into ./output/embeddings/. What every job shares (options,
resources, the read and tokenize steps, the write, the summary) is in common.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from textbatch.jobs.common import (
    ASSETS,
    SAMPLE_CORPUS,
    JobOptions,
    JobSummary,
    base_metadata,
    map_model,
    model_location,
    read_and_tokenize,
    run_job,
)
from textbatch.operators.pooling import POOLINGS
from textbatch.operators.predict import usable_length

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
class EmbedOptions(JobOptions):
    """The shared options (common.JobOptions: input, output, model, columns, max_length, batch_tokens, actors,
    dtype, resources) with the embedding job's defaults, plus pooling and normalize."""

    output: str = DEFAULT_OUTPUT
    model: str = str(TINY_MODEL)
    max_length: int | None = None  # tokens per text, <s> and </s> included; default: all the checkpoint takes
    batch_tokens: int = 4096  # padded tokens per model call
    pooling: str = "mean"
    normalize: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_tokens is None:
            raise ValueError("batch_tokens must be at least 1, got None")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"max_length must leave room for <s>, </s> and a token; got {self.max_length}")


@dataclasses.dataclass(frozen=True)
class EmbedSummary(JobSummary):
    """The shared run report; `tokens` are the tokens embedded."""


def resolved_max_length(options: EmbedOptions) -> tuple[int, Any]:
    """(max_length the job uses, the checkpoint's config): the option, bounded by what the checkpoint can take."""
    from textbatch.models import XLMRobertaConfig

    config = XLMRobertaConfig.from_pretrained(model_location(options.model))
    limit = usable_length(config)
    if options.max_length is not None and options.max_length > limit:
        raise ValueError(f"--max-length {options.max_length} exceeds what {options.model} can take ({limit} tokens)")
    return options.max_length or limit, config


def build_embed_dataset(options: EmbedOptions):
    """The lazy Ray Dataset of the job: columns id, n_tokens, truncated, embedding, error, _padded_tokens."""
    from textbatch.operators.predict import PredictEmbeddings

    max_length, _ = resolved_max_length(options)
    dataset = read_and_tokenize(options, max_length)
    return map_model(
        dataset,
        PredictEmbeddings,
        {
            "model_path": model_location(options.model),
            "pooling": options.pooling,
            "normalize": options.normalize,
            "dtype": options.dtype,
            "batch_tokens": options.batch_tokens,
            "max_length": max_length,
            "buckets": options.padded_lengths,
        },
        options,
    )


def run_metadata(options: EmbedOptions, max_length: int, config: Any) -> dict[str, Any]:
    """What the output files' metadata records about the run."""
    return {
        **base_metadata(options, "embed", max_length),
        "model_type": getattr(config, "model_type", "xlm-roberta"),
        "embedding_dim": int(config.hidden_size),
        "pooling": options.pooling,
        "normalize": options.normalize,
    }


def run_embed(options: EmbedOptions) -> EmbedSummary:
    """Run the job (connecting to, or starting, Ray as `ray.init()` does) and return its summary."""
    from textbatch.operators.write import EmbeddingParquetDatasink

    def make_sink(output: str) -> EmbeddingParquetDatasink:
        max_length, config = resolved_max_length(options)
        metadata = run_metadata(options, max_length, config)
        return EmbeddingParquetDatasink(output, metadata=metadata, overwrite=options.overwrite)

    counts, wall, output = run_job(options, lambda: build_embed_dataset(options), make_sink)
    summary = EmbedSummary.from_counts(counts, output, wall)
    logger.debug("embedding job done:\n%s", summary.format())
    return summary

"""The embedding job: Parquet (or a `datasets` folder) of texts -> Parquet of embeddings.

    from textbatch.jobs.embed import EmbedOptions, run_embed
    summary = run_embed(EmbedOptions(input="s3://bucket/texts/", output="s3://bucket/embeddings/", model="..."))
    print(summary.format())

`build_embed_dataset(options)` returns the lazy Ray Dataset (read -> tokenize actors -> model actors) without
running it; `run_embed(options)` writes it and returns an `EmbedSummary`. With default options the bundled sample
corpus is embedded with the bundled tiny checkpoint into ./output/embeddings/.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from textbatch.operators.pooling import POOLINGS
from textbatch.operators.predict import DTYPES, usable_length

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE_CORPUS = ASSETS / "sample_corpus"
TINY_MODEL = ASSETS / "xlm-roberta-tiny"
DEFAULT_OUTPUT = os.path.join("output", "embeddings")


@dataclasses.dataclass(frozen=True)
class EmbedOptions:
    """Everything the job needs; the first block mirrors the command-line options of `pipelines/embed.py`."""

    input: str = str(SAMPLE_CORPUS)
    output: str = DEFAULT_OUTPUT
    model: str = str(TINY_MODEL)
    text_column: str = "text"
    id_column: str = "id"
    pooling: str = "mean"
    normalize: bool = True
    max_length: int | None = None  # tokens per text, <s> and </s> included; default: all the checkpoint takes
    batch_tokens: int = 4096  # padded tokens per model call
    model_actors: int = 1
    tokenizer_actors: int = 1
    dtype: str = "float32"
    # Sizes and resources: configuration rather than command-line options.
    rows_per_model_call: int = 4096  # rows sorted and batched together; more rows, less padding
    rows_per_tokenizer_call: int = 1024
    padded_lengths: tuple[int, ...] | None = None  # the compiled shapes' lengths; default: batching.bucket_lengths
    # CPU reservations are small so that on a 2-CPU machine the actors leave a whole CPU free: Ray Data's file
    # listing task asks for 1 CPU and cannot be configured, and the job waits forever if it cannot get it.
    model_actor_cpus: float = 0.5  # JAX uses every core of its node whatever Ray counts; this only reserves room
    model_actor_gpus: float | None = None  # None: 1 per model actor when the cluster has GPUs, else 0
    model_actor_resources: dict[str, float] | None = None  # e.g. {"TPU": 4} on a TPU host
    tokenizer_actor_cpus: float = 0.25
    io_task_cpus: float = 0.25  # read and write tasks
    overwrite: bool = True  # replace an earlier run's Parquet files in `output`

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for name in (
            "batch_tokens",
            "model_actors",
            "tokenizer_actors",
            "rows_per_model_call",
            "rows_per_tokenizer_call",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.padded_lengths is not None and list(self.padded_lengths) != sorted(set(self.padded_lengths)):
            raise ValueError(f"padded_lengths must be increasing, got {self.padded_lengths}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"max_length must leave room for <s>, </s> and a token; got {self.max_length}")


@dataclasses.dataclass(frozen=True)
class EmbedSummary:
    output: str
    rows: int
    tokens: int
    tokens_per_second: float
    padding_efficiency: float
    errors: int
    error_kinds: dict[str, int]
    truncated: int
    files: int
    wall_seconds: float

    def format(self) -> str:
        lines = [
            f"output:             {self.output} ({self.files} files)",
            f"rows:               {self.rows}",
            f"tokens:             {self.tokens}",
            f"tokens/s:           {self.tokens_per_second:,.0f}",
            f"padding efficiency: {self.padding_efficiency:.1%}",
            f"truncated:          {self.truncated}",
            f"errors:             {self.errors}",
        ]
        lines += [f"  {count} x {message}" for message, count in self.error_kinds.items()]
        lines.append(f"wall time:          {self.wall_seconds:.1f} s")
        return "\n".join(lines)


def _local_to_absolute(location: str) -> str:
    """Ray workers do not share the driver's working directory: give them absolute local paths."""
    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def _model_location(model: str) -> str:
    # A hub id ("org/name") must stay as written; only an existing local folder is made absolute.
    return os.path.abspath(model) if os.path.exists(model) else model


def resolved_max_length(options: EmbedOptions) -> tuple[int, Any]:
    """(max_length the job uses, the checkpoint's config): the option, bounded by what the checkpoint can take."""
    from textbatch.models import XLMRobertaConfig

    config = XLMRobertaConfig.from_pretrained(_model_location(options.model))
    limit = usable_length(config)
    if options.max_length is not None and options.max_length > limit:
        raise ValueError(f"--max-length {options.max_length} exceeds what {options.model} can take ({limit} tokens)")
    return options.max_length or limit, config


def _model_actor_gpus(options: EmbedOptions) -> float:
    if options.model_actor_gpus is not None:
        return options.model_actor_gpus
    import ray

    return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def build_embed_dataset(options: EmbedOptions):
    """The lazy Ray Dataset of the job: columns id, n_tokens, truncated, embedding, error, _padded_tokens."""
    from ray.data import ActorPoolStrategy

    from textbatch.operators.predict import PredictEmbeddings
    from textbatch.operators.read import read_texts
    from textbatch.operators.tokenize import Tokenize

    model = _model_location(options.model)
    max_length, _ = resolved_max_length(options)
    dataset = read_texts(
        _local_to_absolute(options.input),
        text_column=options.text_column,
        id_column=options.id_column,
        num_cpus=options.io_task_cpus,
    )
    dataset = dataset.map_batches(
        Tokenize,
        fn_constructor_kwargs={"tokenizer_path": model, "max_length": max_length},
        batch_format="pyarrow",
        batch_size=options.rows_per_tokenizer_call,
        compute=ActorPoolStrategy(size=options.tokenizer_actors),
        num_cpus=options.tokenizer_actor_cpus,
    )
    gpus = _model_actor_gpus(options)
    extra = {"num_gpus": gpus} if gpus else {}
    if options.model_actor_resources:
        extra["resources"] = dict(options.model_actor_resources)
    return dataset.map_batches(
        PredictEmbeddings,
        fn_constructor_kwargs={
            "model_path": model,
            "pooling": options.pooling,
            "normalize": options.normalize,
            "dtype": options.dtype,
            "batch_tokens": options.batch_tokens,
            "max_length": max_length,
            "buckets": options.padded_lengths,
        },
        batch_format="pyarrow",
        batch_size=options.rows_per_model_call,
        compute=ActorPoolStrategy(size=options.model_actors),
        num_cpus=options.model_actor_cpus,
        **extra,
    )


def run_metadata(options: EmbedOptions, max_length: int, config: Any) -> dict[str, Any]:
    """What the output files' metadata records about the run."""
    try:
        version = package_metadata.version("textbatch")
    except package_metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "job": "embed",
        "textbatch_version": version,
        "model": _model_location(options.model),
        "model_type": getattr(config, "model_type", "xlm-roberta"),
        "embedding_dim": int(config.hidden_size),
        "pooling": options.pooling,
        "normalize": options.normalize,
        "max_length": max_length,
        "batch_tokens": options.batch_tokens,
        "dtype": options.dtype,
        "input": _local_to_absolute(options.input),
        "text_column": options.text_column,
        "id_column": options.id_column,
    }


def _warn_if_actors_leave_no_cpu(options: EmbedOptions) -> None:
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    reserved = options.model_actors * options.model_actor_cpus + options.tokenizer_actors * options.tokenizer_actor_cpus
    if total and reserved > total - 1:
        logger.warning(
            "the actors reserve %.2f of the %.0f CPUs Ray sees, leaving less than the 1 CPU Ray Data's file listing "
            "needs: unless the cluster scales up, the job will wait forever. Use fewer actors or smaller "
            "model_actor_cpus / tokenizer_actor_cpus.",
            reserved,
            total,
        )


def _warn_if_local_output_on_cluster(output: str) -> None:
    import ray

    if "://" in output or not ray.is_initialized():
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1:
        logger.warning(
            "writing to the local path %s on a %d-node cluster: each node keeps the files its tasks wrote; "
            "use an s3:// or gs:// output to collect them in one place",
            output,
            len(nodes),
        )


def run_embed(options: EmbedOptions) -> EmbedSummary:
    """Run the job (connecting to, or starting, Ray as `ray.init()` does) and return its summary."""
    import ray

    from textbatch.operators.write import EmbeddingParquetDatasink

    if not ray.is_initialized():
        ray.init()
    output = _local_to_absolute(options.output)
    _warn_if_local_output_on_cluster(output)
    _warn_if_actors_leave_no_cpu(options)
    started = time.perf_counter()
    max_length, config = resolved_max_length(options)
    dataset = build_embed_dataset(options)
    sink = EmbeddingParquetDatasink(
        output, metadata=run_metadata(options, max_length, config), overwrite=options.overwrite
    )
    dataset.write_datasink(sink, ray_remote_args={"num_cpus": options.io_task_cpus})
    wall = time.perf_counter() - started
    counts = sink.counts
    summary = EmbedSummary(
        output=output,
        rows=counts.rows,
        tokens=counts.tokens,
        tokens_per_second=counts.tokens / wall if wall > 0 else 0.0,
        padding_efficiency=counts.embedded_tokens / counts.padded_tokens if counts.padded_tokens else 1.0,
        errors=counts.errors,
        error_kinds=dict(counts.error_kinds),
        truncated=counts.truncated,
        files=counts.files,
        wall_seconds=wall,
    )
    logger.debug("embedding job done:\n%s", summary.format())
    return summary

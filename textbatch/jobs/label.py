"""The NER tagging job: Parquet (or a `datasets` folder) of texts -> Parquet of entity spans per text.

    from textbatch.jobs.label import LabelOptions, run_label
    summary = run_label(LabelOptions(input="s3://bucket/texts/", output="s3://bucket/entities/", model="...",
                                     aggregation="first", labels_only=("PER", "LOC")))
    print(summary.format())

The plan is the shared read -> tokenize start of every job (common.py), tokenizing each whole text (with character
offsets when the tokenizer gives them), then TagEntities model actors (operators/token_classify.py: overlapping
windows, the model, BIO -> spans), then the shared Parquet write. A text longer than the model's window is tagged in
windows that overlap by `stride` tokens and their spans merged, so no part of a text goes untagged.
`build_label_dataset(options)` returns the lazy Ray Dataset without running it. With default options the bundled
sample corpus is tagged by the bundled tiny random-weight NER checkpoint into ./output/entities/.

The model may be any token-classification checkpoint `FlaxAutoModelForTokenClassification` loads: XLM-RoBERTa or
FlauBERT. FlauBERT's tokenizer gives no character offsets (Moses rewrites the text before it is split), so its
entities come out as transformers' pipeline gives them with that (slow) tokenizer: `start` and `end` null, `word`
from the tokenizer's `convert_tokens_to_string`. Its words are found from the BPE end-of-word marks, so "first",
"average" and "max" work (transformers refuses them with a slow tokenizer), and its windows are merged by token
positions (transformers refuses `stride` with a slow tokenizer). A tokenizer with neither offsets nor word marks is
refused for the word aggregations when the job starts.
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
from textbatch.operators.entities import AGGREGATIONS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OUTPUT",
    "OUTPUT_COLUMNS",
    "SAMPLE_CORPUS",
    "TINY_MODEL",
    "LabelOptions",
    "LabelSummary",
    "build_label_dataset",
    "run_label",
]

TINY_MODEL = ASSETS / "xlm-roberta-tiny-ner"
DEFAULT_OUTPUT = os.path.join("output", "entities")
OUTPUT_COLUMNS = ("id", "entities", "n_tokens", "truncated", "error")  # truncated: the text was cut to max_chars
DEFAULT_STRIDE = 128  # tokens two windows share, at most half the window


@dataclasses.dataclass(frozen=True)
class LabelOptions(EncoderJobOptions):
    """The shared options (common.JobOptions, encoder_options.EncoderJobOptions) with the NER job's defaults, plus
    the aggregation strategy, the labels to keep and the windows' overlap."""

    output: str = DEFAULT_OUTPUT
    model: str = str(TINY_MODEL)
    max_length: int | None = None  # the window: tokens per model call and text, <s> and </s> included; default all
    aggregation: str = "simple"
    labels_only: tuple[str, ...] | None = None  # e.g. ("B-PER", "I-PER") or ("PER",); None keeps every label but O
    stride: int | None = None  # tokens consecutive windows share; default min(128, half the window's text tokens)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.labels_only is not None:
            object.__setattr__(self, "labels_only", tuple(self.labels_only))
            if not self.labels_only or not all(self.labels_only):
                raise ValueError(f"labels_only must name at least one label, got {self.labels_only!r}")
        if self.stride is not None and self.stride < 0:
            raise ValueError(f"stride must be at least 0, got {self.stride}")
        if self.max_length is not None and self.max_length < 3:
            raise ValueError(f"max_length must leave room for <s>, </s> and a token; got {self.max_length}")


@dataclasses.dataclass(frozen=True)
class LabelSummary(JobSummary):
    """The shared run report; `tokens` are the texts' tokens (each counted once, however many windows saw it)."""

    entities: int = 0
    windows: int = 0

    def lines(self) -> list[tuple[str, str]]:
        lines = super().lines()
        at = 1 + next(index for index, (label, _) in enumerate(lines) if label == "tokens/s")
        lines[at:at] = [("windows", f"{self.windows}"), ("entities", f"{self.entities}")]
        return lines


@dataclasses.dataclass(frozen=True)
class LabelPlan:
    """What the job resolves from the options and the checkpoint before any actor starts."""

    max_length: int
    stride: int
    config: Any
    offsets: bool  # whether the tokenizer gives character offsets (entities then have start/end)


def resolve_plan(options: LabelOptions) -> LabelPlan:
    """The window and stride the job uses; fails early, on the driver, for a checkpoint or options it cannot run."""
    from textbatch.models import FlaxAutoModelForTokenClassification
    from textbatch.operators.encoder_inputs import usable_length
    from textbatch.operators.encoders import check_runnable
    from textbatch.operators.token_classify import uses_offsets
    from textbatch.operators.windows import special_frame, window_bounds
    from textbatch.operators.word_boundaries import check_word_aggregation
    from textbatch.tokenizers import AutoTokenizer

    location = model_location(options.model)
    config = checkpoint_config(location, FlaxAutoModelForTokenClassification)
    check_runnable(config, location)
    tokenizer = AutoTokenizer.from_pretrained(location)
    check_word_aggregation(tokenizer, options.aggregation, options.model)
    limit = usable_length(config)
    if options.max_length is not None and options.max_length > limit:
        raise ValueError(f"--max-length {options.max_length} exceeds what {options.model} can take ({limit} tokens)")
    max_length = options.max_length or limit
    window = max_length - sum(special_frame(tokenizer))
    stride = options.stride if options.stride is not None else min(DEFAULT_STRIDE, window // 2)
    try:
        window_bounds(0, window, stride)
    except ValueError as error:
        raise ValueError(f"--stride {stride} with --max-length {max_length}: {error}") from None
    if options.labels_only is not None:
        from textbatch.operators.entities import EntityAggregator

        EntityAggregator(config.id2label, lambda tokens: "", options.aggregation, options.labels_only)
    return LabelPlan(max_length=max_length, stride=stride, config=config, offsets=uses_offsets(tokenizer))


def build_label_dataset(
    options: LabelOptions,
    plan: LabelPlan | None = None,
    *,
    checked=None,
    sources: Mapping[str, int] | None = None,
    model_operator: type | None = None,
    tokenize_operator: type | None = None,
):
    """The lazy Ray Dataset of the job: columns id, n_tokens, truncated, entities, error, and internal counts (and
    _group, with `sources`: the input files to read -> their commit group).

    `checked`: the input's preflight (common.check_job_input; default: run it now). `model_operator` and
    `tokenize_operator` replace TagEntities and Tokenize (subclasses taking the same arguments)."""
    from textbatch.operators.token_classify import TagEntities

    checked = checked if checked is not None else check_job_input(options)
    plan = plan or resolve_plan(options)
    dataset = read_and_tokenize(
        options,
        None,
        checked=checked,
        sources=sources,
        tokenize_operator=tokenize_operator,
        offsets=plan.offsets,
        keep_text=plan.offsets,
    )
    return map_model(
        dataset,
        model_operator or TagEntities,
        {
            "model_path": model_location(options.model),
            "aggregation": options.aggregation,
            "labels_only": options.labels_only,
            "stride": plan.stride,
            "dtype": options.dtype,
            "max_length": plan.max_length,
            "buckets": options.padded_lengths,
            "compilation_cache": options.compilation_cache,
            **options.model_call_options(),
        },
        options,
    )


def run_metadata(options: LabelOptions, plan: LabelPlan) -> dict[str, Any]:
    """What the output files' metadata records about the run."""
    return {
        **base_metadata(options, "label", plan.max_length),
        "model_type": plan.config.model_type,
        "aggregation": options.aggregation,
        "labels_only": list(options.labels_only) if options.labels_only else None,
        "stride": plan.stride,
        "id2label": {str(key): value for key, value in plan.config.id2label.items()},
    }


def run_label(
    options: LabelOptions, *, model_operator: type | None = None, tokenize_operator: type | None = None
) -> LabelSummary:
    """Run the job (connecting to, or starting, Ray as `ray.init()` does) and return its summary. The input is
    checked before any model loads (a bad file raises preflight.BadInputError); the operators are
    build_label_dataset's."""
    from textbatch.operators.token_classify import ENTITIES, WINDOWS

    plan = resolve_plan(options)
    operators = {"model_operator": model_operator, "tokenize_operator": tokenize_operator}
    run = run_job(
        options,
        job="label",
        metadata=run_metadata(options, plan),
        build_dataset=functools.partial(build_label_dataset, options, plan, **operators),
        columns=OUTPUT_COLUMNS,
        sum_columns=(WINDOWS, ENTITIES),
    )
    counts = run.counts
    summary = LabelSummary.from_run(
        run,
        entities=int(counts.sums.get(ENTITIES, 0)),
        windows=int(counts.sums.get(WINDOWS, 0)),
    )
    logger.debug("NER job done:\n%s", summary.format())
    return summary

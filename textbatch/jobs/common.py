"""What every job shares: the options every job has, Ray resources, the read -> tokenize start of the plan, the
committed write, and the run summary. A job (embed.py, generate.py, ...) adds its model step, its output columns and
its own options on top.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from textbatch.jobs.input_groups import DEFAULT_COMMIT_BYTES
from textbatch.operators.timing import COMPILE_MS, LOAD_MS, MODEL_MS, SHAPES, TIMING_COLUMNS, TOKENIZE_MS, WRITE_MS
from textbatch.operators.tokenize import CUT_AT_MAX_CHARS
from textbatch.redact import redact

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SAMPLE_CORPUS = ASSETS / "sample_corpus"
DTYPES = ("float32", "bfloat16")
ON_BAD_FILE = ("fail", "skip")  # operators/preflight.py's (not imported from there: that pulls in Ray)
REPORT_SUMS = (CUT_AT_MAX_CHARS, TOKENIZE_MS, *TIMING_COLUMNS)  # internal columns every job's sink sums for the summary


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """The options of every job; the first block mirrors the shared command-line options. A job's options class
    extends it and sets its own defaults for `output` and `model`."""

    input: str = str(SAMPLE_CORPUS)
    output: str = "output"
    model: str = ""
    text_column: str = "text"
    id_column: str = "id"
    max_length: int | None = None  # tokens per text, special tokens included; default: the job's
    batch_tokens: int | None = 4096  # padded tokens per model call
    model_actors: int = 1
    tokenizer_actors: int = 1
    dtype: str = "float32"
    # Each model actor's devices and weights (textbatch/models/sharding.py, quantize.py).
    devices_per_actor: int | None = None  # GPUs or TPU chips Ray gives each model actor; None: 1 GPU if any
    mesh: str | None = None  # "data=N,model=M" over those devices; None: the model axis as wide as the weights need
    # (with devices_per_actor > 1; otherwise the actor's default device)
    load_in_8bit: bool = False  # dense kernels as int8 with per-channel scales
    # Sizes and resources: configuration rather than command-line options.
    rows_per_model_call: int = 4096  # rows sorted and batched together; more rows, less padding (a CLI flag too)
    rows_per_tokenizer_call: int = 1024  # (at most rows_per_model_call)
    padded_lengths: tuple[int, ...] | None = None  # the compiled shapes' lengths; default: batching.bucket_lengths
    # JAX's persistent compilation cache (a folder or URL; "off"); None: $TEXTBATCH_COMPILATION_CACHE, else
    # ~/.cache/textbatch/jax. A rerun loads its programs instead of compiling them (operators/compilation_cache.py).
    compilation_cache: str | None = None
    # CPU reservations are small so that on a 2-CPU machine the actors leave a whole CPU free: Ray Data's file
    # listing task asks for 1 CPU and cannot be configured, and the job waits forever if it cannot get it.
    model_actor_cpus: float = 0.5  # JAX uses every core of its node whatever Ray counts; this only reserves room
    model_actor_gpus: float | None = None  # None: 1 per model actor when the cluster has GPUs, else 0
    model_actor_resources: dict[str, float] | None = None  # e.g. {"TPU": 4} on a TPU host
    tokenizer_actor_cpus: float = 0.25
    io_task_cpus: float = 0.25  # read and write tasks
    overwrite: bool = True  # a run may replace the committed output in `output` (once its own is committed)
    # Committing (jobs/commit.py). A rerun with the same options resumes a run that never committed.
    incremental: bool = False  # process only input files the committed output has not seen, and keep its parts
    commit_bytes: int = DEFAULT_COMMIT_BYTES  # input bytes per commit group; a kill loses at most the groups in flight
    # Bad rows, bad files and failures (README: "Bad rows, bad files and failures").
    max_chars: int = 1_000_000  # characters kept per text, cut before tokenizing; a cut text is flagged truncated
    on_bad_file: str = "fail"  # "skip": go on without the files preflight rejects, listing them in the report
    batch_retries: int = 1  # runs again of a batch that raised, before its rows are isolated (operators/isolation.py)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.on_bad_file not in ON_BAD_FILE:
            raise ValueError(f"on_bad_file must be one of {ON_BAD_FILE}, got {self.on_bad_file!r}")
        if self.batch_retries < 0:
            raise ValueError(f"batch_retries must be at least 0, got {self.batch_retries}")
        for name in (
            "batch_tokens",
            "model_actors",
            "tokenizer_actors",
            "rows_per_model_call",
            "rows_per_tokenizer_call",
            "commit_bytes",
            "max_chars",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.padded_lengths is not None and list(self.padded_lengths) != sorted(set(self.padded_lengths)):
            raise ValueError(f"padded_lengths must be increasing, got {self.padded_lengths}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must leave room for a special token and a text token; got {self.max_length}")
        if self.devices_per_actor is not None and self.devices_per_actor < 1:
            raise ValueError(f"devices_per_actor must be at least 1, got {self.devices_per_actor}")
        if self.mesh is not None:
            from textbatch.models.sharding import parse_mesh

            sizes = parse_mesh(self.mesh)  # a ValueError naming the expected form
            covered = sizes.get("data", 1) * sizes.get("model", 1)
            if self.devices_per_actor is not None and len(sizes) == 2 and covered != self.devices_per_actor:
                raise ValueError(
                    f"mesh {self.mesh} covers {covered} devices but devices_per_actor is {self.devices_per_actor}"
                )


@dataclasses.dataclass(frozen=True)
class JobSummary:
    """The run report every job prints; `lines()` is what a job extends. Where the time went (operators/timing.py):
    the model actors' seconds loading the checkpoint, in model calls (compiling included) and compiling; the tokenizer
    actors' and the write tasks' seconds. They are the actors' own seconds, summed over actors: tokenizing and writing
    overlap the model calls, and what the wall time has beyond them is Ray's start-up, reading and waiting."""

    output: str
    rows: int
    tokens: int
    tokens_per_second: float
    padding_efficiency: float
    errors: int
    error_kinds: dict[str, int]
    truncated: int
    files: int  # part files in the committed output
    wall_seconds: float
    input_files: int = 0  # good input files found (bad ones left out are in skipped_files) ...
    committed_files: int = 0  # ... of which were already committed (a resumed run, --incremental) and not processed
    cut_at_max_chars: int = 0  # of the truncated rows, those whose text was cut to max_chars
    skipped_files: tuple = ()  # a preflight.SkippedFile (path, problem) per input file left out (--on-bad-file skip)
    load_seconds: float = 0.0
    model_seconds: float = 0.0
    compile_seconds: float = 0.0
    compiled_shapes: int = 0
    tokenize_seconds: float = 0.0
    write_seconds: float = 0.0

    @classmethod
    def from_run(cls, run: JobRun, **extra: Any):
        """From run_job's result; `extra` fills a subclass's own fields."""
        return cls.from_counts(
            run.counts,
            run.output,
            run.wall_seconds,
            files=run.commit.files,
            input_files=run.commit.input_files,
            committed_files=run.commit.committed_files,
            skipped_files=run.skipped_files,
            **extra,
        )

    @classmethod
    def from_counts(cls, counts, output: str, wall_seconds: float, **extra: Any):
        """From the sink's WrittenCounts (this run's rows); `extra` fills the other fields."""
        extra.setdefault("files", counts.files)
        return cls(
            output=output,
            rows=counts.rows,
            tokens=counts.tokens,
            tokens_per_second=counts.tokens / wall_seconds if wall_seconds > 0 else 0.0,
            padding_efficiency=counts.processed_tokens / counts.padded_tokens if counts.padded_tokens else 1.0,
            errors=counts.errors,
            error_kinds=dict(counts.error_kinds),
            truncated=counts.truncated,
            wall_seconds=wall_seconds,
            cut_at_max_chars=int(counts.sums.get(CUT_AT_MAX_CHARS, 0)),
            load_seconds=counts.sums.get(LOAD_MS, 0) / 1000,
            model_seconds=counts.sums.get(MODEL_MS, 0) / 1000,
            compile_seconds=counts.sums.get(COMPILE_MS, 0) / 1000,
            compiled_shapes=int(counts.sums.get(SHAPES, 0)),
            tokenize_seconds=counts.sums.get(TOKENIZE_MS, 0) / 1000,
            write_seconds=counts.sums.get(WRITE_MS, 0) / 1000,
            **extra,
        )

    def lines(self) -> list[tuple[str, str]]:
        inputs = [("inputs", f"{self.input_files} files, {self.committed_files} already committed")]
        cut = f" ({self.cut_at_max_chars} cut at --max-chars)" if self.cut_at_max_chars else ""
        wall = self.wall_seconds or 1.0
        return [
            ("output", f"{redact(self.output)} ({self.files} files)"),
            *(inputs if self.input_files else []),
            ("rows", f"{self.rows}"),
            ("tokens", f"{self.tokens}"),
            ("tokens/s", f"{self.tokens_per_second:,.0f}"),
            ("padding efficiency", f"{self.padding_efficiency:.1%}"),
            ("truncated", f"{self.truncated}{cut}"),
            ("errors", f"{self.errors}"),
            *([("skipped files", f"{len(self.skipped_files)}")] if self.skipped_files else []),
            ("model load", f"{self.load_seconds:.1f} s ({self.load_seconds / wall:.0%} of wall)"),
            ("model calls", f"{self.model_seconds:.1f} s ({self.model_seconds / wall:.0%} of wall)"),
            ("  compiling", f"{self.compile_seconds:.1f} s ({self.compiled_shapes} shapes)"),
            ("tokenizing", f"{self.tokenize_seconds:.2f} s"),
            ("writing", f"{self.write_seconds:.2f} s"),
        ]

    def format(self) -> str:
        text = []
        for label, value in self.lines():
            text.append(f"{label + ':':<20}{value}")
            if label == "errors":
                text += [f"  {count} x {reason}" for reason, count in self.error_kinds.items()]
            if label == "skipped files":
                text += [f"  {skipped.path}: {skipped.problem}" for skipped in self.skipped_files]
        text.append(f"{'wall time:':<20}{self.wall_seconds:.1f} s")
        return "\n".join(text)


# ---------------------------------------------------------------------------------------------------------------------
# Locations, versions, resources
# ---------------------------------------------------------------------------------------------------------------------


def local_to_absolute(location: str) -> str:
    """Ray workers do not share the driver's working directory: give them absolute local paths."""
    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def model_location(model: str) -> str:
    # A hub id ("org/name") must stay as written; only an existing local folder is made absolute.
    return os.path.abspath(model) if os.path.exists(model) else model


def checkpoint_config(location: str, auto_class: type) -> Any:
    """The config of the checkpoint at `location` as the family class `auto_class` (a FlaxAutoModelFor... class)
    would load it, without loading weights; a model type without that head fails here, naming it."""
    from textbatch.storage import Folder

    folder = Folder.open(location)
    where = folder.location("config.json")
    if not folder.exists("config.json"):
        raise FileNotFoundError(f"{where} does not exist: is {redact(location)} a checkpoint folder?")
    model_type = folder.read_json("config.json").get("model_type")
    if not model_type:
        raise ValueError(f"{where} names no model_type, so the job cannot tell which model it is")
    return auto_class.model_class(model_type, where).config_class.from_pretrained(location)


def package_version() -> str:
    try:
        return package_metadata.version("textbatch")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def base_metadata(options: JobOptions, job: str, max_length: int) -> dict[str, Any]:
    """What every job's output files record about the run; a job adds its own options, and run_job the input files
    preflight left out (`skipped_files`, --on-bad-file skip), each with its problem."""
    return {
        "job": job,
        "textbatch_version": package_version(),
        "model": redact(model_location(options.model)),
        "max_length": max_length,
        "batch_tokens": options.batch_tokens,
        "dtype": options.dtype,
        "devices_per_actor": options.devices_per_actor,
        "mesh": options.mesh,
        "load_in_8bit": options.load_in_8bit,
        "input": redact(local_to_absolute(options.input)),
        "text_column": options.text_column,
        "id_column": options.id_column,
        "max_chars": options.max_chars,
        "on_bad_file": options.on_bad_file,
    }


def model_actor_gpus(options: JobOptions) -> float:
    """GPUs per model actor: as configured, else `devices_per_actor` (default 1) when the cluster has GPUs."""
    if options.model_actor_gpus is not None:
        return options.model_actor_gpus
    import ray

    has_gpus = ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    return float(options.devices_per_actor or 1) if has_gpus else 0.0


def model_actor_resources(options: JobOptions) -> dict[str, float]:
    """Custom resources per model actor: as configured, else {"TPU": devices_per_actor} when the cluster has TPUs
    (Ray counts TPU chips; each v4 chip is one JAX device)."""
    if options.model_actor_resources:
        return dict(options.model_actor_resources)
    import ray

    if options.devices_per_actor and ray.is_initialized() and ray.cluster_resources().get("TPU", 0) > 0:
        return {"TPU": float(options.devices_per_actor)}
    return {}


def model_weights(options: JobOptions) -> dict[str, Any]:
    """What a model operator's `weights=` takes (textbatch.models.sharding.load_options)."""
    return {"mesh": options.mesh, "devices_per_actor": options.devices_per_actor, "load_in_8bit": options.load_in_8bit}


def warn_if_actors_leave_no_cpu(options: JobOptions) -> None:
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


def warn_if_local_output_on_cluster(output: str) -> None:
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


# ---------------------------------------------------------------------------------------------------------------------
# The plan: read -> tokenize (shared), the model step (the job's), the write (shared)
# ---------------------------------------------------------------------------------------------------------------------


def check_job_input(options: JobOptions, pair_column: str | None = None):
    """Preflight the input files (operators/preflight.py), before anything is loaded: a bad file raises
    BadInputError naming it, or with `on_bad_file="skip"` is left out. Returns the CheckedInput to read."""
    from textbatch.operators.preflight import check_input

    return check_input(
        local_to_absolute(options.input),
        text_column=options.text_column,
        id_column=options.id_column,
        pair_column=pair_column,
        on_bad_file=options.on_bad_file,
    )


def read_and_tokenize(
    options: JobOptions,
    max_length: int | None,
    template: str | None = None,
    *,
    checked,
    pair_column: str | None = None,
    sources: Mapping[str, int] | None = None,
    tokenize_operator: type | None = None,
    **tokenize_options: Any,
):
    """The lazy Ray Dataset of read -> Tokenize actors: columns id, input_ids, n_tokens, truncated, error.

    `pair_column` reads a second text column as `text_pair` and tokenizes the two as a pair; `tokenize_options` go
    to Tokenize (`offsets`, `keep_text`); `max_length=None` does not truncate. `checked` is the preflight's
    CheckedInput (the job's dataset builder runs it); `sources` reads only those of its files and tags rows with their input group
    (run_job's commit plan); `tokenize_operator` replaces Tokenize (a subclass, e.g. in tests)."""
    from ray.data import ActorPoolStrategy

    from textbatch.operators.isolation import isolated
    from textbatch.operators.read import read_texts
    from textbatch.operators.row_errors import TOKENIZER_FAILED
    from textbatch.operators.tokenize import Tokenize

    dataset = read_texts(
        checked.files,
        text_column=options.text_column,
        id_column=options.id_column,
        pair_column=pair_column,
        num_cpus=options.io_task_cpus,
        sources=sources,
    )
    # Ray Data may drop the rows of blocks that fail (max_errored_blocks > 0): never here, a failure fails the job.
    dataset.context.max_errored_blocks = 0
    step = isolated(tokenize_operator or Tokenize, retries=options.batch_retries, reason=TOKENIZER_FAILED)
    return dataset.map_batches(
        step,
        fn_constructor_kwargs={
            "tokenizer_path": model_location(options.model),
            "max_length": max_length,
            "template": template,
            "pair": pair_column is not None,
            "max_chars": options.max_chars,
            **tokenize_options,
        },
        batch_format="pyarrow",
        # No larger than a model call: a bigger tokenizer batch only makes the model actors and the writes wait.
        batch_size=min(options.rows_per_tokenizer_call, options.rows_per_model_call),
        compute=ActorPoolStrategy(size=options.tokenizer_actors),
        num_cpus=options.tokenizer_actor_cpus,
    )


def map_model(dataset, operator: type, kwargs: dict[str, Any], options: JobOptions):
    """Add the job's model step: `operator(**kwargs, weights=...)` in `model_actors` actors with the options'
    resources; `weights` says where and how the actor holds the model (devices, mesh, int8). A batch that raises
    is retried, then its failing rows isolated (operators/isolation.py).

    An actor that dies (a crash, an out-of-memory kill, a lost node) is restarted, and its batch retried on it, by
    Ray Data itself: its actor pools default to `max_restarts=-1, max_task_retries=-1` (without limit, so a long job
    outlives preemptions). Ray 2.60 deprecates passing other values to map_batches, so the jobs keep these."""
    from ray.data import ActorPoolStrategy

    from textbatch.operators.isolation import isolated
    from textbatch.operators.row_errors import MODEL_FAILED

    gpus = model_actor_gpus(options)
    extra: dict[str, Any] = {"num_gpus": gpus} if gpus else {}
    resources = model_actor_resources(options)
    if resources:
        extra["resources"] = resources
    return dataset.map_batches(
        isolated(operator, retries=options.batch_retries, reason=MODEL_FAILED),
        fn_constructor_kwargs={**kwargs, "weights": model_weights(options)},
        batch_format="pyarrow",
        batch_size=options.rows_per_model_call,
        compute=ActorPoolStrategy(size=options.model_actors),
        num_cpus=options.model_actor_cpus,
        **extra,
    )


@dataclasses.dataclass(frozen=True)
class JobRun:
    """What run_job did: the sink's counts of this run's rows, the wall time, where, what is now committed, and the
    bad input files left out."""

    counts: Any  # operators.write.WrittenCounts
    wall_seconds: float
    output: str  # redacted, for reports
    commit: Any  # jobs.commit.CommitReport
    skipped_files: tuple = ()  # preflight.SkippedFile (--on-bad-file skip)


def run_job(
    options: JobOptions,
    *,
    job: str,
    metadata: dict[str, Any],
    build_dataset: Callable[..., Any],
    columns: tuple[str, ...],
    pair_column: str | None = None,
    tokens_column: str = "n_tokens",
    sum_columns: tuple[str, ...] = (),
) -> JobRun:
    """Check the input files (preflight, before any model loads: a bad file raises BadInputError, or with
    --on-bad-file skip is left out and added to `metadata`), connect to (or start) Ray, plan the commit over the files
    that passed (which of them earlier runs already hold), run `build_dataset(checked=..., sources=...)` over those
    still to do into a ResultParquetDatasink writing `columns`, then commit the output."""
    import ray

    from textbatch.operators.write import ResultParquetDatasink, WrittenCounts

    checked = check_job_input(options, pair_column)
    metadata = {**metadata, "skipped_files": [file.as_dict() for file in checked.skipped]}
    if not ray.is_initialized():
        ray.init()
    output = local_to_absolute(options.output)
    warn_if_local_output_on_cluster(output)
    warn_if_actors_leave_no_cpu(options)
    started = time.perf_counter()
    commit = plan_output_commit(options, checked, job, metadata, output)
    counts = WrittenCounts()
    if commit.todo:
        commit.start()
        dataset = build_dataset(checked=checked, sources=commit.sources())
        sink = ResultParquetDatasink(
            **sink_location(commit.staging),
            groups=commit.groups(),
            columns=columns,
            job=job,
            metadata=metadata,
            tokens_column=tokens_column,
            sum_columns=(*sum_columns, *REPORT_SUMS),
        )
        dataset.write_datasink(sink, ray_remote_args={"num_cpus": options.io_task_cpus})
        counts = sink.counts
    else:
        logger.info("every input file of %s is already committed in %s", redact(options.input), redact(output))
    report = commit.finish()
    return JobRun(counts, time.perf_counter() - started, redact(output), report, checked.skipped)


def plan_output_commit(options: JobOptions, checked: Any, job: str, metadata: dict[str, Any], output: str):
    """Describe the input files the preflight passed (sizes, versions; row counts of those to process) and work out
    which of them the output already holds. The files it left out are no inputs of the commit."""
    import fsspec

    from textbatch.jobs.commit import plan_commit
    from textbatch.jobs.input_groups import describe_inputs, with_row_counts

    files = checked.files
    return plan_commit(
        output,
        describe_inputs(files.fs, files.paths),
        job=job,
        metadata=metadata,
        incremental=options.incremental,
        overwrite=options.overwrite,
        commit_bytes=options.commit_bytes,
        count_rows=lambda pending: with_row_counts(files.fs, pending, files.kind),
        left_out=[fsspec.core.strip_protocol(skipped.path) for skipped in checked.skipped],
    )


def sink_location(location: str) -> dict[str, Any]:
    """The datasink's `path` and `filesystem`: object stores through fsspec, as the driver reads and commits them
    (one client, one set of credentials and retries), and no directory creation where there are no directories."""
    if "://" not in location:
        return {"path": location}
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = fsspec.core.url_to_fs(location)
    if getattr(fs, "local_file", False):
        return {"path": path}
    return {"path": path, "filesystem": PyFileSystem(FSSpecHandler(fs)), "try_create_dir": False}

"""Chaos benchmark: the embedding job (bundled tiny model) under injected faults, one scenario per row, and what came
out: rows in and out, duplicates, rows lost, and rows with an error by reason, all counted from the committed output.

    python bench/chaos.py            # every scenario, on a corpus of 300 good rows and every kind of bad row
    python bench/chaos.py --quick    # three scenarios on a smaller corpus

The corpus is four Parquet files salted with each bad-row kind of tests/pipelines/bad_rows.py; the faults are the
steps' subclasses of tests/pipelines/faults.py, and the killed driver is the command line SIGKILLed once part of its
output is committed, then run again (tests/pipelines/killed_driver.py). With moto installed, one more scenario reads
and writes S3 (tests/s3_server.py on loopback) that answers every 10th request with 503 Slow Down. Rows in are the
rows of the input's good files; rows out are read back with textbatch.outputs.read_output; a duplicate is an id
that comes out more than once, a lost row an input id that does not come out.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from measure import markdown_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' corpus, faults and killed-driver helpers

from tests.pipelines.bad_rows import KINDS, MAX_CHARS, good_texts, write_bad_rows_corpus
from tests.pipelines.faults import killed_once, poisoned, raises_once
from tests.pipelines.killed_driver import end_session, kill_after_a_commit, start_job
from textbatch.jobs.embed import EmbedOptions, run_embed
from textbatch.operators.predict import PredictEmbeddings
from textbatch.operators.row_errors import error_reason
from textbatch.operators.tokenize import Tokenize
from textbatch.outputs import read_output

HEADERS = ("scenario", "faults injected", "rows in", "rows out", "duplicates", "rows lost", "rows with error by reason")


@dataclasses.dataclass
class Outcome:
    """One scenario's input ids and what its committed output holds."""

    scenario: str
    faults: str
    input_ids: list[int]
    output_ids: list[int]
    errors: list[str | None]

    @property
    def duplicates(self) -> int:
        return sum(1 for count in collections.Counter(self.output_ids).values() if count > 1)

    @property
    def lost(self) -> int:
        return len(set(self.input_ids) - set(self.output_ids))

    def errors_by_reason(self) -> dict[str, int]:
        return dict(collections.Counter(error_reason(error) for error in self.errors if error is not None))

    def row(self) -> list:
        reasons = "; ".join(f"{reason}: {count}" for reason, count in sorted(self.errors_by_reason().items()))
        return [self.scenario, self.faults, len(self.input_ids), len(self.output_ids), self.duplicates, self.lost,
                reasons or "none"]  # fmt: skip


@dataclasses.dataclass
class Corpora:
    clean: Path  # good rows only, in 4 files
    salted: Path  # the same number of good rows and one row of each bad kind, in 4 files
    poison_id: int  # a good row of `salted`


def write_corpora(folder: Path, good: int) -> Corpora:
    folder.mkdir()
    salted = write_bad_rows_corpus(folder / "salted", good=good)
    clean = folder / "clean"
    clean.mkdir()
    texts = good_texts(good, seed=5)
    for part in range(4):
        keys = list(range(part, good, 4))
        table = pa.table({"id": pa.array(keys, pa.int64()), "text": [texts[key] for key in keys]})
        pq.write_table(table, clean / f"part-{part}.parquet")
    return Corpora(clean, salted.folder, salted.id_of("good-3"))


def input_ids(folder: Path) -> list[int]:
    """The ids of every file in `folder` that is readable Parquet (the good files)."""
    ids = []
    for file in sorted(folder.glob("*.parquet")):
        try:
            ids += pq.read_table(file, columns=["id"]).column("id").to_pylist()
        except (OSError, pa.ArrowInvalid):
            continue
    return ids


def outcome(scenario: str, faults: str, inputs: Path, output: str) -> Outcome:
    table = read_output(output).to_arrow(columns=["id", "error"])
    return Outcome(scenario, faults, input_ids(inputs), table.column("id").to_pylist(),
                   table.column("error").to_pylist())  # fmt: skip


def options(inputs: Path | str, output: Path | str, **changes) -> EmbedOptions:
    return EmbedOptions(
        input=str(inputs), output=str(output), max_length=64, padded_lengths=(32, 64), batch_tokens=512,
        rows_per_model_call=16, rows_per_tokenizer_call=16, max_chars=MAX_CHARS, **changes,
    )  # fmt: skip


def happened(marker: Path) -> str:
    """What a scenario reports about a fault that should happen once: whether it did."""
    return "" if marker.exists() else " (did not happen)"


# ---------------------------------------------------------------------------------------------------------------------
# Scenarios: each runs the job once (or killed and again) in `work` and returns its outcome
# ---------------------------------------------------------------------------------------------------------------------


def clean(corpora: Corpora, work: Path) -> Outcome:
    run_embed(options(corpora.clean, work / "out"))
    return outcome("clean", "none", corpora.clean, str(work / "out"))


def bad_rows(corpora: Corpora, work: Path) -> Outcome:
    run_embed(options(corpora.salted, work / "out"))
    return outcome("bad rows", f"one row of each kind: {', '.join(KINDS)}", corpora.salted, str(work / "out"))


def model_actor_killed(corpora: Corpora, work: Path) -> Outcome:
    marker = work / "died"
    run_embed(options(corpora.salted, work / "out"), model_operator=killed_once(PredictEmbeddings, marker, 2))
    faults = f"bad rows; the model actor's process exits after its 2nd batch{happened(marker)}"
    return outcome("model actor killed", faults, corpora.salted, str(work / "out"))


def tokenizer_actor_killed(corpora: Corpora, work: Path) -> Outcome:
    marker = work / "died"
    run_embed(options(corpora.salted, work / "out"), tokenize_operator=killed_once(Tokenize, marker, 1))
    faults = f"bad rows; the tokenizer actor's process exits after its 1st batch{happened(marker)}"
    return outcome("tokenizer actor killed", faults, corpora.salted, str(work / "out"))


def batch_raises_once(corpora: Corpora, work: Path) -> Outcome:
    marker = work / "raised"
    run_embed(options(corpora.salted, work / "out"), model_operator=raises_once(PredictEmbeddings, marker))
    faults = f"bad rows; the model raises on its first batch, once{happened(marker)}"
    return outcome("transient model error", faults, corpora.salted, str(work / "out"))


def poisoned_row(corpora: Corpora, work: Path) -> Outcome:
    run_embed(options(corpora.salted, work / "out"), model_operator=poisoned(PredictEmbeddings, corpora.poison_id))
    faults = f"bad rows; the model raises on every batch holding id {corpora.poison_id}"
    return outcome("poisoned row", faults, corpora.salted, str(work / "out"))


def bad_file_skipped(corpora: Corpora, work: Path) -> Outcome:
    inputs = work / "corpus"
    shutil.copytree(corpora.salted, inputs)
    whole = (inputs / "part-0.parquet").read_bytes()
    (inputs / "cut.parquet").write_bytes(whole[: len(whole) - 100])  # a copy that lost its end
    summary = run_embed(options(inputs, work / "out", on_bad_file="skip"))
    faults = f"bad rows; a truncated Parquet file, --on-bad-file skip ({len(summary.skipped_files)} skipped)"
    return outcome("bad file skipped", faults, inputs, str(work / "out"))


def driver_killed(corpora: Corpora, work: Path) -> Outcome:
    """The command line in a process of its own, SIGKILLed once a part is committed; then the same command again."""
    out, flags = work / "out", ("--max-chars", str(MAX_CHARS))
    kill_after_a_commit(start_job(corpora.salted, out, work / "killed.log", *flags), out, work / "killed.log")
    kept = len(list(out.glob("_temporary/*/part-*.json")))
    rerun = start_job(corpora.salted, out, work / "rerun.log", *flags)
    try:
        if rerun.wait(timeout=600) != 0:
            raise RuntimeError(f"the rerun failed:\n{(work / 'rerun.log').read_text()[-3000:]}")
    finally:
        end_session(rerun.pid)
    faults = f"bad rows; the driver SIGKILLed with {kept} output part(s) complete, then the same command again"
    return outcome("driver killed, rerun", faults, corpora.salted, str(out))


def s3_slow_down(corpora: Corpora, work: Path, server) -> Outcome:
    """Input and output on S3 (moto on loopback) answering every 10th request with 503 Slow Down."""
    import fsspec

    bucket = f"chaos-{work.name}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    fs.put(f"{corpora.salted}/", f"{bucket}/corpus/", recursive=True)
    server.faults.every, before = 10, server.faults.injected
    try:
        run_embed(options(f"s3://{bucket}/corpus/", f"s3://{bucket}/out", commit_bytes=1))
    finally:
        server.faults.every = 0
    faults = f"bad rows; S3 answers every 10th request with 503 Slow Down ({server.faults.injected - before} sent)"
    return outcome("S3 503s", faults, corpora.salted, f"s3://{bucket}/out")


SCENARIOS: tuple[Callable[[Corpora, Path], Outcome], ...] = (
    clean, bad_rows, model_actor_killed, tokenizer_actor_killed, batch_raises_once, poisoned_row, bad_file_skipped,
    driver_killed,
)  # fmt: skip
QUICK = (clean, bad_rows, model_actor_killed)


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------


def start_ray() -> None:
    import ray
    import ray.data

    # address="local": a Ray of our own, never a cluster the machine may run.
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
             logging_level=logging.WARNING, log_to_driver=False)  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # a plan and a summary per run otherwise


def start_s3_server():
    """moto's S3 on a free loopback port, its endpoint in os.environ (before Ray starts: its workers inherit it), or
    None without moto."""
    if importlib.util.find_spec("moto") is None:
        return None
    import socket

    from tests.s3_server import S3Server, endpoint_environment

    with socket.socket() as probe:  # a free port, taken again at once by the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(endpoint_environment(port))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = S3Server(port)
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three scenarios on a corpus of 40 good rows")
    args = parser.parse_args(argv)
    # Ray's workers and the killed driver's subprocess import this checkout (textbatch, and the tests' faults).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    server = None if args.quick else start_s3_server()
    start_ray()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as temporary:
        work = Path(temporary)
        corpora = write_corpora(work / "corpora", good=40 if args.quick else 300)
        for scenario in QUICK if args.quick else SCENARIOS:
            (work / scenario.__name__).mkdir()
            outcomes.append(scenario(corpora, work / scenario.__name__))
        if server is not None:
            (work / "s3").mkdir()
            outcomes.append(s3_slow_down(corpora, work / "s3", server))
            server.stop()
    print(markdown_table(HEADERS, [outcome.row() for outcome in outcomes]))
    return 0 if all(outcome.duplicates == outcome.lost == 0 for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

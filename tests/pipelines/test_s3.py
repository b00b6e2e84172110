"""A job on real S3 API calls (moto's server on loopback, tests/s3_server.py): corpus read from s3://, checkpoint
loaded from s3://, output written and committed to s3://, the endpoint given by AWS_ENDPOINT_URL_S3 and reaching
the Ray workers. Every 10th request gets a 503 Slow Down, and the server restarts while the job runs: the clients
retry, and nothing is lost."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import fsspec
import pyarrow.parquet as pq

from textbatch.jobs.embed import SAMPLE_CORPUS, TINY_MODEL, EmbedOptions, run_embed
from textbatch.outputs import read_output

BUCKET = "textbatch-s3-test"


def restart_when_the_run_starts(server, out_prefix: str, done: threading.Event) -> threading.Thread:
    """Once the run has recorded its attempt (its work is about to start), drop the server for a second."""
    watcher = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)

    def watch() -> None:
        deadline = time.monotonic() + 300
        while not done.is_set() and time.monotonic() < deadline:
            try:
                if watcher.glob(f"{out_prefix}/_temporary/*/_attempt.json"):
                    server.restart(down_seconds=1.0)
                    return
            except OSError:
                pass  # an injected 503 that outlasted the watcher's retries: look again
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_s3_round_trip_with_transient_errors_and_a_restart(s3_server, ray_session):
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(BUCKET)
    fs.put(str(TINY_MODEL), f"{BUCKET}/models/tiny", recursive=True)
    table = pq.read_table(SAMPLE_CORPUS, columns=["id", "text"]).slice(0, 48)
    for part in range(4):
        with fs.open(f"{BUCKET}/corpus/part-{part}.parquet", "wb") as handle:
            pq.write_table(table.slice(part * 12, 12), handle)

    options = EmbedOptions(
        input=f"s3://{BUCKET}/corpus/", output=f"s3://{BUCKET}/out", model=f"s3://{BUCKET}/models/tiny",
        max_length=64, padded_lengths=(32, 64), commit_bytes=1,
    )  # fmt: skip
    done = threading.Event()
    restart = restart_when_the_run_starts(s3_server, f"{BUCKET}/out", done)
    s3_server.faults.every = 10
    try:
        summary = run_embed(options)
    finally:
        s3_server.faults.every = 0
        done.set()
        restart.join(timeout=30)
    assert s3_server.restarts == 1 and s3_server.faults.injected > 5
    assert (summary.rows, summary.files, summary.errors) == (48, 4, 0)

    output = read_output(options.output)
    assert output.metadata["model"] == options.model and output.metadata["input"] == options.input
    assert collections.Counter(output.to_arrow(columns=["id"]).column("id").to_pylist()) == collections.Counter(
        table.column("id").to_pylist()
    )
    fs.invalidate_cache()
    assert not fs.exists(f"{BUCKET}/out/_temporary")
    # ETags identify the committed inputs: an incremental rerun finds nothing new.
    again = run_embed(dataclasses.replace(options, incremental=True))
    assert (again.rows, again.committed_files) == (0, 4)

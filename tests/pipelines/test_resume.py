"""Kill a job's driver with SIGKILL after some input groups are committed, rerun the same command: the rerun keeps
the committed groups (same part files, not recomputed), processes the rest, and every id comes out exactly once."""

from __future__ import annotations

import collections
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from textbatch.jobs.embed import SAMPLE_CORPUS
from textbatch.outputs import read_output

REPO = Path(__file__).resolve().parents[2]
FILES, ROWS = 12, 20


def session_processes(session: int) -> list[int]:
    listed = subprocess.run(["ps", "-o", "pid=", "-s", str(session)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in listed.stdout.split()]


def end_session(session: int) -> None:
    """SIGKILL every process of the session the job started in (its driver, and the local Ray it started: Ray's
    workers do not die with the driver), one by one, by id; wait until they are gone."""
    deadline = time.monotonic() + 30
    while (pids := session_processes(session)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def start_job(corpus: Path, out: Path, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, str(REPO / "pipelines" / "embed.py"), "--input", str(corpus), "--output", str(out),
        "--max-length", "64", "--commit-bytes", "1", "--rows-per-model-call", "4",
    ]  # fmt: skip
    # A Ray of its own (never a cluster the machine runs), and each tiny file its own read task, so that input groups
    # reach the writer one after another as they would in a large corpus.
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_DATA_PARQUET_BIN_PACKING_BYTES": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def corpus(tmp_path):
    table = pq.read_table(SAMPLE_CORPUS, columns=["id", "text"])
    folder = tmp_path / "corpus"
    folder.mkdir()
    for index in range(FILES):
        pq.write_table(table.slice(index * ROWS, ROWS), folder / f"day-{index:02d}.parquet")
    return folder, table.slice(0, FILES * ROWS).column("id").to_pylist()


def test_a_killed_run_resumes_where_it_stopped(corpus, tmp_path):
    folder, ids = corpus
    out = tmp_path / "out"
    job = start_job(folder, out, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 300
        while not glob.glob(f"{out}/_temporary/*/part-*.json"):  # a part is complete: kill now
            assert job.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no part committed in 300 s"
            time.sleep(0.05)
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    finally:
        end_session(job.pid)
    assert not (out / "_SUCCESS").exists(), "the job finished before it could be killed"
    with pytest.raises(FileNotFoundError, match="never committed"):
        read_output(str(out))

    # What the killed run left complete: its markers, and the part files' times.
    markers = [json.loads(Path(path).read_text()) for path in glob.glob(f"{out}/_temporary/*/part-*.json")]
    staged = {Path(path).name: Path(path).stat().st_mtime_ns for path in glob.glob(f"{out}/_temporary/*/*.parquet")}
    kept_rows = sum(marker["rows"] for marker in markers)
    assert markers and kept_rows % ROWS == 0  # one part per input file here, so every marked part is a whole group

    job = start_job(folder, out, tmp_path / "rerun.log")
    try:
        assert job.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    finally:
        end_session(job.pid)
    report = (tmp_path / "rerun.log").read_text()
    assert f"inputs:             {FILES} files, {kept_rows // ROWS} already committed" in report
    assert f"rows:               {FILES * ROWS - kept_rows}\n" in report  # only the rest was computed

    output = read_output(str(out))
    assert collections.Counter(output.to_arrow(columns=["id"]).column("id").to_pylist()) == collections.Counter(ids)
    names = {Path(path).name for path in output.files}
    for marker in markers:  # the killed run's parts are in the output, the same files, not rewritten
        assert marker["part"] in names
        assert (out / marker["part"]).stat().st_mtime_ns == staged[marker["part"]]
    assert not (out / "_temporary").exists()

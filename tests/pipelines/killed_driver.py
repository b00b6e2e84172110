"""Run a job's command line in a process session of its own, SIGKILL its driver once part of the output is committed,
and end whatever it left running. Used by test_resume.py and bench/chaos.py."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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


def start_job(corpus: Path, out: Path, log: Path, *options: str) -> subprocess.Popen:
    """pipelines/embed.py on `corpus`, one commit group per input file, with `options` added."""
    command = [
        sys.executable, str(REPO / "pipelines" / "embed.py"), "--input", str(corpus), "--output", str(out),
        "--max-length", "64", "--commit-bytes", "1", "--rows-per-model-call", "4", *options,
    ]  # fmt: skip
    # A Ray of its own (never a cluster the machine runs), and each tiny file its own read task, so that input groups
    # reach the writer one after another as they would in a large corpus.
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_DATA_PARQUET_BIN_PACKING_BYTES": "1"}
    with open(log, "w") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def kill_after_a_commit(job: subprocess.Popen, out: Path, log: Path, timeout: float = 300) -> None:
    """SIGKILL the job's driver as soon as a part of its output is complete (marked in _temporary), then end its
    session. Raises if the job ends or nothing is committed within `timeout` seconds."""
    try:
        deadline = time.monotonic() + timeout
        while not glob.glob(f"{out}/_temporary/*/part-*.json"):  # a part is complete: kill now
            if job.poll() is not None:
                raise RuntimeError(f"the job ended before it could be killed:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no part committed in {timeout} s")
            time.sleep(0.05)
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
    finally:
        end_session(job.pid)

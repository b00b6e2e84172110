"""The README's Ray Jobs command against a real cluster: `ray start --head` on loopback, then
`ray job submit --working-dir . -- python pipelines/embed.py --output DIR` on the bundled corpus.

The cluster is a separate set of processes from the test session's own Ray (tests/conftest.py): its own ports, its
own temp dir, its own token, and every command talks to it through environment variables given to the subprocess
only, never through this process's environment. It is stopped afterwards, pass or fail.
"""

from __future__ import annotations

import collections
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from textbatch.jobs.embed import SAMPLE_CORPUS
from textbatch.outputs import read_output

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NODE_IP = "127.0.0.2"  # loopback; Ray rewrites 127.0.0.1 itself to the machine's external address
PORT_OPTIONS = (
    "--port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)
START_TIMEOUT = 120
JOB_TIMEOUT = 400


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cluster_environment(token: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the job's `python` is this interpreter
        RAY_AUTH_MODE="token",  # Ray 2.60's default for new clusters, with a token of our own (not ~/.ray's)
        RAY_AUTH_TOKEN=token,
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # stop at once when the test is done
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env


def wait_for_dashboard(url: str, token: str, head: subprocess.Popen, log: Path) -> None:
    request = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"the dashboard at {url} did not answer within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")


def stop(head: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` stops the processes it started; then anything left in its process group."""
    head.terminate()
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait()
    try:
        os.killpg(head.pid, signal.SIGKILL)  # the group is the cluster's alone: the head started its own session
    except ProcessLookupError:
        pass


@pytest.fixture
def local_cluster():
    """(dashboard URL, environment for Ray commands) of a one-node cluster with 2 CPUs on loopback."""
    token = secrets.token_hex(32)
    env = cluster_environment(token)
    temp_dir = tempfile.mkdtemp(prefix="tb-ray-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    log = Path(temp_dir) / "ray-start.log"
    ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS)), strict=True))
    command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", NODE_IP]
    command += ["--dashboard-host", "127.0.0.1", "--include-dashboard", "true"]
    command += [str(item) for pair in ports.items() for item in pair]
    command += ["--num-cpus", "2", "--object-store-memory", str(256 * 1024**2), "--temp-dir", temp_dir]
    command += ["--disable-usage-stats"]
    with log.open("w") as log_file:
        head = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{ports['--dashboard-port']}"
        wait_for_dashboard(url, token, head, log)
        yield url, {**env, "RAY_ADDRESS": url}
    finally:
        stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_embedding_job(local_cluster, tmp_path):
    _, env = local_cluster
    out = tmp_path / "embeddings"
    done = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--working-dir", ".", "--", "python", "pipelines/embed.py"]
        + ["--output", str(out)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
        check=False,
    )
    report = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    assert "succeeded" in report and "rows:               360" in done.stdout, report

    # Complete: every id of the corpus exactly once, the one null text as an error without embedding.
    output = read_output(str(out))
    table = output.to_arrow()
    corpus = pq.read_table(SAMPLE_CORPUS, columns=["id", "text"])
    counts = collections.Counter(table.column("id").to_pylist())
    assert counts == collections.Counter(corpus.column("id").to_pylist())
    assert set(counts.values()) == {1}
    # The job ran on the cluster's copy of the working dir (its bundled corpus), not on this checkout.
    assert output.job == "embed" and output.metadata["input"].endswith("/textbatch/assets/sample_corpus")
    assert not output.metadata["input"].startswith(str(REPO))
    null_ids = corpus.filter(pc.is_null(corpus.column("text"))).column("id").to_pylist()
    errors = table.filter(pc.is_valid(table.column("error")))
    assert errors.column("id").to_pylist() == null_ids and errors.column("embedding").null_count == len(null_ids)
    assert table.column("embedding").null_count == len(null_ids)

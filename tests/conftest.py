"""Shared fixtures. `ray_session`: one local Ray for the whole test run, started on first use, shut down at the end.
`s3_server`: an S3 API server on loopback (tests/s3_server.py) that the driver and Ray's workers reach through the
standard AWS_* variables."""

from __future__ import annotations

import logging
import os
import random
import socket

import pytest


def _unused_port() -> int:
    """A free port between Ray's worker ports (10002-19999) and the kernel's ephemeral range (32768+), so that
    nothing Ray starts later takes it before the S3 server does."""
    for port in random.Random(os.getpid()).sample(range(20000, 32000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000 for the test S3 server")


@pytest.fixture(scope="session")
def s3_environment():
    """The S3 endpoint's port, with AWS_ENDPOINT_URL_S3 and fake credentials set in os.environ. Ray's local workers
    inherit the environment of the process that starts Ray, so `ray_session` asks for this first."""
    from tests.s3_server import endpoint_environment

    port = _unused_port()
    variables = endpoint_environment(port)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield port
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_server(s3_environment):
    """moto's S3 on the reserved port, for the whole session (buckets: one per test, by name)."""
    pytest.importorskip("moto", reason="the S3 tests need moto[server] (the test extra)")
    from tests.s3_server import S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = S3Server(s3_environment)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_session(s3_environment):
    import ray
    import ray.data

    # address="local": always a fresh Ray of our own, never a cluster the machine may happen to run.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()

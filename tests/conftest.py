"""Shared fixtures. `ray_session`: one local Ray for the whole test run, started on first use, shut down at the end."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def ray_session():
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

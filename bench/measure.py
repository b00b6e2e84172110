"""What the benchmarks share: running a system in a process of its own while sampling its memory, the machine's matrix
multiply peak as JAX measures it, model FLOPs for MFU, the load average, and the table.

Each system runs in a fresh process (`run_isolated`): its thread pools and memory are its own, and the peak RSS of
that process and everything it starts (Ray's raylet, workers and actors) is sampled every 0.2 s and summed over the
processes. Shared pages (Ray's object store) are counted once per process that maps them, so a Ray job's figure is an
upper bound.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Self


def load_average() -> float:
    return os.getloadavg()[0]


class TreePeakRss:
    """Samples the summed RSS of a process and its descendants until stopped; `peak` is in bytes."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) used so far by this process and its live descendants (Ray's
    processes when this process started Ray). On a shared machine, tokens per CPU-second compare systems better than
    tokens per wall second: the load of other work lengthens the wall time, not the CPU time (threads that spin
    while waiting still count)."""
    import psutil

    total = 0.0
    root = psutil.Process()
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _pid() -> int:
    return os.getpid()


def run_isolated(function: Callable[..., dict], *args: Any, **kwargs: Any) -> dict:
    """`function(*args, **kwargs)` (a module-level function returning a dict) in a fresh spawned process; the dict
    comes back with `peak_rss` (bytes, the process tree's) and the load average before and after."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pid = pool.submit(_pid).result()  # start the process first, so the sampler watches it from the beginning
        load_before = load_average()
        with TreePeakRss(pid) as rss:
            result = pool.submit(function, *args, **kwargs).result()
        result.update(peak_rss=rss.peak, load_before=load_before, load_after=load_average())
    return result


def matmul_peak(dtype: str = "float32", size: int = 2048, seconds: float = 3.0) -> float:
    """The best of a few timings of [size, size] x [size, size] matmuls (accumulating in float32), in FLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    multiply = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    multiply(a, b).block_until_ready()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(3):
            out = multiply(a, b)
        out.block_until_ready()
        best = max(best, 3 * 2 * size**3 / (time.perf_counter() - started))
    return best


def matmul_peaks() -> dict:
    """fp32 and bf16 peaks, measured in a process of their own."""
    return {"float32": matmul_peak("float32"), "bfloat16": matmul_peak("bfloat16")}


def encoder_flops(lengths: Sequence[int], hidden: int, intermediate: int, layers: int) -> float:
    """Matrix-multiply FLOPs of a BERT-style encoder over rows of the given (real, unpadded) lengths: per layer and
    token the four attention projections and the two feed-forward matrices, plus scores and context per token pair."""
    total = 0.0
    for n in lengths:
        total += layers * (2 * n * (4 * hidden * hidden + 2 * hidden * intermediate) + 2 * 2 * n * n * hidden)
    return total


def gb(size: float) -> str:
    return f"{size / 2**30:.1f}" if size else "-"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)

"""Compiled programs per padded shape, and what compiling one more is worth in padded tokens (for `plan_batches`).

A model actor compiles each input shape once, ahead of its first call, and times it: the run report shows the
compile seconds, and the batch planner weighs a new shape against the padding it would save. That weight, in padded
tokens of model work, is either fixed or measured as the actor runs (mean compile seconds x padded tokens per
second): the ratio adapts to the model, the hardware, a warm compilation cache and the machine's load. It is divided
by the calls made so far + 1: the longer an actor has been running, the more later blocks a shape compiled now serves.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MEASURED = "measured"
# The starting estimate: xlm-roberta-base on a 2-core CPU compiles a shape in ~4 s and computes ~1,600 padded tokens/s.
INITIAL_SHAPE_COST = 8192.0


class CompiledShapes:
    """`jax.jit(function)` (or `function` itself when it is jitted already) compiled ahead of time per input shape,
    with the seconds it took (for the run report)."""

    def __init__(self, function, describe: str):
        import jax

        self.jitted = function if hasattr(function, "lower") else jax.jit(function)
        self.describe = describe
        self.programs: dict[tuple, object] = {}
        self.seconds = 0.0

    def __contains__(self, shape: tuple) -> bool:
        return shape in self.programs

    def get(self, shape: tuple, *example_arguments):
        """The program for `shape`; compiled from the (abstract or concrete) example arguments the first time."""
        program = self.programs.get(shape)
        if program is None:
            started = time.perf_counter()
            program = self.jitted.lower(*example_arguments).compile()
            seconds = time.perf_counter() - started
            self.seconds += seconds
            self.programs[shape] = program
            logger.info("compiled %s for %s in %.1fs", self.describe, list(shape), seconds)
        return program


class ShapeCost:
    """`setting`: padded tokens per new shape (a number), None (shapes are free: pad the least), or "measured"."""

    def __init__(self, setting: float | str | None = MEASURED):
        if setting is not None and setting != MEASURED and not (isinstance(setting, (int, float)) and setting >= 0):
            raise ValueError(f"shape_cost must be a number >= 0, {MEASURED!r} or None; got {setting!r}")
        self.setting = setting
        self.calls = 0
        self.compiled = 0
        self.compile_seconds = 0.0
        self.padded_tokens = 0
        self.run_seconds = 0.0

    @property
    def unmeasured(self) -> bool:
        """Measured costs, but nothing compiled and run yet to measure them on."""
        return self.setting == MEASURED and not (self.compiled and self.run_seconds > 0)

    def record(self, padded_tokens: int, seconds: float, compile_seconds: float, compiled: int) -> None:
        """The padded tokens some batches computed, their wall seconds, and the seconds and shapes they compiled."""
        self.compiled += compiled
        self.compile_seconds += compile_seconds
        self.padded_tokens += padded_tokens
        self.run_seconds += max(seconds - compile_seconds, 0.0)

    def per_token_estimate(self) -> float:
        if self.setting != MEASURED:
            return float(self.setting)
        if self.unmeasured or not self.padded_tokens:
            return INITIAL_SHAPE_COST
        return self.compile_seconds / self.compiled * self.padded_tokens / self.run_seconds

    def current(self) -> float | None:
        """What a new shape costs in this call's plan, or None when shapes are free."""
        if self.setting is None:
            return None
        return self.per_token_estimate() / (1 + self.calls)


class PlannedCall:
    """One model call of an actor: plan the rows' batches, dispatch them all (JAX runs them asynchronously while the
    host pads the next), and keep the shape cost up to date.

    While the shape cost is still unmeasured, the first batch (the longest rows: the same in every plan) is compiled
    and run alone first, and what it took prices the shapes of the rest of the plan.
    """

    def __init__(self, programs: CompiledShapes, cost: ShapeCost):
        self.programs, self.cost = programs, cost
        self.started = time.perf_counter()
        self.compile_seconds = programs.seconds
        self.shapes = len(programs.programs)
        self.padded_tokens = 0

    def dispatch(self, lengths: np.ndarray, plan: Callable[[np.ndarray], list], run: Callable[[Any], Any]) -> list:
        """[(batch, run(batch))] for every batch of `plan(lengths)`; `plan` is called again (on the rows left) once
        the first batch has measured the shape cost."""
        import jax

        batches = plan(lengths)
        pending = []
        if batches and self.cost.unmeasured:
            first = batches[0]
            started, compiled, shapes = time.perf_counter(), self.programs.seconds, len(self.programs.programs)
            result = jax.block_until_ready(run(first))
            self.cost.record(
                first.padded_tokens,
                time.perf_counter() - started,
                self.programs.seconds - compiled,
                len(self.programs.programs) - shapes,
            )
            pending.append((first, result))
            rest = np.setdiff1d(np.arange(len(lengths)), first.rows)
            batches = [dataclasses.replace(b, rows=rest[b.rows]) for b in plan(lengths[rest])] if len(rest) else []
            self.started, self.compile_seconds = time.perf_counter(), self.programs.seconds
            self.shapes = len(self.programs.programs)
        for batch in batches:
            pending.append((batch, run(batch)))
            self.padded_tokens += batch.padded_tokens
        return pending

    def done(self) -> None:
        """After the results are fetched: what the call (past its measuring batch) took goes into the shape cost."""
        self.cost.record(
            self.padded_tokens,
            time.perf_counter() - self.started,
            self.programs.seconds - self.compile_seconds,
            len(self.programs.programs) - self.shapes,
        )
        self.cost.calls += 1

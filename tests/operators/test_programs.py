"""Programs compiled ahead per shape, and what one more shape is worth to the batch planner."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from textbatch.operators.batching import plan_batches
from textbatch.operators.programs import INITIAL_SHAPE_COST, MEASURED, CompiledShapes, PlannedCall, ShapeCost


def test_each_shape_compiles_once_and_is_timed():
    programs = CompiledShapes(lambda x: jnp.tanh(x) * 3, "tanh")
    first = programs.get((3, 5), np.ones((3, 5), np.float32))
    seconds = programs.seconds
    assert seconds > 0 and (3, 5) in programs
    assert programs.get((3, 5), np.ones((3, 5), np.float32)) is first and programs.seconds == seconds
    np.testing.assert_allclose(first(np.zeros((3, 5), np.float32)), 0.0)
    programs.get((2, 7), np.ones((2, 7), np.float32))
    assert len(programs.programs) == 2 and programs.seconds > seconds


def test_fixed_free_and_measured_costs():
    assert ShapeCost(None).current() is None
    fixed = ShapeCost(1000)
    assert fixed.current() == 1000 and not fixed.unmeasured
    fixed.calls += 1
    assert fixed.current() == 500  # divided by calls made + 1
    measured = ShapeCost(MEASURED)
    assert measured.unmeasured and measured.current() == INITIAL_SHAPE_COST  # nothing measured yet
    # two shapes compiled in 3 s; 6000 padded tokens computed in the other 2 s: a shape is worth 1.5 s x 3000 tok/s
    measured.record(padded_tokens=6000, seconds=5.0, compile_seconds=3.0, compiled=2)
    assert not measured.unmeasured and measured.current() == pytest.approx(4500)
    measured.record(padded_tokens=3000, seconds=1.0, compile_seconds=0.0, compiled=0)
    measured.calls += 1
    assert measured.current() == pytest.approx(1.5 * 3000 / 2)


def test_a_call_measures_the_shape_cost_on_its_first_batch_then_plans_the_rest():
    programs = CompiledShapes(lambda x: jnp.cumsum(x, axis=1), "cumsum")
    cost = ShapeCost(MEASURED)
    lengths = np.array([30, 3, 29, 5, 17, 2, 31])
    seen_costs = []

    def plan(lengths):
        seen_costs.append(cost.current())
        return plan_batches(lengths, 64, (8, 16, 32), shape_cost=cost.current(), known_shapes=programs.programs)

    def run(batch):
        x = np.ones(batch.shape, np.float32)
        return programs.get(batch.shape, x)(x)

    call = PlannedCall(programs, cost)
    done = call.dispatch(lengths, plan, run)
    call.done()
    assert seen_costs[0] == INITIAL_SHAPE_COST and len(seen_costs) == 2 and seen_costs[1] != INITIAL_SHAPE_COST
    assert done[0][0].rows.tolist() == [6, 0]  # the two longest rows measured the cost
    rows = np.concatenate([batch.rows for batch, _ in done])
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every row once, indices into the whole block
    for batch, result in done:
        assert result.shape == batch.shape and lengths[batch.rows].max() <= batch.length
    assert cost.calls == 1 and cost.compiled == len(programs.programs)
    again = PlannedCall(programs, cost)  # measured now: one plan, no batch run alone
    seen_costs.clear()
    again.dispatch(lengths, plan, run)
    assert len(seen_costs) == 1


@pytest.mark.parametrize("setting", [-1, "cheap", [3]])
def test_bad_settings_are_refused(setting):
    with pytest.raises(ValueError, match="shape_cost must be"):
        ShapeCost(setting)

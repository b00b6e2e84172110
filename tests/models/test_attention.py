"""Keys shared by groups of query rows (the beams of a prompt) attend exactly as the keys repeated per row."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from textbatch.models.attention import attend

PROMPTS, GROUP, HEADS, DIM, KEYS = 3, 4, 2, 5, 7


def random(rng, *shape):
    return jnp.asarray(rng.normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("q_len", [1, 3])
@pytest.mark.parametrize("bias_rows", ["prompt", "query row", "shared"])
@pytest.mark.parametrize("heads_first", [False, True])
def test_grouped_keys_equal_repeated_keys(q_len, bias_rows, heads_first):
    rng = np.random.default_rng(0)
    rows = PROMPTS * GROUP
    query = random(rng, rows, q_len, HEADS, DIM)
    key, value = random(rng, PROMPTS, KEYS, HEADS, DIM), random(rng, PROMPTS, KEYS, HEADS, DIM)
    bias = {
        "prompt": random(rng, PROMPTS, 1, 1, KEYS),
        "query row": random(rng, rows, HEADS, q_len, KEYS),
        "shared": random(rng, 1, HEADS, q_len, KEYS),
    }[bias_rows]
    repeated_bias = jnp.repeat(bias, GROUP, axis=0) if bias_rows == "prompt" else bias

    def layout(x):
        return jnp.swapaxes(x, 1, 2) if heads_first else x

    expected = attend(query, layout(jnp.repeat(key, GROUP, 0)), layout(jnp.repeat(value, GROUP, 0)), repeated_bias,
                      scale=0.5, heads_first=heads_first)
    got = attend(query, layout(key), layout(value), bias, scale=0.5, heads_first=heads_first)
    for ours, reference in zip(got, expected, strict=True):
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)


def test_uneven_groups_are_refused():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="5 query rows cannot share 2 rows of keys"):
        attend(random(rng, 5, 1, HEADS, DIM), random(rng, 2, KEYS, HEADS, DIM), random(rng, 2, KEYS, HEADS, DIM),
               None, scale=1.0)

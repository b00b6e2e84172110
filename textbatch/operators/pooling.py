"""Sentence vectors from token states, as pure JAX functions meant to run inside the compiled model call.

Mean pooling averages the states of every real token, `<s>` and `</s>` included (the attention mask's ones), as
sentence-transformers does for XLM-R; `cls` takes the state of the first token, `<s>`.
"""

from __future__ import annotations

import jax.numpy as jnp

POOLINGS = ("mean", "cls")


def pool(hidden: jnp.ndarray, mask: jnp.ndarray, pooling: str) -> jnp.ndarray:
    """`hidden` [batch, len, hidden], `mask` [batch, len] of 0/1 -> [batch, hidden] in float32."""
    hidden = hidden.astype(jnp.float32)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        weights = mask.astype(jnp.float32)[..., None]  # [batch, len, 1]
        total = jnp.sum(hidden * weights, axis=1)  # [batch, hidden]
        count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)  # [batch, 1]; a row without tokens stays finite
        return total / count
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def pool_segments(hidden: jnp.ndarray, segments: jnp.ndarray, count: int, pooling: str) -> jnp.ndarray:
    """Rows packed side by side (packing.py): `hidden` [batch, len, hidden], `segments` [batch, len] (the packed row
    1..count a token belongs to, 0 for padding) -> [batch, count, hidden] in float32, each packed row pooled as `pool`
    pools a row of its own."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    hidden = hidden.astype(jnp.float32)
    member = (segments[..., None] == jnp.arange(1, count + 1)).astype(jnp.float32)  # [batch, len, count]
    if pooling == "cls":  # each packed row's first token
        first = member * (jnp.cumsum(member, axis=1) == 1)
        return jnp.einsum("blc,blh->bch", first, hidden)
    totals = jnp.einsum("blc,blh->bch", member, hidden)
    return totals / jnp.maximum(jnp.sum(member, axis=1), 1.0)[..., None]


def l2_normalize(vectors: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    """Scale each row to unit length; an all-zero row stays zero."""
    norms = jnp.sqrt(jnp.sum(vectors * vectors, axis=-1, keepdims=True))
    return vectors / jnp.maximum(norms, eps)

"""Scaled dot-product attention shared by every family, softmax always in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def padding_bias(mask: jax.Array) -> jax.Array:
    """A [batch, keys] 0/1 mask as an additive float32 bias [batch, 1, 1, keys]."""
    return jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


def attend(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    bias: jax.Array | None,
    *,
    scale: float,
    dropout: callable | None = None,
    head_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """query [batch, q_len, heads, head_dim], key/value [batch, k_len, heads, head_dim] -> (context, probabilities).

    `bias` broadcasts to [batch, heads, q_len, k_len]; `head_mask` [heads] scales each head's probabilities, as the
    reference's head_mask did. Returns the context [batch, q_len, heads, head_dim] in the query's dtype and the
    probabilities [batch, heads, q_len, k_len].
    """
    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32) * scale
    if bias is not None:
        scores = scores + bias
    probs = jax.nn.softmax(scores, axis=-1).astype(query.dtype)  # [batch, heads, q_len, k_len]
    if dropout is not None:
        probs = dropout(probs)
    if head_mask is not None:
        probs = probs * head_mask[None, :, None, None].astype(probs.dtype)
    context = jnp.einsum("bhqk,bkhd->bqhd", probs, value)  # [batch, q_len, heads, head_dim]
    return context, probs

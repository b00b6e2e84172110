"""Logits processors for `generate`: pure functions of (scores, sequences so far, current length), static shapes.

Each mirrors the transformers processor of the same purpose, in the order transformers applies them:
repetition penalty -> no-repeat n-grams -> minimum length -> minimum new tokens, then, when sampling,
temperature -> top-k -> top-p. `sequences` is [rows, max_length] with `cur_len` positions filled (the decoder start
token included, as the reference counts it); positions from `cur_len` on hold filler and are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from textbatch.models.generation import GenerationConfig

NEG_INF = -jnp.inf


def _filled(sequences: jax.Array, cur_len: jax.Array) -> jax.Array:
    """[max_length] bool: which positions hold generated (or start) tokens."""
    return jnp.arange(sequences.shape[1]) < cur_len


def _token_counts(sequences: jax.Array, weights: jax.Array, vocab_size: int) -> jax.Array:
    """[rows, vocab] int32: per row, the summed weight of each token id in `sequences` (weights [rows|1, length])."""
    rows = jnp.arange(sequences.shape[0])[:, None]
    ids = jnp.clip(sequences, 0, vocab_size - 1)  # filler may be outside the vocabulary; its weight is 0
    weights = jnp.broadcast_to(weights, sequences.shape).astype(jnp.int32)
    return jnp.zeros((sequences.shape[0], vocab_size), jnp.int32).at[rows, ids].add(weights)


def repetition_penalty(scores: jax.Array, sequences: jax.Array, cur_len: jax.Array, penalty: float) -> jax.Array:
    """Tokens already in the sequence: negative scores multiplied by `penalty`, positive ones divided by it."""
    seen = _token_counts(sequences, _filled(sequences, cur_len)[None, :], scores.shape[-1]) > 0
    penalized = jnp.where(scores < 0, scores * penalty, scores / penalty)
    return jnp.where(seen, penalized, scores)


def no_repeat_ngram(scores: jax.Array, sequences: jax.Array, cur_len: jax.Array, size: int) -> jax.Array:
    """Ban every token that would complete an n-gram (n = `size`) already present in the sequence."""
    length = sequences.shape[1]
    if size > length:
        return scores
    n_windows = length - size + 1
    windows = jnp.stack([sequences[:, j : j + n_windows] for j in range(size)], axis=-1)  # [rows, windows, size]
    if size > 1:
        # The last size-1 tokens; when fewer are filled, no window is complete either, so the clamp is harmless.
        start = jnp.clip(cur_len - (size - 1), 0, length - (size - 1))
        prefix = jax.lax.dynamic_slice_in_dim(sequences, start, size - 1, axis=1)  # [rows, size - 1]
        matches = jnp.all(windows[:, :, :-1] == prefix[:, None, :], axis=-1)  # [rows, windows]
    else:
        matches = jnp.ones(windows.shape[:2], dtype=bool)
    complete = jnp.arange(n_windows) + size <= cur_len  # the whole window lies in the filled part
    banned = _token_counts(windows[:, :, -1], matches & complete[None, :], scores.shape[-1]) > 0
    return jnp.where(banned, NEG_INF, scores)


def suppress_tokens(scores: jax.Array, token_ids: tuple[int, ...], when: jax.Array) -> jax.Array:
    """Scores of `token_ids` set to -inf where `when` (a scalar) is true."""
    target = jnp.zeros(scores.shape[-1], dtype=bool).at[jnp.asarray(token_ids)].set(True)
    return jnp.where(when & target[None, :], NEG_INF, scores)


def top_k_filter(scores: jax.Array, top_k: int) -> jax.Array:
    """Keep the scores at least as high as the k-th highest (ties with it included)."""
    top_k = min(top_k, scores.shape[-1])
    threshold = jax.lax.top_k(scores, top_k)[0][:, -1:]
    return jnp.where(scores < threshold, NEG_INF, scores)


def top_p_filter(scores: jax.Array, top_p: float, min_tokens_to_keep: int) -> jax.Array:
    """Keep the smallest set of most likely tokens whose probabilities add up to more than `top_p`."""
    order = jnp.argsort(scores, axis=-1)  # ascending, as the reference sorts
    ascending = jnp.take_along_axis(scores, order, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1)
    remove_sorted = cumulative <= 1 - top_p
    remove_sorted = remove_sorted.at[:, -min_tokens_to_keep:].set(False)
    rows = jnp.arange(scores.shape[0])[:, None]
    remove = jnp.zeros_like(remove_sorted).at[rows, order].set(remove_sorted)
    return jnp.where(remove, NEG_INF, scores)


def process_logits(
    scores: jax.Array,
    sequences: jax.Array,
    cur_len: jax.Array,
    config: GenerationConfig,
    *,
    prompt_length: int = 1,
    min_tokens_to_keep: int = 1,
) -> jax.Array:
    """All processors `config` asks for, in the reference's order. `scores` [rows, vocab] float32."""
    eos = config.eos_token_ids
    if config.repetition_penalty != 1.0:
        scores = repetition_penalty(scores, sequences, cur_len, config.repetition_penalty)
    if config.no_repeat_ngram_size > 0:
        scores = no_repeat_ngram(scores, sequences, cur_len, config.no_repeat_ngram_size)
    if eos and config.min_length > 0:
        scores = suppress_tokens(scores, eos, cur_len < config.min_length)
    if eos and config.min_new_tokens:
        scores = suppress_tokens(scores, eos, cur_len - prompt_length < config.min_new_tokens)
    if config.do_sample:
        if config.temperature != 1.0:
            scores = scores / config.temperature
        if config.top_k:
            scores = top_k_filter(scores, max(config.top_k, min_tokens_to_keep))
        if config.top_p < 1.0:
            scores = top_p_filter(scores, config.top_p, min_tokens_to_keep)
    return scores

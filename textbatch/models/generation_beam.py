"""Beam search in one `lax.while_loop`, step for step the vectorised beam search of transformers 5.

Per prompt the state holds `num_beams` running hypotheses and `num_beams` finished ones. Each step:
  1. scores of every (running beam, next token) = beam score + processed log-probabilities;
  2. the best K = (1 + number of eos ids, at least 2) * num_beams candidates (or K sampled, without replacement);
  3. candidates that end (eos, or max_length reached) leave the running set; the best num_beams others continue,
     and the KV cache follows their source beams;
  4. ending candidates among the first num_beams join the finished set with score / generated_length**length_penalty,
     keeping the best num_beams finished;
  5. stop when no running beam can still beat the finished ones (`early_stopping` decides how that is judged),
     when every prompt has num_beams finished hypotheses (early_stopping=True), or at max_length.
The floating-point arithmetic (float32, -1e9 penalties, length penalties computed in float64 then rounded) follows the
reference, so the same logits select the same hypotheses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from textbatch.models.generation_logits import process_logits

if TYPE_CHECKING:
    from textbatch.models.generation import GenerationConfig

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
_PENALTY = np.float32(-1.0e9)  # what the reference adds to rule a hypothesis out
_PROMPT_LENGTH = 1  # the decoder prompt: the start token


@flax.struct.dataclass
class BeamSearchState:
    cur_len: jax.Array  # scalar: positions filled in the sequences, start token included
    running_sequences: jax.Array  # [batch, beams, max_length]
    running_scores: jax.Array  # [batch, beams] summed log-probabilities
    sequences: jax.Array  # [batch, beams, max_length] finished hypotheses, best first
    scores: jax.Array  # [batch, beams] their length-penalised scores
    lengths: jax.Array  # [batch, beams] their generated tokens (0 for an empty slot)
    is_finished: jax.Array  # [batch, beams] whether a slot holds a finished hypothesis
    can_improve: jax.Array  # [batch, 1] whether running beams may still beat the finished ones
    keep_going: jax.Array  # scalar bool
    cache: Any  # the decoder's KV cache, [batch * beams, ...] leaves
    rng: jax.Array


def _take_beams(array: jax.Array, indices: jax.Array) -> jax.Array:
    """array [batch, n, ...], indices [batch, m] -> [batch, m, ...]."""
    indices = indices.reshape(indices.shape + (1,) * (array.ndim - 2))
    return jnp.take_along_axis(array, indices, axis=1)


def reorder_cache(cache: Any, flat_indices: jax.Array) -> Any:
    """Gather every cache leaf with a leading [batch * beams] axis; scalars (the cache index) stay as they are."""
    rows = flat_indices.shape[0]

    def gather(leaf):
        if leaf.ndim == 0 or leaf.shape[0] != rows:
            return leaf
        return jnp.take(leaf, flat_indices, axis=0)

    return jax.tree_util.tree_map(gather, cache)


def _log_softmax(logits: jax.Array) -> jax.Array:
    """`jax.nn.log_softmax(logits, axis=-1)`, bit for bit where the row's maximum is finite. Written out with a
    finite-guarded maximum (as jax.nn.logsumexp guards it), XLA's CPU code no longer fuses the reductions into the
    output head's product: 5 ms instead of 9 for the head and this over 64 x 32128 logits."""
    best = jnp.max(logits, axis=-1, keepdims=True)
    shifted = logits - jnp.where(jnp.isfinite(best), best, 0.0)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def _length_penalties(max_length: int, length_penalty: float) -> jax.Array:
    """float32(n ** length_penalty) for n = 0 .. max_length, computed in float64 as the reference's Python does."""
    return jnp.asarray(np.array([float(n) ** length_penalty for n in range(max_length + 1)], dtype=np.float32))


def beam_search(
    tokens_to_logits: TokensToLogits,
    cache: Any,
    batch_size: int,
    config: GenerationConfig,
    rng: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns (sequences [batch * num_return_sequences, max_length], their scores, the used length).

    `tokens_to_logits(tokens [batch * beams, 1], cache) -> (logits [batch * beams, vocab], cache)`; `cache` is for
    batch * beams rows, the beams of a prompt next to each other. Positions past a hypothesis's end hold the
    reference's filler (pad, or eos when pad is 0 or missing).
    """
    beams = config.num_beams
    max_length = config.total_length
    eos = config.eos_token_ids
    early_stopping = config.early_stopping
    candidates = max(2, 1 + len(eos)) * beams
    filler = config.beam_filler
    penalties = _length_penalties(max_length, config.length_penalty)
    in_top_beams = jnp.arange(candidates) < beams

    start = jnp.full((batch_size, beams, max_length), filler, dtype=jnp.int32)
    start = start.at[:, :, 0].set(config.decoder_start_token_id)
    initial = BeamSearchState(
        cur_len=jnp.array(_PROMPT_LENGTH, jnp.int32),
        running_sequences=start,
        # Only the first beam is live at the start, so the beams do not all pick the same tokens.
        running_scores=jnp.zeros((batch_size, beams), jnp.float32).at[:, 1:].set(_PENALTY),
        sequences=start,
        scores=jnp.full((batch_size, beams), _PENALTY, jnp.float32),
        lengths=jnp.zeros((batch_size, beams), jnp.int32),
        is_finished=jnp.zeros((batch_size, beams), bool),
        can_improve=jnp.ones((batch_size, 1), bool),
        keep_going=jnp.array(True),
        cache=cache,
        rng=rng,
    )

    def condition(state: BeamSearchState):
        return state.keep_going & (state.cur_len < max_length)

    def step(state: BeamSearchState) -> BeamSearchState:
        cur_len = state.cur_len
        flat = state.running_sequences.reshape(batch_size * beams, max_length)
        tokens = jax.lax.dynamic_slice_in_dim(flat, cur_len - 1, 1, axis=1)  # [batch * beams, 1]
        logits, cache = tokens_to_logits(tokens, state.cache)
        log_probs = _log_softmax(logits.astype(jnp.float32))
        log_probs = process_logits(log_probs, flat, cur_len, config, min_tokens_to_keep=len(eos) + 1)
        vocab = log_probs.shape[-1]
        totals = (log_probs.reshape(batch_size, beams, vocab) + state.running_scores[:, :, None]).reshape(
            batch_size, beams * vocab
        )

        # 2. the best (or sampled) candidates over all beams of a prompt
        rng, sample_rng = jax.random.split(state.rng)
        if config.do_sample:  # K draws without replacement from softmax(totals): the Gumbel top-k trick
            gumbel = jax.random.gumbel(sample_rng, totals.shape, jnp.float32)
            _, top_indices = jax.lax.top_k(totals + gumbel, candidates)
            top_scores = jnp.take_along_axis(totals, top_indices, axis=1)
        else:
            top_scores, top_indices = jax.lax.top_k(totals, candidates)  # [batch, K]
        source_beams = top_indices // vocab
        top_tokens = (top_indices % vocab).astype(jnp.int32)
        top_sequences = _take_beams(state.running_sequences, source_beams)
        top_sequences = jax.lax.dynamic_update_slice_in_dim(top_sequences, top_tokens[:, :, None], cur_len, axis=2)
        ends = cur_len + 1 >= max_length
        if eos:
            ends = ends | jnp.isin(top_tokens, jnp.asarray(eos))
        ends = jnp.broadcast_to(ends, top_tokens.shape)

        # 3. the running set: the best candidates that did not end
        running_candidates = top_scores + ends.astype(jnp.float32) * _PENALTY
        _, keep = jax.lax.top_k(running_candidates, beams)
        running_sequences = _take_beams(top_sequences, keep)
        running_scores = _take_beams(running_candidates, keep)
        flat_sources = (jnp.arange(batch_size)[:, None] * beams + _take_beams(source_beams, keep)).reshape(-1)
        cache = reorder_cache(cache, flat_sources)

        # 4. the finished set
        just_finished = ends & in_top_beams[None, :]
        finished_scores = top_scores / penalties[cur_len + 1 - _PROMPT_LENGTH]
        full = jnp.all(state.is_finished, axis=-1, keepdims=True) & (early_stopping is True)
        finished_scores = finished_scores + full.astype(jnp.float32) * _PENALTY
        finished_scores = finished_scores + (~state.can_improve).astype(jnp.float32) * _PENALTY
        finished_scores = finished_scores + (~just_finished).astype(jnp.float32) * _PENALTY
        merged_scores = jnp.concatenate([state.scores, finished_scores], axis=1)
        _, best = jax.lax.top_k(merged_scores, beams)
        new_lengths = jnp.full(top_tokens.shape, cur_len + 1 - _PROMPT_LENGTH, jnp.int32)
        sequences = _take_beams(jnp.concatenate([state.sequences, top_sequences], axis=1), best)
        scores = _take_beams(merged_scores, best)
        lengths = _take_beams(jnp.concatenate([state.lengths, new_lengths], axis=1), best)
        is_finished = _take_beams(jnp.concatenate([state.is_finished, just_finished], axis=1), best)

        # 5. can a running beam still win?
        cur_len = cur_len + 1
        if early_stopping == "never" and config.length_penalty > 0.0:
            best_length = max_length - _PROMPT_LENGTH
        else:
            best_length = cur_len - _PROMPT_LENGTH
        best_running = running_scores[:, :1] / penalties[best_length]
        worst_finished = jnp.where(is_finished, jnp.min(scores, axis=1, keepdims=True), _PENALTY)
        can_improve = state.can_improve & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)
        keep_going = jnp.any(can_improve) & ~jnp.all(ends)
        if early_stopping is True:
            keep_going = keep_going & ~jnp.all(is_finished)
        return BeamSearchState(
            cur_len=cur_len,
            running_sequences=running_sequences,
            running_scores=running_scores,
            sequences=sequences,
            scores=scores,
            lengths=lengths,
            is_finished=is_finished,
            can_improve=can_improve,
            keep_going=keep_going,
            cache=cache,
            rng=rng,
        )

    final = jax.lax.while_loop(condition, step, initial)
    returned = config.num_return_sequences
    sequences = final.sequences[:, :returned].reshape(batch_size * returned, max_length)
    scores = final.scores[:, :returned].reshape(-1)
    length = _PROMPT_LENGTH + jnp.max(final.lengths[:, :returned])
    return sequences, scores, length

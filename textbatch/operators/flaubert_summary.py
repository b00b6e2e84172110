"""FlauBERT's sequence summary taken over each row's real tokens, so that padding a row does not change its logits.

FlauBERT's classifier summarises a sequence by `config.summary_type`: "first" (the first token's state), "last" and
"cls_index" (the last position's; the classifier passes no index), "mean" (the mean over every position). All but
"first" read padding when a row is padded: the last position is then a pad, and the mean counts the pads' (zero)
states. transformers' text-classification pipeline classifies one text at a time, unpadded. To give its scores in
padded batches, the summary module is handed, per row, the one state the reference would summarise (the last real
token's, or the mean over the real tokens) as a sequence of length one, of which every summary type takes that very
state; the model's own code does the rest (dropout, projection, activation), int8 kernels and sharding included.

"attn" is implemented by neither the reference nor the model: `check_summary_type` refuses it before any actor starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

PADDING_FREE = ("first",)  # summary types that never read a padding position (right padding)


def check_summary_type(config: Any, where: str) -> None:
    """A ValueError when the FlauBERT classifier at `where` summarises in a way nothing here implements."""
    from textbatch.models.flaubert_heads import SUMMARY_TYPES

    if config.summary_type not in SUMMARY_TYPES:
        raise ValueError(
            f"the classification job cannot run {where}: its summary_type {config.summary_type!r} is not supported "
            f"(transformers does not implement it either); supported: {', '.join(SUMMARY_TYPES)}"
        )
    labels = len(config.id2label)
    if not config.summary_use_proj and labels != config.emb_dim:
        # Without the projection the summary itself is the logits: emb_dim of them, which id2label cannot name.
        raise ValueError(
            f"the classification job cannot run {where}: summary_use_proj is false, so it gives {config.emb_dim} "
            f"logits (emb_dim) for {labels} labels in id2label"
        )


def real_token_state(hidden, mask, summary_type: str):
    """[batch, len, dim] states and their [batch, len] 0/1 mask -> [batch, 1, dim]: what `summary_type` would take
    from each row alone, unpadded."""
    import jax.numpy as jnp

    if summary_type == "mean":
        weights = mask.astype(jnp.float32)[..., None]  # [batch, len, 1]
        count = jnp.maximum(jnp.sum(weights, axis=1, keepdims=True), 1.0)  # [batch, 1, 1]
        return (jnp.sum(hidden.astype(jnp.float32) * weights, axis=1, keepdims=True) / count).astype(hidden.dtype)
    # "last", "cls_index": the last real token (right padding: at length - 1)
    last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)  # [batch]
    return jnp.take_along_axis(hidden, last[:, None, None], axis=1)  # [batch, 1, dim]


@contextlib.contextmanager
def summary_over_real_tokens(config: Any, mask) -> Iterator[None]:
    """While a FlauBERT classifier is traced inside this context, its sequence summary reads only the real tokens
    of `mask` [batch, len]; any other model (or summary type "first") is traced as it is."""
    if getattr(config, "model_type", None) != "flaubert" or config.summary_type in PADDING_FREE:
        yield
        return
    import flax.linen as nn

    from textbatch.models.flaubert_heads import FlaubertSequenceSummary

    def intercept(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or not isinstance(context.module, FlaubertSequenceSummary):
            return next_fun(*args, **kwargs)
        hidden, *rest = args
        return next_fun(real_token_state(hidden, mask, config.summary_type), *rest, **kwargs)

    with nn.intercept_methods(intercept):
        yield

"""transformers' PyTorch FlauBERT as the reference: tiny odd-sized models, inputs, and the pre_norm workaround."""

from __future__ import annotations

import numpy as np
import torch
import transformers
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

COMMON = dict(max_position_embeddings=40, attn_implementation="eager")


class IndexableCache(EncoderDecoderCache):
    """transformers 5's pre_norm branch calls `cache[i]` per layer, which EncoderDecoderCache does not support;
    returning the cache itself gives every layer the cache the post-norm branch would use."""

    def __getitem__(self, index):
        return self


def fresh_cache(model) -> IndexableCache:
    config = model.config
    return IndexableCache(DynamicCache(config=config), DynamicCache(config=config))


def reference_model(config_kwargs: dict, cls=transformers.FlaubertModel, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.FlaubertConfig(**{**COMMON, **config_kwargs})
    model = cls(config).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so a missed or swapped tensor shows
        for name, tensor in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                tensor.normal_(mean=float(name.endswith("weight")), std=0.1)
    return model


def run_reference(model, **inputs):
    """The reference's forward on numpy inputs (None left out), with the pre_norm workaround when needed."""
    tensors = {name: torch.tensor(value) for name, value in inputs.items() if value is not None and
               isinstance(value, np.ndarray)}
    tensors.update({name: value for name, value in inputs.items() if not isinstance(value, np.ndarray)})
    if model.config.pre_norm and "cache" not in tensors:
        tensors["cache"] = fresh_cache(model)
    with torch.no_grad():
        return model(**tensors)


def padded_ids(vocab_size: int, shape=(3, 11), pad: int = 2, seed: int = 1) -> np.ndarray:
    """Rows of random ids (none below 4, so no accidental specials); rows 1 and 2 right-padded with `pad`."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(4, vocab_size, size=shape)
    ids[1, shape[1] * 2 // 3 :] = pad
    ids[2, 3:] = pad
    return ids


def max_diff(ours, theirs) -> float:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    return float(np.max(np.abs(np.asarray(ours, dtype=np.float32) - theirs)))

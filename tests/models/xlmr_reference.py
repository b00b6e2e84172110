"""What the XLM-RoBERTa tests share: odd-sized configs, transformers reference models with non-trivial weights,
padded inputs, and a difference measure."""

from __future__ import annotations

import numpy as np
import torch
import transformers

# Odd sizes catch transposes and head-splitting mistakes.
CONFIGS = {
    "h32-l3-gelu": dict(hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=3, vocab_size=99),
    "h24-l2-types1": dict(
        hidden_size=24, num_attention_heads=3, intermediate_size=29, num_hidden_layers=2, vocab_size=101, type_vocab_size=1
    ),
    "h36-l1-gelunew": dict(
        hidden_size=36, num_attention_heads=6, intermediate_size=53, num_hidden_layers=1, vocab_size=97, hidden_act="gelu_new"
    ),
}
COMMON = dict(max_position_embeddings=40, layer_norm_eps=1e-5, attn_implementation="eager")


def reference_config(config_kwargs: dict, **overrides) -> transformers.XLMRobertaConfig:
    return transformers.XLMRobertaConfig(**{**COMMON, **config_kwargs, **overrides})


def reference_model(config_kwargs: dict, seed: int = 0, model_class=transformers.XLMRobertaModel, **overrides):
    """A transformers model of `model_class` in eval mode, seeded, with LayerNorm weights and biases drawn away from
    their 1 / 0 initial values, so a missed or swapped tensor shows in the outputs."""
    torch.manual_seed(seed)
    model = model_class(reference_config(config_kwargs, **overrides)).eval()
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                tensor.normal_(mean=float(name.endswith("weight")), std=0.1)
    return model


def padded_batch(vocab_size: int, seed: int = 1, rows: int = 3, length: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """`rows` rows of `length` tokens starting with <s>: the first full, the others right-padded with the pad id 1."""
    rng = np.random.RandomState(seed)
    input_ids = rng.randint(3, vocab_size, size=(rows, length))
    mask = np.ones_like(input_ids)
    for row in range(1, rows):
        real = max(2, length - 4 * row)
        input_ids[row, real:] = 1
        mask[row, real:] = 0
    input_ids[:, 0] = 0
    return input_ids, mask


def max_diff(ours, theirs) -> float:
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    return float(np.max(np.abs(np.asarray(ours, dtype=np.float32) - theirs)))

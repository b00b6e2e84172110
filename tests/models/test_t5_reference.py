"""Tiny random T5 checkpoints written by transformers (the reference), for the T5 and generation tests.

transformers 5 always ties T5's lm_head to the shared embedding when it builds or saves a model (it writes
tie_word_embeddings=True even for v1.1); it unties it only when loading a checkpoint whose `lm_head.weight` differs.
So an untied (v1.1 / FLAN-T5) checkpoint is written here by hand, the way the hub's files are: a distinct
`lm_head.weight` and `tie_word_embeddings: false`. The tests below check that the reference really is untied.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file

# Odd sizes (d_kv not d_model / heads, d_ff odd, few buckets with a short max distance so that the logarithmic
# buckets are used) catch transposes, head splits and bucket mistakes.
CONFIGS = {
    "v1_0": dict(
        vocab_size=99, d_model=36, d_kv=7, d_ff=37, num_layers=2, num_heads=5,
        relative_attention_num_buckets=10, relative_attention_max_distance=20,
        feed_forward_proj="relu", tie_word_embeddings=True,
    ),
    "v1_1": dict(
        vocab_size=101, d_model=32, d_kv=9, d_ff=45, num_layers=2, num_decoder_layers=3, num_heads=3,
        relative_attention_num_buckets=12, relative_attention_max_distance=25,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    ),
    "ul2_silu": dict(
        vocab_size=97, d_model=24, d_kv=5, d_ff=29, num_layers=1, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="gated-silu", tie_word_embeddings=False,
    ),
    # For generation: decoder shallower than the encoder, because transformers 5's generate sizes its KV cache by
    # num_layers and fails (IndexError) when num_decoder_layers is larger.
    "generation": dict(
        vocab_size=99, d_model=36, d_kv=7, d_ff=37, num_layers=3, num_decoder_layers=2, num_heads=5,
        relative_attention_num_buckets=10, relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
    ),
}
COMMON = dict(dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, layer_norm_epsilon=1e-6)


def build_checkpoint(
    folder: str | Path, name: str, *, seed: int = 0, lm_head_scale: float = 1.0, **overrides
) -> Path:
    """Write a random transformers T5ForConditionalGeneration of CONFIGS[name] into `folder` (safetensors).

    Layer norms get random weights (so a missing or swapped norm shows); an untied config gets its own
    `lm_head.weight`, multiplied by `lm_head_scale` (a larger scale spreads the logits, so greedy and beam search
    are not decided by float noise). `overrides` change config fields (e.g. vocab_size to fit a tokenizer).
    """
    folder = Path(folder)
    kwargs = {**CONFIGS[name], **overrides}
    tied = kwargs["tie_word_embeddings"]
    torch.manual_seed(seed)
    config = transformers.T5Config(**COMMON, **kwargs)
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for param_name, tensor in model.named_parameters():
            if "layer_norm" in param_name:
                tensor.normal_(mean=1.0, std=0.1)
    model.save_pretrained(folder)
    if not tied:
        state = {key: value.contiguous() for key, value in model.state_dict().items() if "embed_tokens" not in key}
        state["lm_head.weight"] = torch.randn(config.vocab_size, config.d_model) * lm_head_scale
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        values = json.loads((folder / "config.json").read_text())
        values["tie_word_embeddings"] = False
        values.pop("scale_decoder_outputs", None)  # as a hub FLAN-T5 config.json: no such key
        (folder / "config.json").write_text(json.dumps(values, indent=2))
    return folder


def load_reference(folder: str | Path, cls=transformers.T5ForConditionalGeneration):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            return cls.from_pretrained(str(folder), attn_implementation="eager").eval()
        finally:
            transformers.logging.set_verbosity(verbosity)


def padded_batch(vocab_size: int, seed: int = 1, lengths=(13, 9, 4)) -> tuple[np.ndarray, np.ndarray]:
    """Prompts of different lengths, right-padded with the pad id 0, each ending with eos (id 1) as T5 inputs do."""
    rng = np.random.RandomState(seed)
    width = max(lengths)
    input_ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        input_ids[row, : length - 1] = rng.randint(3, vocab_size, size=length - 1)
        input_ids[row, length - 1] = 1
        mask[row, :length] = 1
    return input_ids, mask


@pytest.mark.parametrize("name", ["v1_0", "v1_1"])
def test_reference_reads_the_checkpoint_as_intended(tmp_path, name):
    folder = build_checkpoint(tmp_path, name, lm_head_scale=3.0)
    reference = load_reference(folder)
    tied = CONFIGS[name]["tie_word_embeddings"]
    assert reference.config.scale_decoder_outputs is tied
    same_storage = reference.lm_head.weight.data_ptr() == reference.shared.weight.data_ptr()
    assert same_storage is tied
    if not tied:
        assert not torch.equal(reference.lm_head.weight, reference.shared.weight)

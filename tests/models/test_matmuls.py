"""Half-precision products accumulate in float32 (XLA's fast CPU path), in dense layers, attention and tied heads."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from textbatch.models import FlaxT5ForConditionalGeneration, FlaxXLMRobertaForMaskedLM, T5Config, XLMRobertaConfig
from textbatch.models.matmuls import dense_matmuls, product
from textbatch.models.quantize import quantize_kernel

XLMR_TINY = XLMRobertaConfig(vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=75, max_position_embeddings=40)
T5_TINY = T5Config(vocab_size=99, d_model=48, d_kv=11, d_ff=75, num_layers=2, num_decoder_layers=2, num_heads=3,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=True, dropout_rate=0.0)


def dot_types(hlo: str) -> list[tuple[str, str]]:
    """(result type, first operand type) of every dot_general in StableHLO text."""
    tensor = r"tensor<(?:\d+x)*(\w+)>"
    found = re.findall(rf"stablehlo\.dot_general.*?:\s*\({tensor}.*?->\s*{tensor}", hlo)
    return [(result, operand) for operand, result in found]


def dense_output(dtype, kernel, bias, inputs):
    layer = nn.Dense(kernel.shape[-1], dtype=dtype)
    with dense_matmuls():
        return layer.apply({"params": {"kernel": kernel, "bias": bias}}, inputs)


def test_bfloat16_dense_sums_in_float32():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(5, 37)).astype(np.float32)
    kernel = rng.normal(size=(37, 19)).astype(np.float32)
    bias = rng.normal(size=(19,)).astype(np.float32)
    out = dense_output(jnp.bfloat16, kernel, bias, inputs)
    assert out.dtype == jnp.bfloat16
    as_bf16 = [np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32) for x in (inputs, kernel, bias)]
    exact = as_bf16[0] @ as_bf16[1] + as_bf16[2]  # the rounded operands' product, summed in float32
    # within one bfloat16 rounding of that (the summation order may differ), where bfloat16 sums drift further
    np.testing.assert_allclose(np.asarray(out, np.float32), exact, rtol=2**-8, atol=1e-6)


def test_float32_dense_is_flax_own():
    rng = np.random.default_rng(1)
    inputs, kernel = rng.normal(size=(4, 9)).astype(np.float32), rng.normal(size=(9, 6)).astype(np.float32)
    bias = np.zeros(6, np.float32)
    np.testing.assert_allclose(dense_output(jnp.float32, kernel, bias, inputs), inputs @ kernel, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_int8_dense_multiplies_stored_values_then_scales(dtype):
    rng = np.random.default_rng(2)
    inputs, kernel = rng.normal(size=(3, 16)).astype(np.float32), rng.normal(size=(16, 8)).astype(np.float32)
    quantized = quantize_kernel(kernel)
    out = dense_output(dtype, quantized, np.zeros(8, np.float32), inputs)
    assert out.dtype == dtype
    expected = inputs @ (quantized.values.astype(np.float32) * quantized.scale)
    tolerance = 1e-5 if dtype == jnp.float32 else 3e-2
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, rtol=tolerance, atol=tolerance)


def test_product_accumulates_half_precision_in_float32():
    left = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 64)), jnp.bfloat16)
    right = jnp.asarray(np.random.default_rng(4).normal(size=(5, 64)), jnp.bfloat16)
    hlo = jax.jit(lambda a, b: product("bld,vd->blv", a, b, jnp.bfloat16)).lower(left, right).as_text()
    assert dot_types(hlo) == [("f32", "bf16")]
    assert product("bld,vd->blv", left, right, jnp.bfloat16).dtype == jnp.bfloat16


@pytest.mark.parametrize("family", ["xlm-roberta", "t5"])
def test_no_bfloat16_model_product_returns_bfloat16(family):
    """Every dot_general of a bfloat16 model (dense layers, attention, tied output head) takes bfloat16 operands and
    returns float32: a bfloat16 result would take XLA's slow CPU path."""
    if family == "t5":
        model = FlaxT5ForConditionalGeneration(T5_TINY, dtype=jnp.bfloat16)
        ids = jnp.ones((2, 7), jnp.int32)
        inputs = {"input_ids": ids, "attention_mask": ids, "decoder_input_ids": ids}
    else:
        model = FlaxXLMRobertaForMaskedLM(XLMR_TINY, dtype=jnp.bfloat16)
        ids = jnp.ones((2, 7), jnp.int32)
        inputs = {"input_ids": ids, "attention_mask": ids}
    params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), model.params)
    hlo = jax.jit(lambda p, i: model(**i, params=p)).lower(params, inputs).as_text()
    types = dot_types(hlo)
    assert types, "no products found in the lowered model"
    assert all(result == "f32" for result, _ in types), types
    assert any(operand == "bf16" for _, operand in types), types

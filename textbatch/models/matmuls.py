"""How the models multiply matrices: half precision accumulates in float32, int8 kernels are used as they are stored.

Half precision: XLA on CPU has a fast bfloat16 matrix multiply (its YNNPACK kernels, about twice the float32 rate on
a CPU with AVX512-BF16: 785 vs 315 GFLOP/s here) only when the product accumulates into float32; a product that
returns bfloat16 falls back to a path slower than float32. So every product of half-precision operands asks for a float32 result
(`preferred_element_type`) and is rounded to the layer's dtype once, after its bias: faster, and more accurate.

int8 (`from_pretrained(..., load_in_8bit=True)`, quantize.py): each `nn.Dense` whose kernel is a QuantizedArray
computes `(x @ values) * scale`, converting the int8 values where the layer runs. The int8 values are made to depend
on the layer's input (`_once_available`), so XLA can neither convert every kernel at the start of the program nor
hoist the conversion out of a decoding loop: either holds a full floating copy of the weights (on CPU, XLA did both).

Every compiled entry point of the models traces inside `dense_matmuls()`, which routes `nn.Dense` through here;
attention and tied output heads call `product` directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from textbatch.models.quantize import HALF_DTYPES, QuantizedArray


def _accumulator(dtype: Any) -> Any:
    """float32 for half-precision operands, else the operands' own type (None: what XLA picks)."""
    return jnp.float32 if np.dtype(dtype) in HALF_DTYPES else None


def product(subscripts: str, left: jax.Array, right: jax.Array, dtype: Any) -> jax.Array:
    """`jnp.einsum(subscripts, left, right)` with both operands in `dtype`, accumulated in float32 when `dtype` is
    half precision, returned in `dtype`."""
    out = jnp.einsum(subscripts, left.astype(dtype), right.astype(dtype), preferred_element_type=_accumulator(dtype))
    return out.astype(dtype)


def _dense(next_fun, args, kwargs, context):
    """A flax method interceptor for nn.Dense.__call__: int8 kernels and half-precision layers computed here;
    float32 layers run as flax has them."""
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, nn.Dense):
        return next_fun(*args, **kwargs)
    params = module.variables.get("params", {})
    kernel = params.get("kernel")
    quantized = isinstance(kernel, QuantizedArray)
    (inputs,) = args
    inputs = jnp.asarray(inputs)
    dtype = module.dtype or jnp.result_type(inputs.dtype, kernel.dtype)
    accumulator = _accumulator(dtype)
    if not quantized and accumulator is None:
        return next_fun(*args, **kwargs)
    values = _once_available(inputs, kernel.values) if quantized else kernel
    contract = (((inputs.ndim - 1,), (0,)), ((), ()))
    outputs = jax.lax.dot_general(
        inputs.astype(dtype), values.astype(dtype), contract, preferred_element_type=accumulator
    )  # [..., out]
    if quantized:  # one scale per output channel: exact to apply after the product
        outputs = outputs * kernel.scale.astype(outputs.dtype)
    if module.use_bias:
        outputs = outputs + params["bias"].astype(dtype).astype(outputs.dtype)  # the bias in the layer's dtype, as flax
    return outputs.astype(dtype)


def _once_available(inputs: jax.Array, values: jax.Array) -> jax.Array:
    """`values` unchanged, but as a function of `inputs`: an int8 zero computed from the layer's first input element
    (finite times 0.0, which XLA cannot fold for floats). So the kernel's conversion cannot run before its layer
    does, nor be hoisted out of a decoding loop: XLA otherwise converts every kernel up front and keeps a full
    floating copy of the weights alive (an optimization barrier did not stop it on CPU)."""
    first = inputs[(0,) * inputs.ndim].astype(jnp.float32)
    zero = jnp.nan_to_num(first, nan=0.0, posinf=0.0, neginf=0.0) * 0.0
    return values + zero.astype(values.dtype)


@contextlib.contextmanager
def dense_matmuls() -> Iterator[None]:
    """While tracing a model inside this context, dense layers multiply as this module says."""
    with nn.intercept_methods(_dense):
        yield

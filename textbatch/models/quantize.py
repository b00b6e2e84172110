"""How parameters are stored: float32 as loaded, a half-precision dtype, or int8 dense kernels with per-channel scales.

int8 (`from_pretrained(..., load_in_8bit=True)`): each dense kernel [..., in, out] is stored as int8 values and one
float32 scale per output channel (absmax / 127, symmetric, round to nearest), about a quarter of its float32 bytes.
Embeddings, norms and biases stay as they are: they are small next to the kernels, and the embedding rows a token
looks up would lose precision for no gain in speed. The model code never sees int8: matmuls.py computes each
`nn.Dense` whose kernel is int8 from it directly.

The float32 rules, as the reference's `_keep_in_fp32_modules` and `_keep_in_fp32_modules_strict`: parameters a model
lists in `keep_in_float32` (T5's `wo`, whose input overflows float16) stay float32 when float16 is involved (as the
compute or the storage dtype), and float32 and unquantised when int8 kernels run in half precision; those it lists in
`keep_in_float32_strict` (T5's relative position table, whose bias is computed in float32) stay float32 in every
half-precision run. A bfloat16 run stores T5's `wo` in bfloat16, as the reference does, and computes it in bfloat16
(accumulating in float32). In float32 runs they are stored like any other parameter.

Everything here acts on one tensor at a time (numpy, on the host), so loading never holds a second full copy.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Path = tuple[str, ...]

INT8_MAX = 127
HALF_DTYPES = (np.dtype(jnp.bfloat16), np.dtype(np.float16))


@flax.struct.dataclass
class QuantizedArray:
    """An int8 kernel: `values` [..., in, out] int8 and `scale` [out] float32, so that values * scale ~ kernel.
    A pytree: device_put, jit and sharding see its two arrays; `dtype` is what it dequantises to."""

    values: Any
    scale: Any
    dtype: Any = flax.struct.field(pytree_node=False, default=np.dtype(np.float32))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def ndim(self) -> int:
        return len(self.values.shape)

    @property
    def nbytes(self) -> int:
        return array_bytes(self.values) + array_bytes(self.scale)

    def dequantize(self) -> jax.Array:
        return (self.values.astype(jnp.float32) * self.scale.astype(jnp.float32)).astype(self.dtype)


def quantize_kernel(kernel: np.ndarray, dtype: Any = None) -> QuantizedArray:
    """Symmetric int8 with one scale per output channel (the last axis), on the host. An all-zero channel gets
    scale 1 (its values are 0 whatever the scale)."""
    kernel = np.asarray(kernel)
    if kernel.ndim < 2:
        raise ValueError(f"quantize_kernel needs a kernel [..., in, out], got shape {kernel.shape}")
    values32 = kernel.astype(np.float32, copy=False)
    absmax = np.max(np.abs(values32), axis=tuple(range(kernel.ndim - 1)))  # [out]
    scale = np.where(absmax > 0, absmax / INT8_MAX, 1.0).astype(np.float32)
    values = np.clip(np.rint(values32 / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
    return QuantizedArray(values=values, scale=scale, dtype=np.dtype(dtype if dtype is not None else kernel.dtype))


def _is_quantized(leaf: Any) -> bool:
    return isinstance(leaf, QuantizedArray)


def dequantize_params(params: Any) -> Any:
    """The tree with every QuantizedArray turned back into its floating kernel (to save it, or to compare).
    Trees without int8 kernels come back unchanged."""
    if not any(_is_quantized(leaf) for leaf in jax.tree_util.tree_leaves(params, is_leaf=_is_quantized)):
        return params
    return jax.tree_util.tree_map(
        lambda leaf: leaf.dequantize() if _is_quantized(leaf) else leaf, params, is_leaf=_is_quantized
    )


def array_bytes(leaf: Any) -> int:
    """Bytes of an array, a ShapeDtypeStruct or a QuantizedArray of either."""
    if _is_quantized(leaf):
        return array_bytes(leaf.values) + array_bytes(leaf.scale)
    return math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize


def params_bytes(params: Any) -> int:
    """Bytes of a (nested or flat) parameter tree as stored: int8 kernels count their values and scales."""
    return sum(array_bytes(leaf) for leaf in jax.tree_util.tree_leaves(params, is_leaf=_is_quantized))


@dataclasses.dataclass(frozen=True)
class StoragePlan:
    """What each parameter becomes when it is loaded: left as read, cast to `param_dtype` (dense kernels and
    embeddings only), or quantised to int8 (dense kernels only). Paths matching `keep` stay as read."""

    param_dtype: np.dtype | None = None
    int8: bool = False
    keep: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        compute_dtype: Any,
        param_dtype: Any = None,
        load_in_8bit: bool = False,
        keep_in_float32: Sequence[str] = (),
        keep_in_float32_strict: Sequence[str] = (),
    ) -> StoragePlan:
        """The plan for a model computing in `compute_dtype`; the model's two lists of patterns apply as the float32
        rules above say."""
        param_dtype = None if param_dtype is None else np.dtype(param_dtype)
        if param_dtype is not None and param_dtype not in (np.dtype(np.float32), *HALF_DTYPES):
            raise ValueError(f"param_dtype must be float32, bfloat16 or float16, got {param_dtype}")
        dtypes = (np.dtype(compute_dtype), param_dtype)
        half = any(dtype in HALF_DTYPES for dtype in dtypes)
        float16 = np.dtype(np.float16) in dtypes
        for pattern in (*keep_in_float32, *keep_in_float32_strict):
            re.compile(pattern)  # fails early on a bad pattern
        keep = (tuple(keep_in_float32) if float16 or (half and load_in_8bit) else ()) + (
            tuple(keep_in_float32_strict) if half else ()
        )
        return cls(param_dtype=param_dtype, int8=bool(load_in_8bit), keep=keep)

    @property
    def changes_anything(self) -> bool:
        return self.int8 or self.param_dtype is not None

    def _kept(self, path: Path) -> bool:
        joined = "/".join(path)
        return any(re.search(pattern, joined) for pattern in self.keep)

    def kind(self, path: Path, ndim: int) -> str:
        """"int8", "cast" or "as_read" for the parameter at `path` of rank `ndim`."""
        if self._kept(path):
            return "as_read"
        if self.int8 and path[-1] == "kernel" and ndim >= 2:
            return "int8"
        if self.param_dtype is not None and path[-1] in ("kernel", "embedding"):
            return "cast"
        return "as_read"

    def read_dtype(self, path: Path, struct: Any) -> np.dtype:
        """The dtype to read a checkpoint tensor in: the one it is stored in when cast (the checkpoint's values are
        then converted once, not to the model's dtype first), else the model's."""
        if self.kind(path, len(struct.shape)) == "cast":
            return self.param_dtype
        return np.dtype(struct.dtype)

    def store(self, path: Path, array: np.ndarray) -> Any:
        """One parameter (host numpy array) as it is to be stored."""
        kind = self.kind(path, np.ndim(array))
        if kind == "int8":
            return quantize_kernel(array, self.param_dtype or np.asarray(array).dtype)
        if kind == "cast" and np.asarray(array).dtype != self.param_dtype:
            return np.asarray(array).astype(self.param_dtype)
        return array

    def abstract(self, path: Path, struct: Any) -> Any:
        """What `store` makes of a parameter of this shape and dtype, without any data (for plans)."""
        kind = self.kind(path, len(struct.shape))
        if kind == "int8":
            dtype = self.param_dtype or np.dtype(struct.dtype)
            return QuantizedArray(
                values=jax.ShapeDtypeStruct(struct.shape, np.int8),
                scale=jax.ShapeDtypeStruct(struct.shape[-1:], np.float32),
                dtype=np.dtype(dtype),
            )
        if kind == "cast":
            return jax.ShapeDtypeStruct(struct.shape, self.param_dtype)
        return jax.ShapeDtypeStruct(struct.shape, struct.dtype)

    def abstract_tree(self, flat_shapes: Mapping[Path, Any]) -> dict[Path, Any]:
        return {path: self.abstract(path, struct) for path, struct in flat_shapes.items()}


def relative_error(kernel: np.ndarray, quantized: QuantizedArray) -> float:
    """||kernel - dequantised|| / ||kernel|| (Frobenius)."""
    restored = np.asarray(quantized.values, np.float32) * np.asarray(quantized.scale, np.float32)
    kernel = np.asarray(kernel, np.float32)
    return float(np.linalg.norm(kernel - restored) / max(np.linalg.norm(kernel), np.finfo(np.float32).tiny))

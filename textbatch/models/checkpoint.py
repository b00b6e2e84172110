"""Checkpoint folder <-> flat Flax parameters, strictly.

Flax parameter paths here follow the PyTorch names, so conversion is one generic rule rather than a table per family:
the PyTorch key split on "." is the Flax path, except for the leaf, which is renamed to whatever the model's own tree
holds at that place:
    weight -> kernel (transposed: PyTorch [out, in] is Flax [in, out]) | embedding | scale | weight
    bias   -> bias          (old checkpoints' gamma / beta count as weight / bias)
A head model keeps its base model under `base_model_prefix` ("roberta"): the prefix is stripped or added per tensor,
so base and head checkpoints load into either.

Strict: a tensor the model needs that is missing or mis-shaped raises `CheckpointError` naming the tensor and the file,
before any tensor data is read. Tensors the model does not use (another head, `position_ids` buffers) are skipped.

Formats read, in order of preference: model.safetensors, its sharded index, flax_model.msgpack (Hugging Face Flax),
pytorch_model.bin (and its sharded index). Written: model.safetensors with PyTorch names, which transformers loads.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from textbatch.storage import Folder

logger = logging.getLogger(__name__)

Path = tuple[str, ...]

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
FLAX_MSGPACK = "flax_model.msgpack"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHTS_FILES = (SAFETENSORS, SAFETENSORS_INDEX, FLAX_MSGPACK, PYTORCH_BIN, PYTORCH_BIN_INDEX)

# Leaves a PyTorch "weight" may become, tried in this order against the model's tree.
_WEIGHT_LEAVES = ("kernel", "embedding", "scale", "weight")
_LEGACY_LEAVES = {"gamma": "weight", "beta": "bias"}


class CheckpointError(ValueError):
    """A checkpoint does not fit the model, or cannot be read."""


# ---------------------------------------------------------------------------------------------------------------------
# Name mapping (pure)
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rename:
    """Where one checkpoint tensor goes in the Flax tree, and whether it is a PyTorch weight to turn into a kernel."""

    path: Path
    to_kernel: bool = False


def kernel_from_weight(weight: np.ndarray) -> np.ndarray:
    """PyTorch [out, in, *window] -> Flax [*window, in, out]; for a Linear weight this is the transpose."""
    rank = weight.ndim
    return np.transpose(weight, tuple(range(2, rank)) + (1, 0))


def weight_from_kernel(kernel: np.ndarray) -> np.ndarray:
    """Flax [*window, in, out] -> PyTorch [out, in, *window] (inverse of `kernel_from_weight`)."""
    rank = kernel.ndim
    return np.transpose(kernel, (rank - 1, rank - 2) + tuple(range(rank - 2)))


def _kernel_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[2:]) + (shape[1], shape[0])


def _prefix_variants(path: Path, prefix: str) -> list[Path]:
    """The path as written first, then with the base-model prefix stripped or added."""
    if not prefix:
        return [path]
    if path[:1] == (prefix,):
        return [path, path[1:]]
    return [path, (prefix,) + path]


def _rename_one(path: Path, rank: int, naming: str, expected: Mapping[Path, Any]) -> Rename | None:
    if naming == "flax":
        return Rename(path) if path in expected else None
    module, leaf = path[:-1], _LEGACY_LEAVES.get(path[-1], path[-1])
    if leaf != "weight":
        return Rename(module + (leaf,)) if module + (leaf,) in expected else None
    for flax_leaf in _WEIGHT_LEAVES:
        if module + (flax_leaf,) in expected:
            return Rename(module + (flax_leaf,), to_kernel=flax_leaf == "kernel" and rank >= 2)
    return None


def plan_renames(
    source_shapes: Mapping[Any, tuple[int, ...]],
    expected: Mapping[Path, Any],
    base_model_prefix: str,
    *,
    naming: str = "pytorch",
    where: Callable[[Any], str] = lambda key: "the checkpoint",
    may_be_missing: Callable[[Path], bool] | None = None,
) -> dict[Any, Rename]:
    """Map checkpoint keys to Flax paths, checking that every expected tensor is present with the right shape.

    `source_shapes` maps each checkpoint key to its shape: "a.b.weight" strings for PyTorch naming, path tuples for
    Flax naming (msgpack). `expected` maps Flax paths to anything with `.shape`. Keys the model does not use are left
    out of the result (logged at debug level). `where(key)` names the file a key comes from, for error messages.
    `may_be_missing(path)` marks expected tensors the caller will initialise itself (a new head on a base checkpoint).
    """
    if naming not in ("pytorch", "flax"):
        raise ValueError(f"naming must be 'pytorch' or 'flax', not {naming!r}")
    as_path = (lambda key: tuple(key.split("."))) if naming == "pytorch" else tuple
    plan: dict[Any, Rename] = {}
    claimed: dict[Path, Any] = {}
    # Names as written win over prefix-adjusted ones, so a checkpoint holding both never maps two keys to one place.
    for variant_index in (0, 1):
        for key, shape in source_shapes.items():
            variants = _prefix_variants(as_path(key), base_model_prefix)
            if key in plan or variant_index >= len(variants):
                continue
            rename = _rename_one(variants[variant_index], len(shape), naming, expected)
            if rename is None or rename.path in claimed:
                continue
            plan[key] = rename
            claimed[rename.path] = key

    for key in source_shapes:
        if key not in plan:
            logger.debug("Skipping checkpoint tensor %s from %s: the model does not use it", _show(key), where(key))

    wrong = []
    for key, rename in plan.items():
        shape = tuple(source_shapes[key])
        converted = _kernel_shape(shape) if rename.to_kernel else shape
        want = tuple(expected[rename.path].shape)
        if converted != want:
            seen = f"shape {list(shape)}" + (f" (kernel {list(converted)})" if rename.to_kernel else "")
            wrong.append(f"{_show(key)} in {where(key)} has {seen}, the model expects {list(want)} at "
                         f"{'/'.join(rename.path)}")
    if wrong:
        more = f"; and {len(wrong) - 4} more" if len(wrong) > 4 else ""
        raise CheckpointError(
            f"{len(wrong)} tensor(s) have the wrong shape: {'; '.join(wrong[:4])}{more}. "
            "Does config.json match this checkpoint?"
        )

    missing = [path for path in expected if path not in claimed]
    if may_be_missing is not None:
        allowed = [path for path in missing if may_be_missing(path)]
        for path in allowed:
            logger.info("%s is not in %s; the caller initialises it", "/".join(path), where(None))
        missing = [path for path in missing if not may_be_missing(path)]
    if missing:
        shown = ", ".join(f"{pytorch_name(path)} ({'/'.join(path)})" for path in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        sample = ", ".join(_show(key) for key in list(source_shapes)[:5]) or "no tensors at all"
        raise CheckpointError(
            f"{len(missing)} tensor(s) the model needs are missing from {where(None)}: {shown}{more}. "
            f"The checkpoint holds {len(source_shapes)} tensors, e.g. {sample}."
        )
    return plan


def convert_tensor(array: np.ndarray, rename: Rename, dtype: Any) -> np.ndarray:
    """One checkpoint tensor as the Flax parameter: transposed if a kernel, cast to the model's dtype.

    An array that owns its memory and is already in place is returned as it is; anything else is copied, so a
    parameter is never a view into a reader's buffer or a memory-mapped file (JAX on a CPU may alias host arrays)."""
    array = np.asarray(array)
    if rename.to_kernel:
        array = kernel_from_weight(array)
    if array.flags.owndata and array.flags.c_contiguous and array.dtype == np.dtype(dtype):
        return array
    return np.array(array, dtype=np.dtype(dtype), order="C")


def pytorch_to_flax(
    tensors: Mapping[str, np.ndarray], expected: Mapping[Path, Any], base_model_prefix: str
) -> dict[Path, np.ndarray]:
    """PyTorch state dict (flat, numpy) -> flat Flax params for the model whose tree is `expected` (strict)."""
    plan = plan_renames({key: np.shape(value) for key, value in tensors.items()}, expected, base_model_prefix)
    return {
        rename.path: convert_tensor(tensors[key], rename, expected[rename.path].dtype) for key, rename in plan.items()
    }


def pytorch_name(path: Path) -> str:
    """The PyTorch key of a Flax path: leaves kernel / embedding / scale become weight."""
    leaf = "weight" if path[-1] in ("kernel", "embedding", "scale") else path[-1]
    return ".".join(path[:-1] + (leaf,))


def flax_to_pytorch(flat_params: Mapping[Path, np.ndarray]) -> dict[str, np.ndarray]:
    """Flat Flax params -> PyTorch state dict (kernels transposed back)."""
    out: dict[str, np.ndarray] = {}
    for path, value in flat_params.items():
        name = pytorch_name(path)
        if name in out:
            raise CheckpointError(f"Two parameters would both be saved as {name!r} (one is {'/'.join(path)})")
        out[name] = _to_pytorch_layout(path, value)
    return out


def _to_pytorch_layout(path: Path, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if path[-1] == "kernel" and array.ndim >= 2:
        array = weight_from_kernel(array)
    return np.ascontiguousarray(array)


def _show(key: Any) -> str:
    return key if isinstance(key, str) else "/".join(key)


# ---------------------------------------------------------------------------------------------------------------------
# Safetensors: a small range reader for local and remote files (one tensor at a time)
# ---------------------------------------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64),
    "U32": np.dtype(np.uint32),
    "U16": np.dtype(np.uint16),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_SAFETENSORS_CODES = {dtype: code for code, dtype in _SAFETENSORS_DTYPES.items()}
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class _SafetensorsFile:
    """One .safetensors file, local or remote; tensors are read one at a time.

    A local file is memory-mapped: a tensor is a read-only view of the page cache, and `convert_tensor` writes it once,
    transposed and cast, into the parameter's own memory (new memory is what loading pays for most; reading into a
    buffer first would take as much again). A remote file is read with `readinto`, each tensor straight into an array
    of its own (about ten times faster than the safetensors library's numpy path)."""

    def __init__(self, folder: Folder, name: str):
        self.location = folder.location(name)
        local = folder.local_path(name)
        self._mapped = None
        # Layout: 8-byte little-endian header length, JSON header, then the tensors' bytes (offsets relative to them).
        self._file = folder.open_file(name, "rb")
        try:
            size = self._file.seek(0, 2)
            self._file.seek(0)
            header_len = int.from_bytes(self._file.read(8), "little")
            if not 0 < header_len <= _MAX_HEADER_BYTES:
                raise ValueError(f"implausible header length {header_len}")
            header = json.loads(self._file.read(header_len))
            header.pop("__metadata__", None)
            self._entries = {}
            for key, info in header.items():
                dtype = _SAFETENSORS_DTYPES[info["dtype"]]
                begin, end = info["data_offsets"]
                if end - begin != math.prod(info["shape"]) * dtype.itemsize:
                    raise ValueError(f"tensor {key}: byte range does not match its shape and dtype")
                if 8 + header_len + end > size:
                    raise ValueError(f"tensor {key} ends past the end of the file ({size} bytes)")
                self._entries[key] = (dtype, tuple(info["shape"]), 8 + header_len + begin, end - begin)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            self._file.close()
            raise CheckpointError(f"{self.location} is truncated or not a safetensors file: {error}") from error
        self.shapes = {key: entry[1] for key, entry in self._entries.items()}
        if local is not None and size:
            self._mapped = np.memmap(local, dtype=np.uint8, mode="r")

    def _read(self, key: str) -> np.ndarray:
        dtype, shape, start, length = self._entries[key]
        if self._mapped is not None:
            return self._mapped[start : start + length].view(dtype).reshape(shape)
        array = np.empty(shape, dtype=dtype)
        self._file.seek(start)
        if self._file.readinto(array.reshape(-1).view(np.uint8)) != length:
            raise CheckpointError(f"{self.location} is truncated: tensor {key} is cut short")
        return array

    def read(self, key: str) -> np.ndarray:
        try:
            return self._read(key)
        except CheckpointError:
            raise
        except Exception as error:
            raise CheckpointError(f"Could not read tensor {key} from {self.location}: {error}") from error

    def close(self) -> None:
        self._file.close()
        self._mapped = None  # the mapping itself goes with the last view of it


# ---------------------------------------------------------------------------------------------------------------------
# Tensor sources: one interface over the formats
# ---------------------------------------------------------------------------------------------------------------------


class _Source:
    """The tensors of a checkpoint: their shapes up front, their data one key at a time."""

    naming = "pytorch"

    def __init__(self, location: str):
        self.location = location  # the file named when something is missing
        self.shapes: dict[Any, tuple[int, ...]] = {}
        self._file_of: dict[Any, Any] = {}  # key -> object with .read(key) and .location

    def where(self, key: Any) -> str:
        return self.location if key is None else self._file_of[key].location

    def read(self, key: Any) -> np.ndarray:
        return self._file_of[key].read(key)

    def close(self) -> None:
        for part in {id(part): part for part in self._file_of.values()}.values():
            part.close()

    def _add(self, part: Any) -> None:
        for key, shape in part.shapes.items():
            self.shapes[key] = shape
            self._file_of[key] = part


class _Tensors:
    """Tensors already in memory (msgpack, torch state dicts), with the file they came from."""

    def __init__(self, location: str, tensors: Mapping[Any, Any], to_numpy: Callable[[Any], np.ndarray]):
        self.location = location
        self._tensors = tensors
        self._to_numpy = to_numpy
        self.shapes = {key: tuple(value.shape) for key, value in tensors.items()}

    def read(self, key: Any) -> np.ndarray:
        return self._to_numpy(self._tensors[key])

    def close(self) -> None:
        self._tensors = {}


def _read_shard_index(folder: Folder, index_name: str) -> list[str]:
    index = folder.read_json(index_name)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{folder.location(index_name)} has no 'weight_map' of tensor names to shard files")
    shards = list(dict.fromkeys(weight_map.values()))
    for shard in shards:
        if not folder.exists(shard):
            raise CheckpointError(f"Shard {shard} listed in {folder.location(index_name)} does not exist")
    return shards


def _open_safetensors(folder: Folder, names: Iterable[str], location: str) -> _Source:
    source = _Source(location)
    try:
        for name in names:
            source._add(_SafetensorsFile(folder, name))
    except BaseException:
        source.close()
        raise
    return source


def _open_msgpack(folder: Folder) -> _Source:
    from flax import serialization, traverse_util

    location = folder.location(FLAX_MSGPACK)
    try:
        nested = serialization.msgpack_restore(folder.read_bytes(FLAX_MSGPACK))
        flat = traverse_util.flatten_dict(nested)
    except Exception as error:
        raise CheckpointError(f"{location} is truncated or not a Flax msgpack checkpoint: {error}") from error
    if not isinstance(nested, dict) or not all(isinstance(v, np.ndarray) for v in flat.values()):
        raise CheckpointError(f"{location} does not hold a nested dict of arrays")
    # Hugging Face Flax checkpoints may wrap the tree as {"params": ...}.
    if set(nested) == {"params"}:
        flat = {path[1:]: value for path, value in flat.items()}
    source = _Source(location)
    source.naming = "flax"
    source._add(_Tensors(location, flat, np.asarray))
    return source


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; reinterpret the bits as ml_dtypes' one
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _load_torch_file(folder: Folder, name: str) -> _Tensors:
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"Reading {folder.location(name)} needs PyTorch: pip install textbatch[torch]"
        ) from None
    location = folder.location(name)
    local = folder.local_path(name)
    state = None
    if local is not None:
        try:  # mmap: tensors stay on disk until converted, one at a time (zip-format files only)
            state = torch.load(local, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:
            logger.debug("mmap load of %s failed (%s); reading it whole", location, error)
    if state is None:
        try:
            with folder.open_file(name, "rb") as handle:
                state = torch.load(handle, map_location="cpu", weights_only=True)
        except Exception as error:
            raise CheckpointError(f"{location} is truncated or not a PyTorch checkpoint: {error}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{location} does not hold a flat state dict of tensors")
    return _Tensors(location, state, _torch_to_numpy)


def _open_torch(folder: Folder, names: Iterable[str], location: str) -> _Source:
    source = _Source(location)
    for name in names:
        source._add(_load_torch_file(folder, name))
    return source


def find_weights_file(folder: Folder) -> str:
    """The name of the weights file to read, in order of preference."""
    for name in WEIGHTS_FILES:
        if folder.exists(name):
            return name
    raise FileNotFoundError(f"No weights file in {folder.location()}: looked for {', '.join(WEIGHTS_FILES)}")


def open_checkpoint(folder: Folder) -> _Source:
    """The checkpoint in `folder` as a source of tensors (the preferred format if several are present)."""
    name = find_weights_file(folder)
    location = folder.location(name)
    logger.info("Reading weights from %s", location)
    if name == SAFETENSORS:
        return _open_safetensors(folder, [name], location)
    if name == SAFETENSORS_INDEX:
        return _open_safetensors(folder, _read_shard_index(folder, name), location)
    if name == FLAX_MSGPACK:
        return _open_msgpack(folder)
    if name == PYTORCH_BIN:
        return _open_torch(folder, [name], location)
    return _open_torch(folder, _read_shard_index(folder, name), location)


# ---------------------------------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------------------------------


def iter_flax_params(
    folder: Folder,
    expected: Mapping[Path, Any],
    base_model_prefix: str,
    *,
    may_be_missing: Callable[[Path], bool] | None = None,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (Flax path, numpy array in the expected dtype) one tensor at a time.

    The whole checkpoint is checked against `expected` (names and shapes) before the first tensor is read, so a
    mismatch fails fast. A caller placing tensors on devices can drop each array as soon as it is placed.
    Paths for which `may_be_missing(path)` is true may be absent from the checkpoint; they are then not yielded.
    """
    source = open_checkpoint(folder)
    try:
        plan = plan_renames(
            source.shapes, expected, base_model_prefix,
            naming=source.naming, where=source.where, may_be_missing=may_be_missing,
        )
        for key, rename in plan.items():
            yield rename.path, convert_tensor(source.read(key), rename, expected[rename.path].dtype)
    finally:
        source.close()


def load_flax_params(
    folder: Folder,
    expected: Mapping[Path, Any],
    base_model_prefix: str,
    *,
    may_be_missing: Callable[[Path], bool] | None = None,
) -> dict[Path, np.ndarray]:
    """Read the checkpoint in `folder` as flat Flax params matching `expected` (paths -> ShapeDtypeStruct)."""
    return dict(iter_flax_params(folder, expected, base_model_prefix, may_be_missing=may_be_missing))


def save_flax_params(folder: Folder, flat_params: Mapping[Path, Any]) -> None:
    """Write `model.safetensors` with PyTorch names and layouts, streaming one tensor at a time."""
    names: dict[str, Path] = {}
    for path in flat_params:
        name = pytorch_name(path)
        if name in names:
            raise CheckpointError(f"{'/'.join(path)} and {'/'.join(names[name])} would both be saved as {name!r}")
        names[name] = path

    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(names):
        value = flat_params[names[name]]
        dtype = np.dtype(value.dtype)
        if dtype not in _SAFETENSORS_CODES:
            raise CheckpointError(f"Cannot save {'/'.join(names[name])}: dtype {dtype} has no safetensors code")
        shape = list(value.shape)
        if names[name][-1] == "kernel" and len(shape) >= 2:
            shape = [shape[-1], shape[-2]] + shape[:-2]
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _SAFETENSORS_CODES[dtype], "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the format pads the header to 8 bytes with spaces

    with folder.open_file(SAFETENSORS, "wb") as handle:
        handle.write(len(header_bytes).to_bytes(8, "little"))
        handle.write(header_bytes)
        for name in sorted(names):  # safetensors stores little-endian; so do the hosts this runs on
            handle.write(_to_pytorch_layout(names[name], flat_params[names[name]]).tobytes())
    logger.info("Wrote %d tensors to %s", len(names), folder.location(SAFETENSORS))

"""Logical axes -> a device mesh: how parameters and batches are split over the devices one actor owns.

Modules name what each dimension of a parameter *is*, never where it lives:
    nn.Dense(..., kernel_init=logical(init, ("embed", "mlp")))
Inside `naming_axes()` that is flax's `nn.with_logical_partitioning` (init returns the parameters boxed with their
names, which `logical_axes` reads); outside it is `init` itself, so `module.init` gives plain arrays as the Hugging
Face Flax modules do. One rules table (`LOGICAL_AXIS_RULES`) maps those names to the two axes of a mesh (the t5x scheme):
    data   batch rows; each slice along it holds its own copy of whatever the model axis does not split
    model  weights split Megatron-style: attention by heads, the MLP by its hidden units, the vocabulary by rows
The joined heads x head_dim dimension of the q/k/v/o kernels is named "heads": it is head-major, so a split by a
divisor of the head count keeps every head whole on one device.

A dimension that the mesh axis does not divide stays whole (replicated along that axis), so any checkpoint loads on
any mesh; the division that does happen is what `per_device_bytes` counts. Everything here works on a mesh *shape*
({"data": 2, "model": 4}) as well as on a real `Mesh`, so plans for hardware this host does not have
(bench/plan_ul2.py) use the same arithmetic as loading does.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from textbatch.models.quantize import QuantizedArray

logger = logging.getLogger(__name__)

Path = tuple[str, ...]
Names = tuple[str | None, ...]

MESH_AXES = ("data", "model")

# Logical axis -> mesh axis (None: never split). Every name a module uses must be listed, so a typo fails loudly.
LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),  # the rows of every input (shard_batch)
    ("vocab", "model"),
    ("heads", "model"),
    ("mlp", "model"),
    ("embed", None),
    ("kv", None),  # head_dim and sequence length: activation dimensions, never split
    ("length", None),
    ("positions", None),  # rows of a learned position table
    ("types", None),  # token type table rows
    ("langs", None),  # language table rows
    ("buckets", None),  # T5 relative position buckets
    ("labels", None),  # classifier outputs: too few to be worth splitting
)

# Of a device's memory, the share device_map="auto" lets the weights take; the rest is for activations and caches.
AUTO_WEIGHT_SHARE = 0.6


class ShardingError(ValueError):
    """A mesh, a rule or a device map that cannot work."""


_NAMING_AXES = contextvars.ContextVar("textbatch_naming_axes", default=False)


def logical(init: Callable[..., Any], axes: Names) -> Callable[..., Any]:
    """A parameter initialiser that names the parameter's logical axes while `naming_axes()` is active."""
    return nn.with_logical_partitioning(init, axes) if _NAMING_AXES.get() else init


@contextlib.contextmanager
def naming_axes() -> Iterator[None]:
    """While active, `module.init` returns every named parameter boxed with its logical axes."""
    token = _NAMING_AXES.set(True)
    try:
        yield
    finally:
        _NAMING_AXES.reset(token)


# ---------------------------------------------------------------------------------------------------------------------
# Names -> partition specs (pure)
# ---------------------------------------------------------------------------------------------------------------------


def logical_axes(boxed_params: Any) -> dict[Path, Names | None]:
    """Flat {path: logical names} of a parameter tree as `module.init` returns it (boxed by
    `nn.with_logical_partitioning`); a parameter its module did not name maps to None."""
    is_box = lambda leaf: isinstance(leaf, nn.LogicallyPartitioned)
    leaves = jax.tree_util.tree_flatten_with_path(boxed_params, is_leaf=is_box)[0]
    out: dict[Path, Names | None] = {}
    for key_path, leaf in leaves:
        path = tuple(str(getattr(key, "key", key)) for key in key_path)
        out[path] = tuple(leaf.names) if is_box(leaf) else None
    return out


def mesh_shape_of(mesh: Mesh | Mapping[str, int]) -> dict[str, int]:
    shape = dict(mesh.shape) if isinstance(mesh, Mesh) else dict(mesh)
    unknown = sorted(set(shape) - set(MESH_AXES))
    if unknown:
        raise ShardingError(f"mesh axes must be {MESH_AXES}, got {tuple(shape)}")
    return {axis: int(shape.get(axis, 1)) for axis in MESH_AXES}


def partition_spec(
    shape: Sequence[int],
    names: Names | None,
    mesh: Mesh | Mapping[str, int],
    rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES,
    *,
    where: str = "a parameter",
) -> PartitionSpec:
    """The mesh axis of each dimension: the rule's, unless that mesh axis is already used by an earlier dimension,
    has size 1, or does not divide the dimension (then the dimension stays whole)."""
    if names is None:
        return PartitionSpec()
    if len(names) != len(shape):
        raise ShardingError(f"{where} has shape {tuple(shape)} but its module names {len(names)} axes: {names}")
    table = dict(rules)
    sizes = mesh_shape_of(mesh)
    used: set[str] = set()
    spec: list[str | None] = []
    for size, name in zip(shape, names, strict=True):
        if name is not None and name not in table:
            raise ShardingError(
                f"{where} names the logical axis {name!r}, which the rules table does not list "
                f"(known: {', '.join(sorted(table))}); add it to sharding.LOGICAL_AXIS_RULES"
            )
        axis = None if name is None else table[name]
        if axis is None or axis in used or sizes[axis] == 1:
            spec.append(None)
            continue
        if size % sizes[axis]:
            logger.debug("%s: dimension %s (%d) is not divisible by %s=%d; kept whole", where, name, size, axis,
                         sizes[axis])
            spec.append(None)
            continue
        used.add(axis)
        spec.append(axis)
    return PartitionSpec(*spec)


def leaf_specs(leaf: Any, spec: PartitionSpec) -> Any:
    """The spec of a stored parameter: an int8 kernel's values share the kernel's; its per-channel scales [out]
    follow the kernel's last dimension."""
    if isinstance(leaf, QuantizedArray):
        last = spec[len(leaf.shape) - 1] if len(spec) >= len(leaf.shape) else None
        return QuantizedArray(values=spec, scale=PartitionSpec(last), dtype=leaf.dtype)
    return spec


def _leaf_bytes(shape: Sequence[int], dtype: Any, spec: PartitionSpec, sizes: Mapping[str, int]) -> int:
    parts = math.prod(sizes[axis] for axis in spec if axis is not None)
    return math.prod(shape) * np.dtype(dtype).itemsize // parts


def per_device_bytes(
    stored: Mapping[Path, Any],
    axes: Mapping[Path, Names | None],
    mesh: Mesh | Mapping[str, int],
    rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES,
) -> int:
    """Bytes of parameters each device holds, for flat `stored` leaves (arrays, ShapeDtypeStructs or
    QuantizedArrays of either) placed on `mesh` (a Mesh or a shape such as {"data": 2, "model": 4})."""
    sizes = mesh_shape_of(mesh)
    total = 0
    for path, leaf in stored.items():
        spec = partition_spec(leaf.shape, axes.get(path), sizes, rules, where="/".join(path))
        if isinstance(leaf, QuantizedArray):
            specs = leaf_specs(leaf, spec)
            total += _leaf_bytes(leaf.values.shape, leaf.values.dtype, specs.values, sizes)
            total += _leaf_bytes(leaf.scale.shape, leaf.scale.dtype, specs.scale, sizes)
        else:
            total += _leaf_bytes(leaf.shape, leaf.dtype, spec, sizes)
    return total


# ---------------------------------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------------------------------


def parse_mesh(text: str) -> dict[str, int]:
    """"data=2,model=4" -> {"data": 2, "model": 4} (either may be left out: it then takes the remaining devices)."""
    sizes: dict[str, int] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = re.fullmatch(r"(data|model)\s*=\s*(\d+)", part)
        if match is None or match.group(1) in sizes or int(match.group(2)) < 1:
            raise ShardingError(f"--mesh takes data=N,model=M with positive sizes, each once; got {text!r}")
        sizes[match.group(1)] = int(match.group(2))
    if not sizes:
        raise ShardingError(f"--mesh takes data=N,model=M; got {text!r}")
    return sizes


def make_mesh(data: int | None = None, model: int | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("data", "model") mesh over `devices` (default: this process's devices). Give either size, or both; the
    product must be the number of devices."""
    devices = list(jax.local_devices() if devices is None else devices)
    count = len(devices)
    if data is None and model is None:
        data, model = count, 1
    elif data is None:
        data = count // model if model and count % model == 0 else 0
    elif model is None:
        model = count // data if data and count % data == 0 else 0
    if data < 1 or model < 1 or data * model != count:
        raise ShardingError(
            f"a mesh of data={data} x model={model} does not cover the {count} devices this actor has; "
            "the two sizes must multiply to the device count"
        )
    try:  # the topology-aware layout (TPU rings, NVLink islands) when the devices have one
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh((data, model), devices=devices)
    except Exception:  # noqa: BLE001 - CPU devices and device subsets: plain order is as good as any
        grid = np.asarray(devices, dtype=object).reshape(data, model)
    return Mesh(grid, MESH_AXES)


def device_memory_bytes(device: Any) -> int | None:
    """What a device can hold, as its runtime reports it (None on CPU, which reports nothing)."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def choose_model_axis(
    stored: Mapping[Path, Any],
    axes: Mapping[Path, Names | None],
    device_count: int,
    weight_budget: int | None,
) -> int:
    """The narrowest model axis (a divisor of `device_count`) whose per-device weights fit in `weight_budget`
    bytes; the rest of the devices go to the data axis. Without a budget: 1 (every device a data replica)."""
    divisors = [size for size in range(1, device_count + 1) if device_count % size == 0]
    if weight_budget is None:
        return 1
    needed = {}
    for model in divisors:
        needed[model] = per_device_bytes(stored, axes, {"data": device_count // model, "model": model})
        if needed[model] <= weight_budget:
            return model
    raise ShardingError(
        f"the weights do not fit on {device_count} device(s): even split {device_count} ways they take "
        f"{needed[divisors[-1]] / 2**30:.2f} GiB per device, over the {weight_budget / 2**30:.2f} GiB budget "
        f"({AUTO_WEIGHT_SHARE:.0%} of device memory); use more devices, load_in_8bit=True or a bfloat16 param_dtype"
    )


def auto_mesh(
    stored: Mapping[Path, Any],
    axes: Mapping[Path, Names | None],
    devices: Sequence[Any] | None = None,
    max_memory_per_device: int | None = None,
) -> Mesh:
    """device_map="auto": every local device, the model axis as wide as the weights need to fit in
    AUTO_WEIGHT_SHARE of a device's memory (`max_memory_per_device` bytes, else what the runtime reports)."""
    devices = list(jax.local_devices() if devices is None else devices)
    memory = max_memory_per_device if max_memory_per_device is not None else device_memory_bytes(devices[0])
    budget = None if memory is None else int(memory * AUTO_WEIGHT_SHARE)
    if budget is None:
        logger.info("device_map='auto': %s reports no memory size; replicating the weights on every device",
                    devices[0].platform)
    model = choose_model_axis(stored, axes, len(devices), budget)
    mesh = make_mesh(len(devices) // model, model, devices)
    logger.info("device_map='auto': mesh data=%d x model=%d over %s devices", len(devices) // model, model,
                devices[0].platform)
    return mesh


def resolve_mesh(
    mesh: Mesh | None,
    device_map: str | None,
    stored: Mapping[Path, Any],
    axes: Mapping[Path, Names | None],
    max_memory_per_device: int | None = None,
) -> Mesh | None:
    """The mesh `from_pretrained` loads onto: the one given, the one device_map="auto" picks, or None (the
    default device)."""
    if mesh is not None and device_map is not None:
        raise ShardingError("give mesh= or device_map=, not both")
    if device_map is not None:
        if device_map != "auto":
            raise ShardingError(
                f"device_map={device_map!r} is not supported: use device_map='auto' (every local device) or pass "
                "mesh=jax.sharding.Mesh(devices, ('data', 'model'))"
            )
        return auto_mesh(stored, axes, max_memory_per_device=max_memory_per_device)
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise ShardingError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        mesh_shape_of(mesh)  # names the axes if they are not ("data", "model")
    return mesh


def load_options(
    dtype: str = "float32",
    *,
    mesh: str | None = None,
    devices_per_actor: int | None = None,
    load_in_8bit: bool = False,
) -> dict[str, Any]:
    """The `from_pretrained` keyword arguments of a job's model actor, from its command-line options.

    dtype              the computation dtype; "bfloat16" also stores kernels and embeddings in bfloat16, which halves
                       the weights and changes no output (every layer casts them to bfloat16 anyway)
    mesh               "data=N,model=M" over the actor's devices
    devices_per_actor  how many of the visible devices the actor uses (default: all); several without `mesh`: the
                       model axis as wide as the weights need (device_map="auto")
    load_in_8bit       int8 dense kernels
    """
    import jax.numpy as jnp

    options: dict[str, Any] = {"dtype": getattr(jnp, dtype), "load_in_8bit": bool(load_in_8bit)}
    if dtype != "float32":
        options["param_dtype"] = getattr(jnp, dtype)
    visible = jax.local_devices()
    devices = visible
    if devices_per_actor is not None:
        if not 1 <= devices_per_actor <= len(visible):
            raise ShardingError(
                f"devices_per_actor={devices_per_actor} but this actor sees {len(visible)} "
                f"{visible[0].platform} device(s): ask Ray for as many as the actor uses"
            )
        devices = visible[:devices_per_actor]
    if mesh is not None:
        sizes = parse_mesh(mesh)
        options["mesh"] = make_mesh(sizes.get("data"), sizes.get("model"), devices)
    elif len(devices) > 1 and devices_per_actor is not None:
        if len(devices) == len(visible):
            options["device_map"] = "auto"
        else:  # device_map="auto" takes every visible device: a subset gets a data-parallel mesh
            logger.info("using %d of the %d visible devices as data replicas; pass a mesh to split the model",
                        len(devices), len(visible))
            options["mesh"] = make_mesh(len(devices), 1, devices)
    return options


# ---------------------------------------------------------------------------------------------------------------------
# Placement: one tensor at a time, straight onto its shards
# ---------------------------------------------------------------------------------------------------------------------


class ParamPlacement:
    """Puts each parameter on the devices it belongs to as soon as it is read, so that the host never holds more
    than the tensor in hand: with a mesh, each device receives only its own shard; without one, the whole tensor
    goes to the default device."""

    def __init__(self, mesh: Mesh | None, axes: Mapping[Path, Names | None],
                 rules: Sequence[tuple[str, str | None]] = LOGICAL_AXIS_RULES):
        self.mesh = mesh
        self.axes = dict(axes)
        self.rules = tuple(rules)

    def spec(self, path: Path, leaf: Any) -> Any:
        names = self.axes.get(path)
        if names is None and self.mesh is not None:
            logger.debug("%s names no logical axes: replicated on every device", "/".join(path))
        return leaf_specs(leaf, partition_spec(leaf.shape, names, self.mesh, self.rules, where="/".join(path)))

    def sharding(self, path: Path, leaf: Any) -> Any:
        spec = self.spec(path, leaf)
        to_sharding = lambda s: NamedSharding(self.mesh, s)
        if isinstance(leaf, QuantizedArray):
            return QuantizedArray(values=to_sharding(spec.values), scale=to_sharding(spec.scale), dtype=leaf.dtype)
        return to_sharding(spec)

    def place(self, path: Path, leaf: Any) -> Any:
        if self.mesh is None:
            return jax.device_put(leaf)
        return jax.device_put(leaf, self.sharding(path, leaf))


def shard_batch(arrays: Mapping[str, Any], mesh: Mesh | None) -> dict[str, Any]:
    """Model inputs split by rows over the data axis (each data slice runs its own rows); an array whose row count
    the data axis does not divide, or that has no rows (a scalar), is replicated. No mesh: left as they are."""
    if mesh is None:
        return dict(arrays)
    axis = dict(LOGICAL_AXIS_RULES)["batch"]
    parts = mesh_shape_of(mesh)[axis]
    out = {}
    for name, value in arrays.items():
        rows = np.shape(value)[0] if np.ndim(value) else 0
        spec = PartitionSpec(axis) if parts > 1 and rows and rows % parts == 0 else PartitionSpec()
        sharding = NamedSharding(mesh, spec)
        if isinstance(value, jax.core.Tracer):  # inside a caller's jit: a constraint, not a transfer
            out[name] = jax.lax.with_sharding_constraint(value, sharding)
        else:
            out[name] = jax.device_put(value, sharding)
    return out


def device_bytes(params: Any) -> dict[Any, int]:
    """Bytes of `params` each device actually holds (sums the addressable shards of every array)."""
    held: dict[Any, int] = {}
    for leaf in jax.tree_util.tree_leaves(params):
        for shard in leaf.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return held

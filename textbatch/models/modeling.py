"""What every model class shares: construction, parameters, a compiled forward pass, from_pretrained/save_pretrained.

The split follows the Hugging Face Flax classes: a stateless `flax.linen` module (`model.module`) and a wrapper that
owns the config and the parameters (`model.params`) and keeps their call signatures.

Loading reads one tensor at a time and puts it where it will live before reading the next: stored as the
`StoragePlan` says (float32, a half-precision dtype, int8 kernels; quantize.py) and placed on the default device or,
with a mesh, straight onto its shards (sharding.py). The host never holds a second full copy of the weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.sharding import Mesh

from textbatch.models.checkpoint import iter_flax_params, save_flax_params
from textbatch.models.configuration import PretrainedConfig
from textbatch.models.matmuls import dense_matmuls
from textbatch.models.quantize import StoragePlan, dequantize_params, params_bytes
from textbatch.models.sharding import ParamPlacement, logical_axes, naming_axes, resolve_mesh, shard_batch
from textbatch.storage import Folder

logger = logging.getLogger(__name__)

_STATIC_FLAGS = ("deterministic", "output_attentions", "output_hidden_states")


class FlaxPreTrainedModel:
    config_class: ClassVar[type[PretrainedConfig]]
    module_class: ClassVar[type]
    base_model_prefix: ClassVar[str] = ""
    # Regular expressions over "/"-joined parameter paths a checkpoint may lack; they are then initialised (with a
    # warning, as the reference gives). Whatever lies outside the base model in a head model always may be.
    init_if_missing: ClassVar[tuple[str, ...]] = ()
    # Regular expressions over parameter paths stored float32 (and never quantised) under float16, and under int8
    # in half precision; the strict ones in every half-precision run (quantize.py's float32 rules).
    keep_in_float32: ClassVar[tuple[str, ...]] = ()
    keep_in_float32_strict: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        config: PretrainedConfig,
        input_shape: tuple[int, ...] = (1, 1),
        seed: int = 0,
        dtype: jnp.dtype = jnp.float32,
        _do_init: bool = True,
        **module_kwargs: Any,
    ):
        self.config = config
        self.dtype = dtype
        self.input_shape = input_shape
        self.key = jax.random.PRNGKey(seed)
        self.module = self.module_class(config=config, dtype=dtype, **module_kwargs)
        self.mesh: Mesh | None = None  # set by from_pretrained(mesh=... | device_map="auto")
        self._params = self.init_weights(self.key, input_shape) if _do_init else None
        self._compiled_apply = jax.jit(self._apply, static_argnames=_STATIC_FLAGS)

    # --- parameters -------------------------------------------------------------------------------------------

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        raise NotImplementedError(f"{type(self).__name__} must say which inputs initialise it")

    def init_weights(self, rng: jax.Array, input_shape: tuple[int, ...], params: dict | None = None) -> dict:
        variables = self.module.init({"params": rng, "dropout": rng}, **self.dummy_inputs(input_shape))
        return variables["params"] if params is None else params

    def _boxed_init(self, rng: jax.Array, input_shape: tuple[int, ...]) -> dict:
        """Fresh parameters, each boxed with the logical axis names its module gave (sharding.naming_axes)."""
        with naming_axes():
            return self.init_weights(rng, input_shape)

    @property
    def params_logical_axes(self) -> dict[tuple[str, ...], tuple[str | None, ...] | None]:
        """Flat {parameter path: the logical axis names its module gave it}, without allocating any weights."""
        return logical_axes(jax.eval_shape(lambda rng: self._boxed_init(rng, self.input_shape), self.key))

    @property
    def params_shape_tree(self) -> dict:
        """The parameter tree as shapes and dtypes, without allocating any weights."""
        return jax.eval_shape(lambda rng: self.init_weights(rng, self.input_shape), self.key)

    @property
    def params(self) -> dict:
        if self._params is None:
            raise ValueError(
                f"{type(self).__name__} was built with _do_init=False and holds no parameters: "
                "pass params= to the call or set model.params"
            )
        return self._params

    @params.setter
    def params(self, params: dict) -> None:
        self._params = params

    # --- forward ------------------------------------------------------------------------------------------------

    def place_inputs(self, arrays: dict[str, Any]) -> dict[str, Any]:
        """With a mesh, inputs are split by rows over its data axis; without one they are left as they are."""
        return shard_batch(arrays, self.mesh) if self.mesh is not None else arrays

    def _apply(self, params, inputs, rngs, cache, **flags):
        with dense_matmuls():  # int8 kernels as stored, half precision accumulated in float32
            if cache is None:
                return self.module.apply({"params": params}, **inputs, rngs=rngs, **flags)
            # A KV cache is state the call updates: it goes in as the "cache" collection and comes back out of it.
            outputs, updated = self.module.apply(
                {"params": params, "cache": cache}, **inputs, rngs=rngs, mutable=["cache"], **flags
            )
        return outputs.replace(past_key_values=updated["cache"])

    def apply_module(
        self,
        inputs: dict[str, Any],
        *,
        params: dict | None,
        dropout_rng: jax.Array | None,
        train: bool,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
        return_dict: bool | None,
        cache: dict | None = None,
    ):
        """Runs the compiled module on the given inputs (None entries use the module's defaults). The module always
        returns an output dataclass; `return_dict=False` turns it into its tuple view here."""
        if train and dropout_rng is None:
            raise ValueError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")
        cfg = self.config
        flags = {
            "deterministic": not train,
            "output_attentions": cfg.output_attentions if output_attentions is None else output_attentions,
            "output_hidden_states": cfg.output_hidden_states if output_hidden_states is None else output_hidden_states,
        }
        arrays = self.place_inputs({name: jnp.asarray(value) for name, value in inputs.items() if value is not None})
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
        outputs = self._compiled_apply(self.params if params is None else params, arrays, rngs, cache, **flags)
        as_dict = cfg.use_return_dict if return_dict is None else return_dict
        return outputs if as_dict else outputs.to_tuple()

    # --- checkpoints -------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: PretrainedConfig | None = None,
        dtype: jnp.dtype = jnp.float32,
        input_shape: tuple[int, ...] = (1, 1),
        seed: int = 0,
        revision: str | None = None,
        cache_dir: str | None = None,
        _do_init: bool = True,
        mesh: Mesh | None = None,
        device_map: str | None = None,
        max_memory_per_device: int | None = None,
        load_in_8bit: bool = False,
        param_dtype: Any = None,
        keep_in_float32: Sequence[str] | None = None,
        **config_overrides: Any,
    ):
        """Loads a Hugging Face checkpoint folder, fsspec URL or hub id. Keyword arguments that name config fields
        (e.g. `num_labels=3`) override config.json. With `_do_init=False` returns `(model, params)`, as the reference.

        Where the weights go (one tensor at a time, straight onto their shards):
          mesh                   a `jax.sharding.Mesh` with axes ("data", "model"): parameters split by the rules of
                                 sharding.py; `model.params` then holds sharded arrays and calls split batches by rows
          device_map="auto"      every local device, the model axis as wide as the weights need
                                 (`max_memory_per_device` bytes, else what the runtime reports)
        How they are stored (quantize.py):
          load_in_8bit=True      dense kernels as int8 with per-channel scales, dequantised inside the computation
          param_dtype            e.g. jnp.bfloat16: kernels and embeddings stored in it (default: as loaded, float32)
          keep_in_float32        path patterns kept float32 under float16 and unquantised under int8 in half
                                 precision (default: the model's own; its strict patterns apply either way)
        """
        folder = Folder.open(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir)
        if config is None:
            config = cls.config_class.from_dict(folder.read_json("config.json"))
        for key, value in config_overrides.items():
            if key != "num_labels" and not hasattr(config, key):
                raise TypeError(f"{cls.__name__}.from_pretrained got an unexpected keyword argument {key!r}")
            setattr(config, key, value)
        model = cls(config, input_shape=input_shape, seed=seed, dtype=dtype, _do_init=False)
        boxed = jax.eval_shape(lambda rng: model._boxed_init(rng, input_shape), model.key)
        expected = traverse_util.flatten_dict(nn.meta.unbox(boxed))
        axes = logical_axes(boxed)
        storage = StoragePlan.build(
            compute_dtype=dtype,
            param_dtype=param_dtype,
            load_in_8bit=load_in_8bit,
            keep_in_float32=cls.keep_in_float32 if keep_in_float32 is None else keep_in_float32,
            keep_in_float32_strict=cls.keep_in_float32_strict,
        )
        mesh = resolve_mesh(mesh, device_map, storage.abstract_tree(expected), axes, max_memory_per_device)
        placement = ParamPlacement(mesh, axes)
        flat = {}
        read_as = {path: jax.ShapeDtypeStruct(struct.shape, storage.read_dtype(path, struct))
                   for path, struct in expected.items()}
        tensors = iter_flax_params(folder, read_as, cls.base_model_prefix, may_be_missing=model._may_be_missing(expected))
        for path, array in tensors:
            flat[path] = placement.place(path, storage.store(path, array))
            del array  # the host copy goes as soon as the tensor is on its devices
        missing = [path for path in expected if path not in flat]
        if missing:
            logger.warning(
                "Some weights of %s were not in the checkpoint at %s and are newly initialised: %s. "
                "Train the model on a downstream task before trusting its predictions.",
                cls.__name__, folder.location(), ", ".join("/".join(path) for path in missing),
            )
            for path, value in model._initialise(missing).items():
                flat[path] = placement.place(path, storage.store(path, value))
        params = traverse_util.unflatten_dict(flat)
        model.mesh = mesh
        logger.info(
            "loaded %s from %s: %.1f MiB of parameters%s%s", cls.__name__, folder.location(),
            params_bytes(params) / 2**20, " (int8 kernels)" if load_in_8bit else "",
            f" on a mesh {dict(mesh.shape)}" if mesh is not None else "",
        )
        if not _do_init:
            return model, params
        model.params = params
        return model

    def _may_be_missing(self, expected: dict) -> Callable[[tuple[str, ...]], bool]:
        patterns = [re.compile(pattern) for pattern in self.init_if_missing]
        is_head_model = any(path[0] == self.base_model_prefix for path in expected)

        def may_be_missing(path: tuple[str, ...]) -> bool:
            if is_head_model and path[0] != self.base_model_prefix:
                return True
            return any(pattern.search("/".join(path)) for pattern in patterns)

        return may_be_missing

    def _initialise(self, paths: list[tuple[str, ...]]) -> dict:
        """Fresh values for some parameters. Under jit, XLA drops the initialisers of every other parameter."""
        def pick(rng):
            flat = traverse_util.flatten_dict(self.init_weights(rng, self.input_shape))
            return [flat[path] for path in paths]

        return dict(zip(paths, jax.device_get(jax.jit(pick)(self.key)), strict=True))

    def save_pretrained(self, save_directory: str | os.PathLike, params: dict | None = None) -> None:
        """Writes config.json and model.safetensors with PyTorch tensor names, loadable by transformers."""
        folder = Folder.open(save_directory, create=True)
        config = self.config.to_dict()
        config["architectures"] = [type(self).__name__.removeprefix("Flax")]
        folder.write_bytes("config.json", (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
        params = self.params if params is None else params
        dequantized = dequantize_params(params)
        if dequantized is not params:
            logger.warning("saving %s: its int8 kernels are written dequantised, in their floating dtype",
                           type(self).__name__)
        save_flax_params(folder, traverse_util.flatten_dict(jax.device_get(dequantized)))

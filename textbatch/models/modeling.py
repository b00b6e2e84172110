"""What every model class shares: construction, parameters, a compiled forward pass, from_pretrained/save_pretrained.

The split follows the Hugging Face Flax classes: a stateless `flax.linen` module (`model.module`) and a wrapper that
owns the config and the parameters (`model.params`) and keeps their call signatures.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import traverse_util

from textbatch.models.checkpoint import load_flax_params, save_flax_params
from textbatch.models.configuration import PretrainedConfig
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
        self._params = self.init_weights(self.key, input_shape) if _do_init else None
        self._compiled_apply = jax.jit(self._apply, static_argnames=_STATIC_FLAGS)

    # --- parameters -------------------------------------------------------------------------------------------

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        raise NotImplementedError(f"{type(self).__name__} must say which inputs initialise it")

    def init_weights(self, rng: jax.Array, input_shape: tuple[int, ...], params: dict | None = None) -> dict:
        variables = self.module.init({"params": rng, "dropout": rng}, **self.dummy_inputs(input_shape))
        return variables["params"] if params is None else params

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

    def _apply(self, params, inputs, rngs, cache, **flags):
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
        arrays = {name: jnp.asarray(value) for name, value in inputs.items() if value is not None}
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
        **config_overrides: Any,
    ):
        """Loads a Hugging Face checkpoint folder, fsspec URL or hub id. Keyword arguments that name config fields
        (e.g. `num_labels=3`) override config.json. With `_do_init=False` returns `(model, params)`, as the reference.
        """
        folder = Folder.open(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir)
        if config is None:
            config = cls.config_class.from_dict(folder.read_json("config.json"))
        for key, value in config_overrides.items():
            if key != "num_labels" and not hasattr(config, key):
                raise TypeError(f"{cls.__name__}.from_pretrained got an unexpected keyword argument {key!r}")
            setattr(config, key, value)
        model = cls(config, input_shape=input_shape, seed=seed, dtype=dtype, _do_init=False)
        expected = traverse_util.flatten_dict(model.params_shape_tree)
        flat = load_flax_params(folder, expected, cls.base_model_prefix, may_be_missing=model._may_be_missing(expected))
        missing = [path for path in expected if path not in flat]
        if missing:
            logger.warning(
                "Some weights of %s were not in the checkpoint at %s and are newly initialised: %s. "
                "Train the model on a downstream task before trusting its predictions.",
                cls.__name__, folder.location(), ", ".join("/".join(path) for path in missing),
            )
            flat.update(model._initialise(missing))
        params = jax.device_put(traverse_util.unflatten_dict(flat))
        logger.info("loaded %s from %s", cls.__name__, folder.location())
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
        flat = traverse_util.flatten_dict(jax.device_get(self.params if params is None else params))
        save_flax_params(folder, flat)

"""FlauBERT (XLM's architecture) in Flax, read top to bottom: config -> attention, FFN -> transformer -> model.

Parameter names follow the PyTorch checkpoints, which group weights by kind rather than by layer
(`attentions/3/q_lin/kernel`, `layer_norm1/3/scale`, `ffns/3/lin1/kernel`), so loading is the generic rename of
checkpoint.py. The heads are in flaubert_heads.py and re-exported here.

What the config switches do, all supported:
- `pre_norm`: LayerNorm before attention / FFN (residual around them) instead of after the residual sum.
- `sinusoidal_embeddings`: fixed sine/cosine position table at initialisation (checkpoints store the table).
- `n_langs > 1` with `use_lang_emb`: a language embedding added per token from `langs`.
- `causal`: each token sees itself and the tokens before it, padding included (as the reference); with a `cache`
  from `init_cache` the model runs only the tokens the cache does not hold yet.
- `lengths` stands in for `attention_mask` (token i of row b is real when i < lengths[b]); with neither, tokens
  after the first `count(input_ids != pad_index)` positions are padding. Outputs at padding positions are zero.
- `layerdrop`, `dropout`, `attention_dropout`: nothing at inference; in training layerdrop keeps a dropped layer's
  input (so hidden_states / attentions still hold one entry per layer).
- `is_encoder=False` (the reference's unimplemented decoder) fails at construction; `asm=True` (adaptive softmax)
  fails when the LM head model is built, naming the option.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from textbatch.models.activations import activation
from textbatch.models.attention import attend
from textbatch.models.configuration import PretrainedConfig
from textbatch.models.modeling import FlaxPreTrainedModel
from textbatch.models.outputs import ModelOutput
from textbatch.models.sharding import logical

logger = logging.getLogger(__name__)

NEG_INF = float(jnp.finfo(jnp.float32).min)


class FlaubertConfig(PretrainedConfig):
    """Every field of transformers' FlaubertConfig, with its defaults. The XLM names `hidden_size`,
    `num_attention_heads`, `num_hidden_layers`, `n_words` and `bos_index` / `eos_index` / `pad_index` are aliases of
    `emb_dim`, `n_heads`, `n_layers`, `vocab_size` and `bos_token_id` / `eos_token_id` / `pad_token_id`."""

    model_type = "flaubert"
    defaults = {
        "pre_norm": False,
        "layerdrop": 0.0,
        "vocab_size": 30145,
        "emb_dim": 2048,
        "n_layers": 12,
        "n_heads": 16,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "gelu_activation": True,
        "sinusoidal_embeddings": False,
        "causal": False,
        "asm": False,
        "n_langs": 1,
        "use_lang_emb": True,
        "max_position_embeddings": 512,
        "embed_init_std": 2048**-0.5,
        "layer_norm_eps": 1e-12,
        "init_std": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "unk_index": 3,
        "mask_index": 5,
        "is_encoder": True,
        "summary_type": "first",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "start_n_top": 5,
        "end_n_top": 5,
        "mask_token_id": 0,
        "lang_id": 0,
        "tie_word_embeddings": True,
    }
    aliases: ClassVar[dict[str, str]] = {
        "hidden_size": "emb_dim",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "n_words": "vocab_size",
        "bos_index": "bos_token_id",
        "eos_index": "eos_token_id",
        "pad_index": "pad_token_id",
    }

    def __init__(self, **kwargs: Any):
        # An alias given alongside its field (old XLM config.json files carry both) must not override it.
        for alias, field in self.aliases.items():
            if alias in kwargs and field in kwargs:
                kwargs.pop(alias)
        super().__init__(**kwargs)
        if self.emb_dim % self.n_heads:
            raise ValueError(f"emb_dim ({self.emb_dim}) must be a multiple of n_heads ({self.n_heads})")

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails: the aliases
        field = type(self).aliases.get(name)
        if field is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self, field)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(type(self).aliases.get(name, name), value)


def sinusoidal_positions(n_positions: int, dim: int) -> np.ndarray:
    """[n_positions, dim]: sin(pos / 10000^(2i/dim)) at even columns 2i, cos of the same angle at odd ones 2i+1."""
    positions = np.arange(n_positions, dtype=np.float64)[:, None]
    pair = np.arange(dim) // 2  # columns 2i and 2i+1 share an angle
    angles = positions / np.power(10000.0, 2 * pair / dim)[None, :]
    return np.where(np.arange(dim) % 2 == 0, np.sin(angles), np.cos(angles)).astype(np.float32)


def _fixed_table(table: np.ndarray):
    """An initialiser that returns `table` whatever the rng."""

    def init(rng, shape, dtype=jnp.float32):
        return jnp.asarray(table, dtype)

    return init


def token_mask(input_ids, attention_mask, lengths, pad_index: int, batch: int, seq_len: int) -> jax.Array:
    """[batch, seq_len] 1 for real tokens: the attention_mask, else position < lengths, else position < the number
    of non-pad tokens (the reference counts pads anywhere in the row, then masks the row's tail)."""
    if attention_mask is not None:
        return attention_mask
    if lengths is None:
        if input_ids is None:
            return jnp.ones((batch, seq_len), dtype=jnp.int32)
        lengths = jnp.sum(input_ids != pad_index, axis=1)
    return (jnp.arange(seq_len)[None, :] < jnp.asarray(lengths)[:, None]).astype(jnp.int32)


def _dense(features: int, config: FlaubertConfig, dtype, name: str, axes: tuple[str, str]) -> nn.Dense:
    """A projection whose kernel [in, out] and bias [out] name their logical axes (sharding.py maps them)."""
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=logical(nn.initializers.normal(config.init_std), axes),
        bias_init=logical(nn.initializers.zeros_init(), axes[-1:]),
        name=name,
    )


def _layer_norm(config: FlaubertConfig, dtype, name: str) -> nn.LayerNorm:
    # Flax computes the statistics in float32 even for bfloat16 inputs.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps,
        dtype=dtype,
        scale_init=logical(nn.initializers.ones_init(), ("embed",)),
        bias_init=logical(nn.initializers.zeros_init(), ("embed",)),
        name=name,
    )


class FlaubertAttention(nn.Module):
    """Multi-head self-attention (q_lin, k_lin, v_lin, out_lin).

    With a "cache" collection (made by `init_cache`), keys and values of this call are written at `cache_index`
    into static-shape buffers `cached_key` / `cached_value` [batch, max_length, heads, head_dim] and the queries
    attend to every buffered position up to their own (a cache is only used by causal models).
    """

    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, bias, layer_head_mask, init_cache=False, deterministic=True):
        cfg = self.config
        heads = cfg.n_heads
        head_dim = cfg.emb_dim // heads

        def project(name):
            out = _dense(cfg.emb_dim, cfg, self.dtype, name, ("embed", "heads"))(hidden)
            return out.reshape(*out.shape[:2], heads, head_dim)  # [batch, len, heads, head_dim]

        query, key, value = project("q_lin"), project("k_lin"), project("v_lin")
        if self.has_variable("cache", "cached_key") or init_cache:
            key, value, bias = self._use_cache(query, key, value, bias)
        dropout = nn.Dropout(cfg.attention_dropout)
        context, probs = attend(
            query,
            key,
            value,
            bias,
            scale=head_dim**-0.5,
            dropout=None if deterministic else lambda p: dropout(p, deterministic=False),
            head_mask=layer_head_mask,
        )
        context = context.reshape(*context.shape[:2], cfg.emb_dim)  # [batch, len, emb_dim]
        return _dense(cfg.emb_dim, cfg, self.dtype, "out_lin", ("heads", "embed"))(context), probs

    def _use_cache(self, query, key, value, bias):
        initialised = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        if not initialised:  # init_cache only needs the shapes
            return key, value, bias
        start = cache_index.value
        key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, start, 0, 0))  # [batch, max_len, heads, dim]
        value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, start, 0, 0))
        cached_key.value, cached_value.value = key, value
        cache_index.value = start + query.shape[1]
        return key, value, causal_bias(query.shape[1], key.shape[1], start)


def causal_bias(q_len: int, k_len: int, offset) -> jax.Array:
    """Query i (at absolute position offset + i) sees keys 0 .. offset + i: additive float32 bias [1, 1, q, k]."""
    allowed = jnp.arange(k_len)[None, :] <= offset + jnp.arange(q_len)[:, None]
    return jnp.where(allowed, 0.0, NEG_INF)[None, None].astype(jnp.float32)


class FlaubertFFN(nn.Module):
    """lin1 (emb_dim -> 4 emb_dim) -> GELU (exact) or ReLU -> lin2 -> dropout."""

    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, deterministic=True):
        cfg = self.config
        hidden = _dense(4 * cfg.emb_dim, cfg, self.dtype, "lin1", ("embed", "mlp"))(hidden)
        hidden = activation("gelu" if cfg.gelu_activation else "relu")(hidden)
        hidden = _dense(cfg.emb_dim, cfg, self.dtype, "lin2", ("mlp", "embed"))(hidden)
        return nn.Dropout(cfg.dropout)(hidden, deterministic=deterministic)


class FlaubertNumbered(nn.Module):
    """One kind of per-layer block, its instances named "0", "1", ... like the checkpoint's ModuleLists
    (`attentions.3`, `layer_norm1.3`): `blocks(i, ...)` runs block i."""

    config: FlaubertConfig
    kind: str  # "attention", "ffn" or "layer_norm"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, index: int, *args, **kwargs):
        if self.kind == "attention":
            return FlaubertAttention(self.config, self.dtype, name=str(index))(*args, **kwargs)
        if self.kind == "ffn":
            return FlaubertFFN(self.config, self.dtype, name=str(index))(*args, **kwargs)
        return _layer_norm(self.config, self.dtype, str(index))(*args, **kwargs)


@flax.struct.dataclass
class FlaubertModelOutput(ModelOutput):
    """The reference's BaseModelOutput; `past_key_values` is the updated cache when a `cache` was given."""

    last_hidden_state: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    past_key_values: dict | None = None


def _expand_head_mask(head_mask, config: FlaubertConfig):
    """[heads] or [layers, heads] -> [layers, heads]."""
    if head_mask is None:
        return None
    head_mask = jnp.asarray(head_mask)
    layers, heads = config.n_layers, config.n_heads
    if head_mask.shape == (heads,):
        return jnp.broadcast_to(head_mask, (layers, heads))
    if head_mask.shape != (layers, heads):
        raise ValueError(f"head_mask must have shape ({heads},) or ({layers}, {heads}), got {head_mask.shape}")
    return head_mask


class FlaubertModule(nn.Module):
    """The transformer: embeddings -> n_layers x (attention, FFN), post- or pre-norm."""

    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        langs=None,
        token_type_ids=None,
        position_ids=None,
        lengths=None,
        head_mask=None,
        inputs_embeds=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        batch, seq_len = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        mask = token_mask(input_ids, attention_mask, lengths, cfg.pad_token_id, batch, seq_len)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(seq_len), (batch, seq_len))

        embed_init = nn.initializers.normal(cfg.embed_init_std)
        words = nn.Embed(cfg.vocab_size, cfg.emb_dim, dtype=self.dtype, name="embeddings",
                         embedding_init=logical(embed_init, ("vocab", "embed")))
        position_init = embed_init
        if cfg.sinusoidal_embeddings:
            position_init = _fixed_table(sinusoidal_positions(cfg.max_position_embeddings, cfg.emb_dim))
        positions = nn.Embed(
            cfg.max_position_embeddings, cfg.emb_dim, dtype=self.dtype, name="position_embeddings",
            embedding_init=logical(position_init, ("positions", "embed")),
        )
        hidden = words(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)
        hidden = hidden + positions(position_ids)  # [batch, len, emb_dim]
        if langs is not None and cfg.use_lang_emb and cfg.n_langs > 1:
            lang_table = nn.Embed(cfg.n_langs, cfg.emb_dim, dtype=self.dtype, name="lang_embeddings",
                                  embedding_init=logical(embed_init, ("langs", "embed")))
            hidden = hidden + lang_table(langs)
        if token_type_ids is not None:  # XLM looks token types up in the word table
            hidden = hidden + words(token_type_ids)
        hidden = _layer_norm(cfg, self.dtype, "layer_norm_emb")(hidden)
        hidden = nn.Dropout(cfg.dropout)(hidden, deterministic=deterministic)
        keep = mask[..., None].astype(hidden.dtype)  # [batch, len, 1]: zeroes padding positions
        hidden = hidden * keep

        if cfg.causal:
            bias = causal_bias(seq_len, seq_len, 0)  # replaced by the cache's own when there is one
        else:
            bias = jnp.where(mask[:, None, None, :] > 0, 0.0, NEG_INF).astype(jnp.float32)  # [batch, 1, 1, keys]
        head_mask = _expand_head_mask(head_mask, cfg)
        attentions = FlaubertNumbered(cfg, "attention", self.dtype, name="attentions")
        ffns = FlaubertNumbered(cfg, "ffn", self.dtype, name="ffns")
        norms1 = FlaubertNumbered(cfg, "layer_norm", self.dtype, name="layer_norm1")
        norms2 = FlaubertNumbered(cfg, "layer_norm", self.dtype, name="layer_norm2")
        dropout = nn.Dropout(cfg.dropout)

        all_hidden = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for i in range(cfg.n_layers):
            if output_hidden_states:
                all_hidden += (hidden,)
            layer_input = hidden
            layer_head_mask = None if head_mask is None else head_mask[i]
            if cfg.pre_norm:
                attended, probs = attentions(i, norms1(i, hidden), bias, layer_head_mask, init_cache, deterministic)
                hidden = hidden + dropout(attended, deterministic=deterministic)
                hidden = hidden + ffns(i, norms2(i, hidden), deterministic)
            else:
                attended, probs = attentions(i, hidden, bias, layer_head_mask, init_cache, deterministic)
                hidden = norms1(i, hidden + dropout(attended, deterministic=deterministic))
                hidden = norms2(i, hidden + ffns(i, hidden, deterministic))
            hidden = hidden * keep
            if not deterministic and cfg.layerdrop > 0:
                dropped = jax.random.uniform(self.make_rng("dropout")) < cfg.layerdrop
                hidden = jnp.where(dropped, layer_input, hidden)
            if output_attentions:
                all_attentions += (probs,)
        if output_hidden_states:
            all_hidden += (hidden,)
        return FlaubertModelOutput(last_hidden_state=hidden, hidden_states=all_hidden, attentions=all_attentions)


# Inputs that hold one entry per token: with a cache, only the tokens it does not hold yet are run.
_PER_TOKEN_INPUTS = ("input_ids", "inputs_embeds", "langs", "token_type_ids", "position_ids", "attention_mask")


class FlaxFlaubertPreTrainedModel(FlaxPreTrainedModel):
    config_class = FlaubertConfig
    base_model_prefix = "transformer"

    def __init__(self, config: FlaubertConfig, *args: Any, **kwargs: Any):
        if not config.is_encoder:
            raise NotImplementedError(
                "FlauBERT with is_encoder=False (a decoder with cross-attention) is not implemented, as in the "
                "reference; set is_encoder=True (causal=True gives a left-to-right encoder)"
            )
        super().__init__(config, *args, **kwargs)

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        input_ids = jnp.zeros(input_shape, dtype=jnp.int32)
        inputs = {"input_ids": input_ids, "attention_mask": jnp.ones_like(input_ids)}
        if self.config.use_lang_emb and self.config.n_langs > 1:  # so the language table exists
            inputs["langs"] = jnp.zeros_like(input_ids)
        return inputs

    def init_cache(self, batch_size: int, max_length: int) -> dict:
        """An empty KV cache for up to `max_length` tokens, for causal models (config.causal=True).

        Pass it as `cache` with `input_ids` holding every token so far: the model runs only those the cache does
        not hold yet and returns their outputs, with the updated cache in `outputs.past_key_values`.
        """
        if not self.config.causal:
            raise ValueError(
                "A KV cache is for causal models (config.causal=True): a bidirectional FlauBERT must re-run the "
                "whole sequence whenever a token is added"
            )
        if max_length > self.config.max_position_embeddings:
            raise ValueError(
                f"max_length={max_length} is more positions than the model has ({self.config.max_position_embeddings})"
            )
        inputs = self.dummy_inputs((batch_size, max_length))
        shapes = jax.eval_shape(
            lambda rng: self.module.init(rng, **inputs, init_cache=True)["cache"], jax.random.PRNGKey(0)
        )
        return jax.tree_util.tree_map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)

    def _first_layer_cache(self, cache: dict) -> dict:
        try:
            return cache.get(self.base_model_prefix, cache)["attentions"]["0"]
        except (KeyError, TypeError, AttributeError):
            raise ValueError("cache must be the dict returned by init_cache (or a call's past_key_values)") from None

    def _run(
        self,
        inputs: dict[str, Any],
        *,
        cache: dict | None,
        params: dict | None,
        dropout_rng: jax.Array | None,
        train: bool,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
        return_dict: bool | None,
    ):
        cfg = self.config
        if inputs["input_ids"] is not None:
            seq_len = np.shape(inputs["input_ids"])[-1]
        elif inputs["inputs_embeds"] is not None:
            seq_len = np.shape(inputs["inputs_embeds"])[-2]
        else:
            raise ValueError("pass input_ids or inputs_embeds")
        if inputs.get("position_ids") is None and seq_len > cfg.max_position_embeddings:
            raise ValueError(
                f"the input has {seq_len} tokens but the model has {cfg.max_position_embeddings} positions"
            )
        if cache is not None:
            inputs = self._inputs_after_cache(inputs, cache, seq_len)
        outputs = self.apply_module(
            inputs,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            cache=cache,
        )
        if cache is not None and outputs.attentions is not None:  # the reference shows keys up to the last token
            outputs = outputs.replace(attentions=tuple(probs[..., :seq_len] for probs in outputs.attentions))
        as_dict = cfg.use_return_dict if return_dict is None else return_dict
        return outputs if as_dict else outputs.to_tuple()

    def _inputs_after_cache(self, inputs: dict[str, Any], cache: dict, seq_len: int) -> dict[str, Any]:
        """The reference's convention: inputs cover every token so far; keep those the cache does not hold."""
        if not self.config.causal:
            raise ValueError("cache was given but config.causal=False: only a causal FlauBERT can use a KV cache")
        first = self._first_layer_cache(cache)
        index, room = first["cache_index"], first["cached_key"].shape[1]
        if isinstance(index, jax.core.Tracer):
            raise TypeError("call the model with a concrete cache (not under jax.jit): it reads how full it is")
        cached = int(index)
        if seq_len <= cached:
            raise ValueError(
                f"the cache holds {cached} tokens, so input_ids must hold those and at least one more "
                f"(got {seq_len}): pass every token so far, as the reference expects"
            )
        if seq_len > room:
            raise ValueError(f"the cache has room for {room} tokens, not {seq_len}: make init_cache's max_length larger")
        # The mask over every token so far (pads are counted over the whole row), then only the new tokens' part.
        # numpy, not jax: eager jax ops would compile for every new length.
        batch = np.shape(inputs["input_ids"] if inputs["input_ids"] is not None else inputs["inputs_embeds"])[0]
        if inputs.get("attention_mask") is None:
            if inputs.get("lengths") is not None:
                lengths = np.asarray(inputs["lengths"])
            elif inputs["input_ids"] is not None:
                lengths = np.sum(np.asarray(inputs["input_ids"]) != self.config.pad_token_id, axis=1)
            else:
                lengths = np.full((batch,), seq_len)
            inputs["attention_mask"] = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int32)
        inputs["lengths"] = None
        if inputs.get("position_ids") is None:
            inputs["position_ids"] = np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len))
        sliced = dict(inputs)
        for name in _PER_TOKEN_INPUTS:
            value = inputs.get(name)
            if value is not None and np.shape(value)[1] == seq_len:
                sliced[name] = np.asarray(value)[:, cached:]
        return sliced

    @staticmethod
    def _base_inputs(input_ids, attention_mask, langs, token_type_ids, position_ids, lengths, head_mask,
                     inputs_embeds) -> dict[str, Any]:
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "langs": langs,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "lengths": lengths,
            "head_mask": head_mask,
            "inputs_embeds": inputs_embeds,
        }


class FlaxFlaubertModel(FlaxFlaubertPreTrainedModel):
    """The bare FlauBERT transformer: `last_hidden_state` [batch, len, emb_dim] (no pooler)."""

    module_class = FlaubertModule

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        langs=None,
        token_type_ids=None,
        position_ids=None,
        lengths=None,
        cache: dict | None = None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
    ):
        inputs = self._base_inputs(
            input_ids, attention_mask, langs, token_type_ids, position_ids, lengths, head_mask, inputs_embeds
        )
        return self._run(
            inputs,
            cache=cache,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )


# The heads live in their own file; importers find every class here (flaubert_heads imports the names above).
from textbatch.models.flaubert_heads import (
    FlaxFlaubertForMultipleChoice,
    FlaxFlaubertForQuestionAnsweringSimple,
    FlaxFlaubertForSequenceClassification,
    FlaxFlaubertForTokenClassification,
    FlaxFlaubertWithLMHeadModel,
)

__all__ = [
    "FlaubertConfig",
    "FlaxFlaubertForMultipleChoice",
    "FlaxFlaubertForQuestionAnsweringSimple",
    "FlaxFlaubertForSequenceClassification",
    "FlaxFlaubertForTokenClassification",
    "FlaxFlaubertModel",
    "FlaxFlaubertPreTrainedModel",
    "FlaxFlaubertWithLMHeadModel",
]

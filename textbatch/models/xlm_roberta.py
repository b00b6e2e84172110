"""XLM-RoBERTa in Flax, read top to bottom: config -> embeddings -> attention -> layer -> encoder -> base model.
The task heads are in xlm_roberta_heads.py.

Parameter names follow the PyTorch checkpoints (`encoder/layer/3/attention/self/query/kernel`), so loading is a
generic rename (see checkpoint.py).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from textbatch.models.activations import activation
from textbatch.models.attention import attend
from textbatch.models.configuration import PretrainedConfig
from textbatch.models.modeling import FlaxPreTrainedModel
from textbatch.models.outputs import BaseModelOutputWithPoolingAndCrossAttentions
from textbatch.models.sharding import logical


class XLMRobertaConfig(PretrainedConfig):
    model_type = "xlm-roberta"
    defaults = {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
    }

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"position_embedding_type={self.position_embedding_type!r} is not supported; only 'absolute' is"
            )


def position_ids_from_input_ids(input_ids: jax.Array, padding_idx: int, past_length=0) -> jax.Array:
    """Positions count real tokens only, starting after padding_idx (and after `past_length` cached positions, as
    the reference counts them); padding tokens get padding_idx."""
    is_token = (input_ids != padding_idx).astype(jnp.int32)
    return (jnp.cumsum(is_token, axis=1) + past_length) * is_token + padding_idx


def _dense(features: int, config: XLMRobertaConfig, dtype: jnp.dtype, name: str, axes: tuple[str, str]) -> nn.Dense:
    """A projection whose kernel [in, out] and bias [out] name their logical axes (sharding.py maps them)."""
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=logical(nn.initializers.normal(config.initializer_range), axes),
        bias_init=logical(nn.initializers.zeros_init(), axes[-1:]),
        name=name,
    )


def _layer_norm(config: XLMRobertaConfig, dtype: jnp.dtype, name: str = "LayerNorm") -> nn.LayerNorm:
    # Flax computes the statistics in float32 even for bfloat16 inputs.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps,
        dtype=dtype,
        scale_init=logical(nn.initializers.ones_init(), ("embed",)),
        bias_init=logical(nn.initializers.zeros_init(), ("embed",)),
        name=name,
    )


def _table(rows: int, config: XLMRobertaConfig, dtype: jnp.dtype, name: str, axes: tuple[str, str]) -> nn.Embed:
    init = logical(nn.initializers.normal(config.initializer_range), axes)
    return nn.Embed(rows, config.hidden_size, embedding_init=init, dtype=dtype, name=name)


class XLMRobertaEmbeddings(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool = True):
        cfg = self.config
        words = _table(cfg.vocab_size, cfg, self.dtype, "word_embeddings", ("vocab", "embed"))
        positions = _table(cfg.max_position_embeddings, cfg, self.dtype, "position_embeddings", ("positions", "embed"))
        types = _table(cfg.type_vocab_size, cfg, self.dtype, "token_type_embeddings", ("types", "embed"))
        hidden = words(input_ids) + types(token_type_ids) + positions(position_ids)  # [batch, len, hidden]
        hidden = _layer_norm(cfg, self.dtype)(hidden)
        return nn.Dropout(cfg.hidden_dropout_prob)(hidden, deterministic=deterministic)


class XLMRobertaSelfAttention(nn.Module):
    """Multi-head attention over `hidden` (self-attention) or over `key_value_states` (cross-attention).

    A causal self-attention keeps a static-shape KV cache in the "cache" collection once `init_cache` has created it
    (the Hugging Face Flax layout: `cached_key`, `cached_value` [batch, max_length, heads, head_dim], `cache_index`):
    each call writes its keys at `cache_index` and attends to every cached position up to its own.
    """

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32
    causal: bool = False

    @nn.compact
    def __call__(
        self, hidden, attention_mask, layer_head_mask, key_value_states=None, init_cache=False, deterministic=True
    ):
        cfg = self.config
        heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // heads

        def project(name, states):
            out = _dense(cfg.hidden_size, cfg, self.dtype, name, ("embed", "heads"))(states)
            return out.reshape(*out.shape[:2], heads, head_dim)  # [batch, len, heads, head_dim]

        source = hidden if key_value_states is None else key_value_states
        query, key, value = project("query", hidden), project("key", source), project("value", source)
        if self.causal and key_value_states is None and (self.has_variable("cache", "cached_key") or init_cache):
            key, value, allowed = self._use_cache(query, key, value, attention_mask)
        else:
            allowed = _key_mask(attention_mask, key.shape[:2])  # [batch, 1, 1, k_len]
            if self.causal and key_value_states is None:
                allowed = allowed & _causal(query.shape[1], key.shape[1], 0)
        bias = jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)

        dropout = nn.Dropout(cfg.attention_probs_dropout_prob)
        context, probs = attend(
            query,
            key,
            value,
            bias,
            scale=head_dim**-0.5,
            dropout=None if deterministic else lambda p: dropout(p, deterministic=False),
            head_mask=layer_head_mask,
        )
        return context.reshape(*context.shape[:2], cfg.hidden_size), probs  # [batch, len, hidden]

    def _use_cache(self, query, key, value, attention_mask):
        """Write this call's keys/values into the cache; return the whole cache and which positions each query sees."""
        initialised = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        if not initialised:  # init_cache only needs the shapes: attend causally over the input itself
            return key, value, _key_mask(attention_mask, key.shape[:2]) & _causal(query.shape[1], key.shape[1], 0)
        batch, max_length = cached_key.value.shape[:2]
        if attention_mask is not None and attention_mask.shape != (batch, max_length):
            raise ValueError(
                f"With past_key_values the attention_mask covers the whole cache: expected shape "
                f"{(batch, max_length)} (batch, max_length given to init_cache), got {tuple(attention_mask.shape)}"
            )
        start = cache_index.value
        key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, start, 0, 0))  # [batch, max_len, heads, dim]
        value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, start, 0, 0))
        cached_key.value, cached_value.value = key, value
        cache_index.value = start + query.shape[1]
        allowed = _key_mask(attention_mask, (batch, max_length)) & _causal(query.shape[1], max_length, start)
        return key, value, allowed


def _key_mask(attention_mask, batch_and_keys) -> jax.Array:
    """A [batch, keys] 0/1 mask (None: all keys) as booleans [batch, 1, 1, keys]; a [batch, queries, keys] mask (which
    keys each query sees, as the reference's encoders take it: rows packed side by side) as [batch, 1, queries, keys]."""
    if attention_mask is None:
        return jnp.ones((batch_and_keys[0], 1, 1, batch_and_keys[1]), dtype=bool)
    if attention_mask.ndim == 3:
        return attention_mask[:, None, :, :] > 0
    return attention_mask[:, None, None, :] > 0


def _causal(q_len: int, k_len: int, offset) -> jax.Array:
    """Query i (at absolute position offset + i) may see keys 0 .. offset + i: booleans [1, 1, q_len, k_len]."""
    query_positions = offset + jnp.arange(q_len)[:, None]
    return (jnp.arange(k_len)[None, :] <= query_positions)[None, None]


class XLMRobertaResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual): the 'output' block after attention and after the MLP.
    `input_axis` names what the dense layer reads: "heads" after attention, "mlp" after the MLP."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32
    input_axis: str = "heads"

    @nn.compact
    def __call__(self, hidden, residual, deterministic: bool = True):
        cfg = self.config
        hidden = _dense(cfg.hidden_size, cfg, self.dtype, "dense", (self.input_axis, "embed"))(hidden)
        hidden = nn.Dropout(cfg.hidden_dropout_prob)(hidden, deterministic=deterministic)
        return _layer_norm(cfg, self.dtype)(hidden + residual)


class XLMRobertaAttention(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32
    causal: bool = False

    @nn.compact
    def __call__(
        self, hidden, attention_mask, layer_head_mask, key_value_states=None, init_cache=False, deterministic=True
    ):
        context, probs = XLMRobertaSelfAttention(self.config, self.dtype, self.causal, name="self")(
            hidden, attention_mask, layer_head_mask, key_value_states, init_cache, deterministic
        )
        output = XLMRobertaResidualOutput(self.config, self.dtype, "heads", name="output")
        return output(context, hidden, deterministic), probs


class XLMRobertaIntermediate(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        hidden = _dense(self.config.intermediate_size, self.config, self.dtype, "dense", ("embed", "mlp"))(hidden)
        return activation(self.config.hidden_act)(hidden)


class XLMRobertaLayer(nn.Module):
    """Self-attention (causal in a decoder) -> cross-attention over the encoder (decoders with it) -> MLP."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        hidden,
        attention_mask,
        layer_head_mask,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache=False,
        deterministic=True,
    ):
        cfg = self.config
        attended, probs = XLMRobertaAttention(cfg, self.dtype, causal=cfg.is_decoder, name="attention")(
            hidden, attention_mask, layer_head_mask, init_cache=init_cache, deterministic=deterministic
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            # The reference applies the same layer head mask to both attentions (as its Flax classes did).
            attended, cross_probs = XLMRobertaAttention(cfg, self.dtype, name="crossattention")(
                attended,
                encoder_attention_mask,
                layer_head_mask,
                key_value_states=encoder_hidden_states,
                deterministic=deterministic,
            )
        expanded = XLMRobertaIntermediate(cfg, self.dtype, name="intermediate")(attended)
        out = XLMRobertaResidualOutput(cfg, self.dtype, "mlp", name="output")(expanded, attended, deterministic)
        return out, probs, cross_probs


class XLMRobertaLayerCollection(nn.Module):
    """The layers, named "0", "1", ... as in the checkpoints."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        hidden,
        attention_mask,
        head_mask,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache=False,
        deterministic=True,
        output_attentions=False,
        output_hidden_states=False,
    ):
        all_hidden = (hidden,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for i in range(self.config.num_hidden_layers):
            layer_head_mask = None if head_mask is None else head_mask[i]
            hidden, probs, cross_probs = XLMRobertaLayer(self.config, self.dtype, name=str(i))(
                hidden,
                attention_mask,
                layer_head_mask,
                encoder_hidden_states,
                encoder_attention_mask,
                init_cache,
                deterministic,
            )
            if output_hidden_states:
                all_hidden += (hidden,)
            if output_attentions:
                all_attentions += (probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        return hidden, all_hidden, all_attentions, all_cross


class XLMRobertaEncoder(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, attention_mask, head_mask, **kwargs):
        return XLMRobertaLayerCollection(self.config, self.dtype, name="layer")(
            hidden, attention_mask, head_mask, **kwargs
        )


class XLMRobertaPooler(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        first = hidden[:, 0]  # [batch, hidden]
        return jnp.tanh(_dense(self.config.hidden_size, self.config, self.dtype, "dense", ("embed", "embed"))(first))


def _expand_head_mask(head_mask: jax.Array | None, config: XLMRobertaConfig) -> jax.Array | None:
    """[heads] or [layers, heads] -> [layers, heads]."""
    if head_mask is None:
        return None
    head_mask = jnp.asarray(head_mask)
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    if head_mask.shape == (heads,):
        return jnp.broadcast_to(head_mask, (layers, heads))
    if head_mask.shape != (layers, heads):
        raise ValueError(f"head_mask must have shape ({heads},) or ({layers}, {heads}), got {head_mask.shape}")
    return head_mask


class XLMRobertaModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32
    add_pooling_layer: bool = True

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        cfg = self.config
        check_decoder_config(cfg)
        if encoder_hidden_states is not None and not cfg.add_cross_attention:
            raise ValueError(
                "encoder_hidden_states were given but the model has no cross-attention layers: "
                "build it with config.add_cross_attention=True and config.is_decoder=True"
            )
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = position_ids_from_input_ids(input_ids, cfg.pad_token_id, self._cached_length())

        hidden = XLMRobertaEmbeddings(cfg, self.dtype, name="embeddings")(
            input_ids, token_type_ids, position_ids, deterministic
        )
        hidden, all_hidden, all_attentions, all_cross = XLMRobertaEncoder(cfg, self.dtype, name="encoder")(
            hidden,
            attention_mask,
            _expand_head_mask(head_mask, cfg),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        pooled = XLMRobertaPooler(cfg, self.dtype, name="pooler")(hidden) if self.add_pooling_layer else None
        outputs = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden,
            pooler_output=pooled,
            hidden_states=all_hidden,
            attentions=all_attentions,
            cross_attentions=all_cross,
        )
        return outputs if return_dict else outputs.to_tuple()

    def _cached_length(self):
        """How many positions the KV cache already holds (0 without one). Every layer's cache advances together,
        so the first layer's `cache_index` stands for all."""
        cache = self.variables.get("cache")
        if not cache:
            return 0
        return cache["encoder"]["layer"]["0"]["attention"]["self"]["cache_index"]


def check_decoder_config(config: XLMRobertaConfig) -> None:
    if config.add_cross_attention and not config.is_decoder:
        raise ValueError(
            "config.add_cross_attention=True needs config.is_decoder=True (cross-attention is for decoders)"
        )


class FlaxXLMRobertaPreTrainedModel(FlaxPreTrainedModel):
    config_class = XLMRobertaConfig
    base_model_prefix = "roberta"
    # Initialised (with a warning) when a checkpoint lacks them, as the reference does: the pooler (every head but
    # multiple choice is saved without one) and cross-attention (an encoder checkpoint warm-starting a decoder).
    init_if_missing = (r"(^|/)pooler/", r"(^|/)crossattention/")
    # Whether __call__ takes encoder_hidden_states / encoder_attention_mask / past_key_values.
    takes_decoder_inputs: bool = False

    def __init__(self, config: XLMRobertaConfig, *args: Any, **kwargs: Any):
        check_decoder_config(config)
        super().__init__(config, *args, **kwargs)

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        input_ids = jnp.zeros(input_shape, dtype=jnp.int32)
        inputs = {"input_ids": input_ids, "attention_mask": jnp.ones_like(input_ids)}
        if self.takes_decoder_inputs and self.config.add_cross_attention:  # so the cross-attention weights exist
            inputs["encoder_hidden_states"] = jnp.zeros((*input_shape, self.config.hidden_size), self.dtype)
            inputs["encoder_attention_mask"] = jnp.ones_like(input_ids)
        return inputs

    def init_cache(self, batch_size: int, max_length: int) -> dict:
        """An empty KV cache for decoding up to `max_length` positions; pass it as `past_key_values`, with an
        attention_mask of shape [batch_size, max_length] (1 for real and future tokens, 0 for padding)."""
        if not (self.takes_decoder_inputs and self.config.is_decoder):
            raise ValueError(
                f"{type(self).__name__} has no KV cache: it needs config.is_decoder=True "
                "(use FlaxXLMRobertaForCausalLM or FlaxXLMRobertaModel)"
            )
        limit = self.config.max_position_embeddings - self.config.pad_token_id - 1
        if max_length > limit:
            raise ValueError(f"max_length={max_length} is more positions than the model has ({limit})")
        inputs = self.dummy_inputs((batch_size, max_length))
        shapes = jax.eval_shape(
            lambda rng: self.module.init(rng, **inputs, init_cache=True)["cache"], jax.random.PRNGKey(0)
        )
        return jax.tree_util.tree_map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: dict | None = None,
    ):
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "head_mask": head_mask,
        }
        decoder_inputs = {
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
        }
        if any(v is not None for v in decoder_inputs.values()) or past_key_values is not None:
            self._check_decoder_inputs(input_ids, encoder_hidden_states, past_key_values)
            inputs.update(decoder_inputs)
        return self.apply_module(
            inputs,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            cache=past_key_values,
        )

    def _check_decoder_inputs(self, input_ids, encoder_hidden_states, past_key_values) -> None:
        name = type(self).__name__
        if not self.takes_decoder_inputs:
            raise TypeError(f"{name} takes no encoder_hidden_states, encoder_attention_mask or past_key_values")
        if encoder_hidden_states is not None and not self.config.add_cross_attention:
            raise ValueError(
                f"encoder_hidden_states were given but {name} has no cross-attention layers: "
                "load or build it with add_cross_attention=True and is_decoder=True"
            )
        if past_key_values is None:
            return
        if not self.config.is_decoder:
            raise ValueError(f"past_key_values need a decoder: {name} was built with config.is_decoder=False")
        base = past_key_values.get(self.base_model_prefix, past_key_values)  # head models hold it under "roberta"
        first = base["encoder"]["layer"]["0"]["attention"]["self"]
        index, room = first["cache_index"], first["cached_key"].shape[1]
        if not isinstance(index, jax.core.Tracer) and int(index) + jnp.shape(input_ids)[-1] > room:
            raise ValueError(
                f"The KV cache holds {room} positions and {int(index)} are used: no room for "
                f"{jnp.shape(input_ids)[-1]} more tokens; make init_cache's max_length larger"
            )


class FlaxXLMRobertaModel(FlaxXLMRobertaPreTrainedModel):
    module_class = XLMRobertaModule
    takes_decoder_inputs = True

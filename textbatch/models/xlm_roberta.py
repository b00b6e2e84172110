"""XLM-RoBERTa in Flax, read top to bottom: config -> embeddings -> attention -> layer -> encoder -> models.

Parameter names follow the PyTorch checkpoints (`encoder/layer/3/attention/self/query/kernel`), so loading is a
generic rename (see checkpoint.py).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from textbatch.models.activations import activation
from textbatch.models.attention import attend, padding_bias
from textbatch.models.configuration import PretrainedConfig
from textbatch.models.modeling import FlaxPreTrainedModel
from textbatch.models.outputs import BaseModelOutputWithPooling


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


def position_ids_from_input_ids(input_ids: jax.Array, padding_idx: int) -> jax.Array:
    """Positions count real tokens only, starting after padding_idx; padding tokens get padding_idx."""
    is_token = (input_ids != padding_idx).astype(jnp.int32)
    return jnp.cumsum(is_token, axis=1) * is_token + padding_idx


def _dense(features: int, config: XLMRobertaConfig, dtype: jnp.dtype, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, kernel_init=nn.initializers.normal(config.initializer_range), name=name)


def _layer_norm(config: XLMRobertaConfig, dtype: jnp.dtype) -> nn.LayerNorm:
    # Flax computes the statistics in float32 even for bfloat16 inputs.
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name="LayerNorm")


class XLMRobertaEmbeddings(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool = True):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)
        words = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init, dtype=self.dtype, name="word_embeddings")
        positions = nn.Embed(
            cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init, dtype=self.dtype, name="position_embeddings"
        )
        types = nn.Embed(
            cfg.type_vocab_size, cfg.hidden_size, embedding_init=init, dtype=self.dtype, name="token_type_embeddings"
        )
        hidden = words(input_ids) + types(token_type_ids) + positions(position_ids)  # [batch, len, hidden]
        hidden = _layer_norm(cfg, self.dtype)(hidden)
        return nn.Dropout(cfg.hidden_dropout_prob)(hidden, deterministic=deterministic)


class XLMRobertaSelfAttention(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, bias, layer_head_mask, deterministic: bool = True):
        cfg = self.config
        heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // heads

        def project(name):
            out = _dense(cfg.hidden_size, cfg, self.dtype, name)(hidden)
            return out.reshape(*out.shape[:2], heads, head_dim)  # [batch, len, heads, head_dim]

        dropout = nn.Dropout(cfg.attention_probs_dropout_prob)
        context, probs = attend(
            project("query"),
            project("key"),
            project("value"),
            bias,
            scale=head_dim**-0.5,
            dropout=None if deterministic else lambda p: dropout(p, deterministic=False),
            head_mask=layer_head_mask,
        )
        return context.reshape(*context.shape[:2], cfg.hidden_size), probs  # [batch, len, hidden]


class XLMRobertaResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual): the 'output' block after attention and after the MLP."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, residual, deterministic: bool = True):
        cfg = self.config
        hidden = _dense(cfg.hidden_size, cfg, self.dtype, "dense")(hidden)
        hidden = nn.Dropout(cfg.hidden_dropout_prob)(hidden, deterministic=deterministic)
        return _layer_norm(cfg, self.dtype)(hidden + residual)


class XLMRobertaAttention(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, bias, layer_head_mask, deterministic: bool = True):
        context, probs = XLMRobertaSelfAttention(self.config, self.dtype, name="self")(
            hidden, bias, layer_head_mask, deterministic
        )
        return XLMRobertaResidualOutput(self.config, self.dtype, name="output")(context, hidden, deterministic), probs


class XLMRobertaIntermediate(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        hidden = _dense(self.config.intermediate_size, self.config, self.dtype, "dense")(hidden)
        return activation(self.config.hidden_act)(hidden)


class XLMRobertaLayer(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, bias, layer_head_mask, deterministic: bool = True):
        attended, probs = XLMRobertaAttention(self.config, self.dtype, name="attention")(
            hidden, bias, layer_head_mask, deterministic
        )
        expanded = XLMRobertaIntermediate(self.config, self.dtype, name="intermediate")(attended)
        out = XLMRobertaResidualOutput(self.config, self.dtype, name="output")(expanded, attended, deterministic)
        return out, probs


class XLMRobertaLayerCollection(nn.Module):
    """The layers, named "0", "1", ... as in the checkpoints."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, bias, head_mask, deterministic=True, output_attentions=False, output_hidden_states=False):
        all_hidden = (hidden,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for i in range(self.config.num_hidden_layers):
            layer_head_mask = None if head_mask is None else head_mask[i]
            hidden, probs = XLMRobertaLayer(self.config, self.dtype, name=str(i))(
                hidden, bias, layer_head_mask, deterministic
            )
            if output_hidden_states:
                all_hidden += (hidden,)
            if output_attentions:
                all_attentions += (probs,)
        return hidden, all_hidden, all_attentions


class XLMRobertaEncoder(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, bias, head_mask, deterministic=True, output_attentions=False, output_hidden_states=False):
        return XLMRobertaLayerCollection(self.config, self.dtype, name="layer")(
            hidden, bias, head_mask, deterministic, output_attentions, output_hidden_states
        )


class XLMRobertaPooler(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        first = hidden[:, 0]  # [batch, hidden]
        return jnp.tanh(_dense(self.config.hidden_size, self.config, self.dtype, "dense")(first))


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
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        cfg = self.config
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = position_ids_from_input_ids(input_ids, cfg.pad_token_id)

        hidden = XLMRobertaEmbeddings(cfg, self.dtype, name="embeddings")(
            input_ids, token_type_ids, position_ids, deterministic
        )
        hidden, all_hidden, all_attentions = XLMRobertaEncoder(cfg, self.dtype, name="encoder")(
            hidden,
            padding_bias(attention_mask),
            _expand_head_mask(head_mask, cfg),
            deterministic,
            output_attentions,
            output_hidden_states,
        )
        pooled = XLMRobertaPooler(cfg, self.dtype, name="pooler")(hidden) if self.add_pooling_layer else None
        outputs = BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden, attentions=all_attentions
        )
        return outputs if return_dict else outputs.to_tuple()


class FlaxXLMRobertaPreTrainedModel(FlaxPreTrainedModel):
    config_class = XLMRobertaConfig
    base_model_prefix = "roberta"

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        input_ids = jnp.zeros(input_shape, dtype=jnp.int32)
        return {"input_ids": input_ids, "attention_mask": jnp.ones_like(input_ids)}

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        head_mask=None,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "head_mask": head_mask,
        }
        return self.apply_module(
            inputs,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )


class FlaxXLMRobertaModel(FlaxXLMRobertaPreTrainedModel):
    module_class = XLMRobertaModule

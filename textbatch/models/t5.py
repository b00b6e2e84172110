"""T5 in Flax (v1.0, v1.1, FLAN-T5, UL2), read top to bottom: config -> norm and position buckets -> attention ->
feed-forward -> block -> stack -> modules -> model classes.

Parameter names follow the PyTorch checkpoints (`encoder/block/0/layer/0/SelfAttention/q/kernel`), so loading is the
generic rename of checkpoint.py. The decoder keeps a static-shape KV cache in the Flax "cache" collection:
self-attention keys/values of shape [batch, heads, max_length, d_kv] filled one step at a time, and the
cross-attention keys/values of the encoder output, computed once by `init_cache`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from textbatch.models.activations import activation
from textbatch.models.attention import attend
from textbatch.models.configuration import PretrainedConfig
from textbatch.models.generation import Seq2SeqGenerationMixin
from textbatch.models.matmuls import dense_matmuls, product
from textbatch.models.modeling import FlaxPreTrainedModel
from textbatch.models.outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from textbatch.models.sharding import logical


class T5Config(PretrainedConfig):
    """T5 v1.0 (`feed_forward_proj="relu"`, tied embeddings, decoder output scaled by d_model**-0.5 before the
    tied lm_head) and v1.1 / FLAN-T5 / UL2 (`"gated-gelu"` or `"gated-silu"`, untied lm_head, no scaling)."""

    model_type = "t5"
    defaults = {
        "vocab_size": 32128,
        "d_model": 512,
        "d_kv": 64,
        "d_ff": 2048,
        "num_layers": 6,
        "num_decoder_layers": None,
        "num_heads": 8,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "relu",
        "is_encoder_decoder": True,
        "use_cache": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }

    # The generic names transformers maps onto T5's own (its attribute_map); here they are read-only views.
    ALIASES: ClassVar[dict[str, str]] = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
               "head_dim": "d_kv"}

    def __init__(self, **kwargs: Any):
        for alias, name in self.ALIASES.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        super().__init__(**kwargs)
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        parts = str(self.feed_forward_proj).split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(
                f"feed_forward_proj={self.feed_forward_proj!r} is not valid: use 'ACT' or 'gated-ACT', "
                "e.g. 'relu' (T5 v1.0) or 'gated-gelu' (T5 v1.1, FLAN-T5)"
            )
        self.is_gated_act = parts[0] == "gated"
        # "gated-gelu" means the tanh approximation of gelu: what the original checkpoints were trained with.
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
        activation(self.dense_act_fn)  # fails early on an unknown name
        # v1.0 scales the decoder output before the tied lm_head; v1.1 does not. transformers 5 records this as
        # `scale_decoder_outputs` (and always writes tie_word_embeddings=True); older configs say it through
        # tie_word_embeddings alone.
        if getattr(self, "scale_decoder_outputs", None) is None:
            self.scale_decoder_outputs = bool(self.tie_word_embeddings)

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.num_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.num_layers

    @property
    def head_dim(self) -> int:
        return self.d_kv


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------


def _dense(features: int, std: float, dtype: jnp.dtype, name: str | None, axes: tuple[str, str]) -> nn.Dense:
    """A bias-free projection whose kernel [in, out] names its logical axes (sharding.py maps them to devices)."""
    init = logical(nn.initializers.normal(std), axes)
    return nn.Dense(features, use_bias=False, dtype=dtype, kernel_init=init, name=name)


class T5LayerNorm(nn.Module):
    """RMS norm: scale only, no mean subtraction, no bias; statistics in float32 whatever the dtype."""

    epsilon: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        weight = self.param("weight", logical(nn.initializers.ones, ("embed",)),
                            (hidden.shape[-1],))
        hidden = hidden.astype(jnp.float32)
        variance = jnp.mean(jnp.square(hidden), axis=-1, keepdims=True)
        return (weight * (hidden * jax.lax.rsqrt(variance + self.epsilon))).astype(self.dtype)


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int, max_distance: int):
    """Bucket of each (key position - query position): exact for small distances, logarithmic up to max_distance,
    one bucket beyond. Bidirectional buckets give half the buckets to keys after the query. The float32
    arithmetic is the reference's, so that distances on bucket boundaries land in the same bucket."""
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(relative_position.dtype) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log(0) = -inf for distance 0 is harmless: those positions take the exact branch.
    scaled = (
        jnp.log(distance.astype(jnp.float32) / max_exact)
        / np.float32(math.log(max_distance / max_exact))
        * np.float32(num_buckets - max_exact)
    )
    large = max_exact + jnp.where(is_small, 0, scaled).astype(relative_position.dtype)
    large = jnp.minimum(large, num_buckets - 1)
    return buckets + jnp.where(is_small, distance, large)


class T5Attention(nn.Module):
    """Multi-head attention without scaling (T5 folds it into the initialisation), with an additive relative
    position bias. Self-attention (`key_value_states=None`, causal in the decoder) or cross-attention."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    causal: bool = False
    has_relative_attention_bias: bool = False

    @nn.compact
    def __call__(
        self,
        hidden,
        key_value_states=None,
        key_mask=None,
        position_bias=None,
        deterministic: bool = True,
        init_cache: bool = False,
    ):
        cfg = self.config
        heads, d_kv = cfg.num_heads, cfg.d_kv
        inner = heads * d_kv
        factor = cfg.initializer_factor
        batch, q_len = hidden.shape[:2]

        def split(x):
            return x.reshape(*x.shape[:2], heads, d_kv)  # [batch, len, heads, d_kv]

        def split_heads_first(x):  # keys and values, and so the cache, head-major: decoding steps never transpose them
            return jnp.swapaxes(split(x), 1, 2)  # [batch, heads, len, d_kv]

        to_heads = ("embed", "heads")  # the joined heads x d_kv dimension, head-major
        query = split(_dense(inner, factor * (cfg.d_model * d_kv) ** -0.5, self.dtype, "q", to_heads)(hidden))
        project_key = _dense(inner, factor * cfg.d_model**-0.5, self.dtype, "k", to_heads)
        project_value = _dense(inner, factor * cfg.d_model**-0.5, self.dtype, "v", to_heads)
        uses_cache = init_cache or self.has_variable("cache", "cached_key")
        offset = 0

        if key_value_states is not None:
            if uses_cache:  # the encoder output's keys/values are computed once, when the cache is made
                key = self.variable("cache", "cached_key", lambda: split_heads_first(project_key(key_value_states)))
                value = self.variable(
                    "cache", "cached_value", lambda: split_heads_first(project_value(key_value_states))
                )
                key, value = key.value, value.value
            else:
                key = split_heads_first(project_key(key_value_states))
                value = split_heads_first(project_value(key_value_states))
        else:
            key, value = split_heads_first(project_key(hidden)), split_heads_first(project_value(hidden))
            if self.causal and uses_cache:
                initialised = self.has_variable("cache", "cached_key")
                cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
                cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
                index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
                if initialised:  # write this step's keys/values at the cache index; attend over the whole cache
                    offset = index.value
                    key = jax.lax.dynamic_update_slice(cached_key.value, key, (0, 0, offset, 0))
                    value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, 0, offset, 0))
                    cached_key.value, cached_value.value = key, value
                    index.value = offset + q_len

        k_len = key.shape[2]
        query_positions = offset + jnp.arange(q_len)
        key_positions = jnp.arange(k_len)
        if position_bias is None:
            if self.has_relative_attention_bias:
                position_bias = self._relative_bias(query_positions, key_positions)
            else:
                position_bias = jnp.zeros((1, heads, q_len, k_len), jnp.float32)

        allowed = jnp.ones((1, 1, q_len, k_len), dtype=bool)
        if self.causal and key_value_states is None:
            allowed = allowed & (key_positions[None, :] <= query_positions[:, None])[None, None]
        if key_mask is not None:
            allowed = allowed & (key_mask[:, None, None, :] > 0)
        bias = position_bias + jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min)  # [batch|1, heads, q, k]

        dropout = nn.Dropout(cfg.dropout_rate)
        context, probs = attend(
            query,
            key,
            value,
            bias,
            scale=1.0,
            dropout=None if deterministic else lambda p: dropout(p, deterministic=False),
            heads_first=True,
        )
        output = _dense(cfg.d_model, factor * inner**-0.5, self.dtype, "o", ("heads", "embed"))(
            context.reshape(batch, q_len, inner)
        )
        return output, position_bias, probs

    def _relative_bias(self, query_positions, key_positions):
        cfg = self.config
        buckets = relative_position_bucket(
            key_positions[None, :] - query_positions[:, None],  # [q, k]
            bidirectional=not self.causal,
            num_buckets=cfg.relative_attention_num_buckets,
            max_distance=cfg.relative_attention_max_distance,
        )
        table = nn.Embed(
            cfg.relative_attention_num_buckets,
            cfg.num_heads,
            embedding_init=logical(
                nn.initializers.normal(cfg.initializer_factor * cfg.d_model**-0.5), ("buckets", "heads")
            ),
            dtype=jnp.float32,
            name="relative_attention_bias",
        )
        return jnp.transpose(table(buckets), (2, 0, 1))[None]  # [1, heads, q, k]


class T5DenseActDense(nn.Module):
    """wi -> act -> wo (v1.0), or act(wi_0) * wi_1 -> wo (gated, v1.1). `wo` returns float32: FLAN-T5's activations
    overflow float16 there (the reference keeps `wo` in float32 for the same reason)."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, deterministic: bool = True):
        cfg = self.config
        std_in = cfg.initializer_factor * cfg.d_model**-0.5
        act = activation(cfg.dense_act_fn)
        if cfg.is_gated_act:
            hidden = act(_dense(cfg.d_ff, std_in, self.dtype, "wi_0", ("embed", "mlp"))(hidden)) * _dense(
                cfg.d_ff, std_in, self.dtype, "wi_1", ("embed", "mlp")
            )(hidden)
        else:
            hidden = act(_dense(cfg.d_ff, std_in, self.dtype, "wi", ("embed", "mlp"))(hidden))  # [batch, len, d_ff]
        hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
        # float16 overflows here, so `wo` runs in float32; bfloat16 has float32's range and multiplies at twice its
        # speed (accumulating in float32, matmuls.py), so it keeps bfloat16 operands. The result is float32 either way.
        wo_dtype = jnp.float32 if jnp.dtype(self.dtype) == jnp.float16 else self.dtype
        wo = _dense(cfg.d_model, cfg.initializer_factor * cfg.d_ff**-0.5, wo_dtype, "wo", ("mlp", "embed"))
        return wo(hidden.astype(wo_dtype)).astype(jnp.float32)


class T5LayerSelfAttention(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32
    causal: bool = False
    has_relative_attention_bias: bool = False

    @nn.compact
    def __call__(self, hidden, key_mask, position_bias, deterministic=True, init_cache=False):
        cfg = self.config
        normed = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, name="layer_norm")(hidden)
        attended, position_bias, probs = T5Attention(
            cfg, self.dtype, self.causal, self.has_relative_attention_bias, name="SelfAttention"
        )(normed, None, key_mask, position_bias, deterministic, init_cache)
        hidden = hidden + nn.Dropout(cfg.dropout_rate)(attended, deterministic=deterministic)
        return hidden, position_bias, probs


class T5LayerCrossAttention(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, encoder_hidden, encoder_mask, deterministic=True, init_cache=False):
        cfg = self.config
        normed = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, name="layer_norm")(hidden)
        attended, _, probs = T5Attention(cfg, self.dtype, name="EncDecAttention")(
            normed, encoder_hidden, encoder_mask, None, deterministic, init_cache
        )
        hidden = hidden + nn.Dropout(cfg.dropout_rate)(attended, deterministic=deterministic)
        return hidden, probs


class T5LayerFF(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, deterministic=True):
        cfg = self.config
        normed = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, name="layer_norm")(hidden)
        forwarded = T5DenseActDense(cfg, self.dtype, name="DenseReluDense")(normed, deterministic)
        # `forwarded` is float32 (see T5DenseActDense), so from here on the residual stream is float32, as in the
        # reference; each norm casts back to the compute dtype.
        return hidden + nn.Dropout(cfg.dropout_rate)(forwarded, deterministic=deterministic)


class T5BlockLayers(nn.Module):
    """The sub-layers of one block, named "0", "1" (, "2") as the checkpoints' `block.N.layer.M`."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    is_decoder: bool = False
    has_relative_attention_bias: bool = False

    @nn.compact
    def __call__(
        self, hidden, mask, position_bias, encoder_hidden, encoder_mask, deterministic=True, init_cache=False
    ):
        cfg = self.config
        hidden, position_bias, self_probs = T5LayerSelfAttention(
            cfg, self.dtype, self.is_decoder, self.has_relative_attention_bias, name="0"
        )(hidden, mask, position_bias, deterministic, init_cache)
        cross_probs = None
        if self.is_decoder:
            hidden, cross_probs = T5LayerCrossAttention(cfg, self.dtype, name="1")(
                hidden, encoder_hidden, encoder_mask, deterministic, init_cache
            )
        hidden = T5LayerFF(cfg, self.dtype, name="2" if self.is_decoder else "1")(hidden, deterministic)
        return hidden, position_bias, self_probs, cross_probs


class T5Block(nn.Module):
    """`block.N`: the checkpoints nest its sub-layers one level deeper, under `layer`."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    is_decoder: bool = False
    has_relative_attention_bias: bool = False

    @nn.compact
    def __call__(self, *args, **kwargs):
        layers = T5BlockLayers(self.config, self.dtype, self.is_decoder, self.has_relative_attention_bias, name="layer")
        return layers(*args, **kwargs)


class T5BlockCollection(nn.Module):
    """The blocks, named "0", "1", ... as in the checkpoints. Block 0 owns the relative position bias; the others
    reuse what it computed."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    is_decoder: bool = False
    num_layers: int = 0

    @nn.compact
    def __call__(
        self,
        hidden,
        mask,
        encoder_hidden,
        encoder_mask,
        deterministic=True,
        init_cache=False,
        output_attentions=False,
        output_hidden_states=False,
    ):
        all_hidden = () if output_hidden_states else None
        self_attentions = () if output_attentions else None
        cross_attentions = () if output_attentions and self.is_decoder else None
        position_bias = None
        for i in range(self.num_layers):
            if output_hidden_states:
                all_hidden += (hidden,)
            hidden, position_bias, self_probs, cross_probs = T5Block(
                self.config, self.dtype, self.is_decoder, i == 0, name=str(i)
            )(hidden, mask, position_bias, encoder_hidden, encoder_mask, deterministic, init_cache)
            if output_attentions:
                self_attentions += (self_probs,)
                if self.is_decoder:
                    cross_attentions += (cross_probs,)
        return hidden, all_hidden, self_attentions, cross_attentions


class T5Stack(nn.Module):
    """Embedded tokens -> blocks -> final RMS norm. Encoder (bidirectional) or decoder (causal + cross-attention)."""

    config: T5Config
    dtype: jnp.dtype = jnp.float32
    is_decoder: bool = False
    num_layers: int = 0

    @nn.compact
    def __call__(
        self,
        embedded,
        mask=None,
        encoder_hidden=None,
        encoder_mask=None,
        deterministic: bool = True,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        cfg = self.config
        hidden = nn.Dropout(cfg.dropout_rate)(embedded, deterministic=deterministic)
        hidden, all_hidden, self_attentions, cross_attentions = T5BlockCollection(
            cfg, self.dtype, self.is_decoder, self.num_layers, name="block"
        )(hidden, mask, encoder_hidden, encoder_mask, deterministic, init_cache, output_attentions, output_hidden_states)
        hidden = T5LayerNorm(cfg.layer_norm_epsilon, self.dtype, name="final_layer_norm")(hidden)
        hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
        if output_hidden_states:
            all_hidden += (hidden,)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden,
            hidden_states=all_hidden,
            attentions=self_attentions,
            cross_attentions=cross_attentions,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Modules: encoder only -> encoder-decoder -> with language-model head
# ---------------------------------------------------------------------------------------------------------------------


class T5EncoderModule(nn.Module):
    config: T5Config
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.shared = nn.Embed(
            cfg.vocab_size,
            cfg.d_model,
            embedding_init=logical(
                nn.initializers.normal(cfg.initializer_factor), ("vocab", "embed")
            ),
            dtype=self.dtype,
        )
        self.encoder = T5Stack(cfg, self.dtype, is_decoder=False, num_layers=cfg.num_layers)

    def encode(
        self, input_ids, attention_mask=None, deterministic=True, output_attentions=False, output_hidden_states=False
    ):
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        out = self.encoder(
            self.shared(input_ids),
            attention_mask,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        return BaseModelOutput(out.last_hidden_state, out.hidden_states, out.attentions)

    def __call__(self, input_ids, attention_mask=None, deterministic=True, output_attentions=False,
                 output_hidden_states=False):
        return self.encode(input_ids, attention_mask, deterministic, output_attentions, output_hidden_states)


class T5Module(T5EncoderModule):
    def setup(self):
        super().setup()
        cfg = self.config
        self.decoder = T5Stack(cfg, self.dtype, is_decoder=True, num_layers=cfg.num_decoder_layers)

    def decode(
        self,
        decoder_input_ids,
        encoder_hidden_states,
        encoder_attention_mask=None,
        decoder_attention_mask=None,
        deterministic=True,
        init_cache=False,
        output_attentions=False,
        output_hidden_states=False,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        return self._decoder_stack(
            decoder_input_ids,
            encoder_hidden_states,
            encoder_attention_mask,
            decoder_attention_mask,
            deterministic,
            init_cache,
            output_attentions,
            output_hidden_states,
        )

    def _decoder_stack(
        self,
        decoder_input_ids,
        encoder_hidden_states,
        encoder_attention_mask,
        decoder_attention_mask,
        deterministic,
        init_cache,
        output_attentions,
        output_hidden_states,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        return self.decoder(
            self.shared(decoder_input_ids),
            decoder_attention_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            deterministic=deterministic,
            init_cache=init_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        deterministic=True,
        output_attentions=False,
        output_hidden_states=False,
    ):
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        encoded = self.encode(input_ids, attention_mask, deterministic, output_attentions, output_hidden_states)
        decoded = self._decoder_stack(
            decoder_input_ids,
            encoded.last_hidden_state,
            attention_mask,
            decoder_attention_mask,
            deterministic,
            False,
            output_attentions,
            output_hidden_states,
        )
        return self._seq2seq_output(encoded, decoded)

    def _seq2seq_output(self, encoded, decoded):
        return Seq2SeqModelOutput(
            last_hidden_state=decoded.last_hidden_state,
            decoder_hidden_states=decoded.hidden_states,
            decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions,
            encoder_last_hidden_state=encoded.last_hidden_state,
            encoder_hidden_states=encoded.hidden_states,
            encoder_attentions=encoded.attentions,
        )


class T5ForConditionalGenerationModule(T5Module):
    def setup(self):
        super().setup()
        cfg = self.config
        if not cfg.tie_word_embeddings:
            self.lm_head = _dense(cfg.vocab_size, cfg.initializer_factor, self.dtype, None, ("embed", "vocab"))

    def logits(self, hidden):
        cfg = self.config
        if cfg.scale_decoder_outputs:
            hidden = hidden * (cfg.d_model**-0.5)
        if cfg.tie_word_embeddings:
            return product("bld,vd->blv", hidden, self.shared.embedding, self.dtype)  # [batch, len, vocab]
        return self.lm_head(hidden)

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               decoder_attention_mask=None, deterministic=True, init_cache=False, output_attentions=False,
               output_hidden_states=False) -> CausalLMOutputWithCrossAttentions:
        decoded = self._decoder_stack(
            decoder_input_ids,
            encoder_hidden_states,
            encoder_attention_mask,
            decoder_attention_mask,
            deterministic,
            init_cache,
            output_attentions,
            output_hidden_states,
        )
        return CausalLMOutputWithCrossAttentions(
            logits=self.logits(decoded.last_hidden_state),
            hidden_states=decoded.hidden_states,
            attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions,
        )

    def _seq2seq_output(self, encoded, decoded):
        base = super()._seq2seq_output(encoded, decoded)
        return Seq2SeqLMOutput(
            logits=self.logits(decoded.last_hidden_state),
            **{name: getattr(base, name) for name in base if name != "last_hidden_state"},
        )


# ---------------------------------------------------------------------------------------------------------------------
# Model classes (the Hugging Face Flax call signatures)
# ---------------------------------------------------------------------------------------------------------------------

_JIT_STATIC = ("method", "deterministic", "output_attentions", "output_hidden_states", "init_cache")


def _hidden_of(encoder_outputs) -> Any:
    """The encoder's last hidden state from an output object, a tuple, or the array itself."""
    if isinstance(encoder_outputs, ModelOutput):
        return encoder_outputs.last_hidden_state
    if isinstance(encoder_outputs, (tuple, list)):
        return encoder_outputs[0]
    return encoder_outputs


class FlaxT5PreTrainedModel(FlaxPreTrainedModel):
    config_class = T5Config
    base_model_prefix = "transformer"
    # `wo` is stored (and computed: T5DenseActDense) in float32 under float16, as the reference keeps it; the
    # relative position table in every half-precision run, as its bias is computed in float32 (_relative_bias), so
    # that storing weights in bfloat16 changes no bfloat16 output.
    keep_in_float32 = (r"DenseReluDense/wo/kernel$",)
    keep_in_float32_strict = (r"relative_attention_bias/embedding$",)

    def __init__(self, config: T5Config, input_shape=(1, 1), seed: int = 0, dtype=jnp.float32,
                 _do_init: bool = True, **module_kwargs: Any):
        super().__init__(config, input_shape, seed, dtype, _do_init, **module_kwargs)
        self._compiled_method = jax.jit(self._apply_method, static_argnames=_JIT_STATIC)

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        input_ids = jnp.zeros(input_shape, dtype=jnp.int32)
        return {"input_ids": input_ids, "attention_mask": jnp.ones_like(input_ids), "decoder_input_ids": input_ids}

    def _apply_method(self, params, inputs, rngs, cache, *, method, init_cache=False, **flags):
        variables = {"params": params}
        with dense_matmuls():  # int8 kernels as stored, half precision accumulated in float32
            if init_cache:  # a fresh cache: only the "cache" collection comes back (XLA drops the unused forward)
                _, updated = self.module.apply(
                    variables, **inputs, rngs=rngs, method=method, init_cache=True, mutable=["cache"], **flags
                )
                return updated["cache"]
            if cache is None:
                return self.module.apply(variables, **inputs, rngs=rngs, method=method, **flags)
            variables["cache"] = cache
            outputs, updated = self.module.apply(
                variables, **inputs, rngs=rngs, method=method, mutable=["cache"], **flags
            )
        return outputs.replace(past_key_values=updated["cache"])

    def _run(self, method: str, inputs: dict, *, params, dropout_rng, train, output_attentions,
             output_hidden_states, return_dict, cache=None):
        if train and dropout_rng is None:
            raise ValueError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")
        cfg = self.config
        arrays = self.place_inputs({name: jnp.asarray(value) for name, value in inputs.items() if value is not None})
        outputs = self._compiled_method(
            self.params if params is None else params,
            arrays,
            {"dropout": dropout_rng} if dropout_rng is not None else {},
            cache,
            method=method,
            deterministic=not train,
            output_attentions=cfg.output_attentions if output_attentions is None else output_attentions,
            output_hidden_states=cfg.output_hidden_states if output_hidden_states is None else output_hidden_states,
        )
        as_dict = cfg.use_return_dict if return_dict is None else return_dict
        return outputs if as_dict else outputs.to_tuple()

    def encode(
        self,
        input_ids,
        attention_mask=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> BaseModelOutput:
        return self._run(
            "encode",
            {"input_ids": input_ids, "attention_mask": attention_mask},
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )


class FlaxT5EncoderModel(FlaxT5PreTrainedModel):
    module_class = T5EncoderModule

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        input_ids = jnp.zeros(input_shape, dtype=jnp.int32)
        return {"input_ids": input_ids, "attention_mask": jnp.ones_like(input_ids)}

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
    ) -> BaseModelOutput:
        return self.encode(
            input_ids, attention_mask, output_attentions, output_hidden_states, return_dict, train, params, dropout_rng
        )


class _FlaxT5EncoderDecoder(FlaxT5PreTrainedModel):
    """What the two encoder-decoder classes share: the full call, `decode` with a KV cache, `init_cache`."""

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
    ):
        if decoder_input_ids is None:
            raise ValueError(
                f"{type(self).__name__} needs decoder_input_ids (the decoder start token followed by the target "
                "shifted right); to produce text, use generate()"
            )
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
        }
        return self._run(
            "__call__",
            inputs,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )

    def decode(
        self,
        decoder_input_ids,
        encoder_outputs,
        encoder_attention_mask=None,
        decoder_attention_mask=None,
        past_key_values: dict | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        train: bool = False,
        params: dict | None = None,
        dropout_rng: jax.Array | None = None,
    ):
        """Run the decoder over `decoder_input_ids` [batch, len]. With `past_key_values` (from `init_cache`, or
        the previous call's output) the tokens continue the cached sequence, and the updated cache comes back as
        `outputs.past_key_values`; `decoder_attention_mask` then covers the whole cache, [batch, max_length]."""
        inputs = {
            "decoder_input_ids": decoder_input_ids,
            "encoder_hidden_states": _hidden_of(encoder_outputs),
            "encoder_attention_mask": encoder_attention_mask,
            "decoder_attention_mask": decoder_attention_mask,
        }
        return self._run(
            "decode",
            inputs,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
            cache=past_key_values,
        )

    def init_cache(self, batch_size: int, max_length: int, encoder_outputs, params: dict | None = None) -> dict:
        """A decoder cache for `max_length` tokens: empty self-attention keys/values, and the cross-attention
        keys/values of `encoder_outputs` (computed here, once)."""
        hidden = jnp.asarray(_hidden_of(encoder_outputs))
        if hidden.shape[0] != batch_size:
            raise ValueError(f"init_cache: batch_size={batch_size} but the encoder outputs hold {hidden.shape[0]} rows")
        inputs = {
            "decoder_input_ids": jnp.zeros((batch_size, max_length), dtype=jnp.int32),
            "encoder_hidden_states": hidden,
        }
        return self._compiled_method(
            self.params if params is None else params,
            inputs,
            {},
            None,
            method="decode",
            init_cache=True,
            deterministic=True,
            output_attentions=False,
            output_hidden_states=False,
        )


class FlaxT5Model(_FlaxT5EncoderDecoder):
    module_class = T5Module


class FlaxT5ForConditionalGeneration(Seq2SeqGenerationMixin, _FlaxT5EncoderDecoder):
    module_class = T5ForConditionalGenerationModule

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, config: T5Config | None = None, **kwargs: Any):
        """As `FlaxPreTrainedModel.from_pretrained`; a checkpoint that holds its own `lm_head.weight` gets an
        untied lm_head even when config.json says tied, as transformers 5 does (it writes tie_word_embeddings=True
        for every T5)."""
        from textbatch.models.checkpoint import open_checkpoint
        from textbatch.storage import Folder

        folder = Folder.open(
            pretrained_model_name_or_path, revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir")
        )
        if config is None:
            config = T5Config.from_dict(folder.read_json("config.json"))
        if config.tie_word_embeddings:
            source = open_checkpoint(folder)
            try:
                has_lm_head = any(
                    key in ("lm_head.weight", ("lm_head", "kernel")) for key in source.shapes
                )
            finally:
                source.close()
            if has_lm_head:
                config.tie_word_embeddings = False  # scale_decoder_outputs keeps what the config said
        return super().from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)

    # --- generation: the model-specific half of Seq2SeqGenerationMixin -------------------------------------------

    def _encode_for_generation(self, params, input_ids, attention_mask):
        return self.module.apply({"params": params}, input_ids, attention_mask, method="encode").last_hidden_state

    def _decoder_for_generation(self, params, encoder_hidden, encoder_mask, max_length, rows):
        """(tokens_to_logits, self-attention cache) for `rows` decoder rows. The cross-attention keys/values are
        computed here once per prompt and closed over, so beam search never reorders them."""
        _, fresh = self.module.apply(
            {"params": params},
            jnp.zeros((rows, max_length), dtype=jnp.int32),
            encoder_hidden,
            method="decode",
            init_cache=True,
            mutable=["cache"],
        )
        flat = flax.traverse_util.flatten_dict(fresh["cache"])
        cross = {path: value for path, value in flat.items() if "EncDecAttention" in path}
        own = {path: value for path, value in flat.items() if "EncDecAttention" not in path}

        def tokens_to_logits(tokens, cache):
            variables = {"params": params, "cache": flax.traverse_util.unflatten_dict({**cache, **cross})}
            outputs, updated = self.module.apply(
                variables, tokens, encoder_hidden, encoder_mask, method="decode", mutable=["cache"]
            )
            new = flax.traverse_util.flatten_dict(updated["cache"])
            return outputs.logits[:, -1, :], {path: new[path] for path in own}

        return tokens_to_logits, own

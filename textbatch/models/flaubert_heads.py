"""FlauBERT's heads on top of `FlaubertModule` (kept under "transformer", as in the checkpoints).

- WithLMHead: `pred_layer.proj`, tied to the word embeddings unless config.tie_word_embeddings=False; with `labels`
  the mean cross-entropy over labels != -100 (not shifted: a masked-LM loss). asm=True is refused.
- SequenceClassification / MultipleChoice: the sequence summary (summary_type "first", "last", "mean" or
  "cls_index" = the last token, as the reference's classifier passes no index; "attn" is refused), an optional
  projection (to num_labels or emb_dim), summary_activation, dropouts; with `labels` the reference's
  regression / single-label / multi-label loss.
- TokenClassification: dropout + `classifier`; QuestionAnsweringSimple: `qa_outputs` -> start / end logits.
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from textbatch.models.activations import activation
from textbatch.models.flaubert import (
    FlaubertConfig,
    FlaubertModule,
    FlaxFlaubertPreTrainedModel,
    _dense,
)
from textbatch.models.matmuls import product
from textbatch.models.outputs import (
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from textbatch.models.sharding import logical

logger = logging.getLogger(__name__)

SUMMARY_TYPES = ("first", "last", "mean", "cls_index")


@flax.struct.dataclass
class FlaubertLMHeadOutput(ModelOutput):
    """The reference's MaskedLMOutput (`loss` only with labels) plus the updated cache when one was given."""

    loss: Any = None
    logits: Any = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    past_key_values: dict | None = None


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = -100) -> jax.Array:
    """Mean negative log-likelihood over labels != ignore_index, in float32 (NaN when every label is ignored, as
    PyTorch's CrossEntropyLoss gives)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = labels != ignore_index
    picked = jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(valid, picked, 0.0)) / jnp.sum(valid)


def _check_summary(config: FlaubertConfig) -> None:
    if config.summary_type not in SUMMARY_TYPES:
        raise NotImplementedError(
            f"summary_type={config.summary_type!r} is not supported (the reference does not implement 'attn' "
            f"either); choose one of {SUMMARY_TYPES}"
        )
    if config.summary_activation:
        activation(config.summary_activation)  # raises naming the supported activations


class _TiedProjection(nn.Module):
    """Logits from the word-embedding table [vocab, emb_dim] plus this layer's own bias."""

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, table):
        bias = self.param("bias", logical(nn.initializers.zeros, ("vocab",)), (self.features,),
                          jnp.float32)
        logits = product("bld,vd->blv", hidden, table, self.dtype)  # [batch, len, vocab]
        return logits + bias.astype(self.dtype)


class FlaubertPredLayer(nn.Module):
    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, table=None):
        if table is None:
            return _dense(self.config.vocab_size, self.config, self.dtype, "proj", ("embed", "vocab"))(hidden)
        return _TiedProjection(self.config.vocab_size, self.dtype, name="proj")(hidden, table)


class FlaubertSequenceSummary(nn.Module):
    """[batch, len, emb_dim] -> one vector per sequence (see the module docstring)."""

    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, deterministic=True):
        cfg = self.config
        if cfg.summary_type == "first":
            summary = hidden[:, 0]
        elif cfg.summary_type == "mean":  # over every position, padding (zeros) included, as the reference
            summary = jnp.mean(hidden, axis=1)
        else:  # "last", and "cls_index" without an index
            summary = hidden[:, -1]
        summary = nn.Dropout(cfg.summary_first_dropout)(summary, deterministic=deterministic)
        if cfg.summary_use_proj:
            to_labels = cfg.summary_proj_to_labels and cfg.num_labels > 0
            axes = ("embed", "labels" if to_labels else "embed")
            summary = _dense(cfg.num_labels if to_labels else cfg.emb_dim, cfg, self.dtype, "summary", axes)(summary)
        if cfg.summary_activation:
            summary = activation(cfg.summary_activation)(summary)
        last_dropout = getattr(cfg, "summary_last_dropout", 0.0) or 0.0
        return nn.Dropout(last_dropout)(summary, deterministic=deterministic)


def _transformer_outputs(module: nn.Module, inputs: dict, init_cache: bool, deterministic: bool, flags: dict):
    transformer = FlaubertModule(module.config, module.dtype, name="transformer")
    return transformer, transformer(**inputs, init_cache=init_cache, deterministic=deterministic, **flags)


class FlaubertWithLMHeadModule(nn.Module):
    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, labels=None, init_cache=False, deterministic=True, output_attentions=False,
                 output_hidden_states=False, **inputs):
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        transformer, outputs = _transformer_outputs(self, inputs, init_cache, deterministic, flags)
        table = None
        if self.config.tie_word_embeddings:  # unboxed: during init, parameters carry their logical axis names
            table = nn.meta.unbox(transformer.variables["params"]["embeddings"]["embedding"])
        logits = FlaubertPredLayer(self.config, self.dtype, name="pred_layer")(outputs.last_hidden_state, table)
        loss = None if labels is None else cross_entropy(logits, labels)
        return FlaubertLMHeadOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class FlaubertForSequenceClassificationModule(nn.Module):
    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, labels=None, deterministic=True, output_attentions=False, output_hidden_states=False,
                 **inputs):
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        _, outputs = _transformer_outputs(self, inputs, False, deterministic, flags)
        logits = FlaubertSequenceSummary(self.config, self.dtype, name="sequence_summary")(
            outputs.last_hidden_state, deterministic
        )  # [batch, num_labels]
        loss = None if labels is None else classification_loss(logits, labels, self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def classification_loss(logits: jax.Array, labels: jax.Array, config: FlaubertConfig) -> jax.Array:
    """The reference's choice: regression for one label, cross-entropy for integer labels, else multi-label BCE."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif jnp.issubdtype(labels.dtype, jnp.integer):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    logits = logits.astype(jnp.float32)
    if problem == "regression":
        if config.num_labels == 1:
            return jnp.mean((jnp.squeeze(logits) - jnp.squeeze(labels).astype(jnp.float32)) ** 2)
        return jnp.mean((logits - labels.astype(jnp.float32)) ** 2)
    if problem == "single_label_classification":
        return cross_entropy(logits.reshape(-1, config.num_labels), labels.reshape(-1))
    if problem == "multi_label_classification":
        targets = labels.astype(jnp.float32)
        return jnp.mean(jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits))))
    raise ValueError(f"unknown problem_type {problem!r}")


class FlaubertForTokenClassificationModule(nn.Module):
    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, deterministic=True, output_attentions=False, output_hidden_states=False, **inputs):
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        _, outputs = _transformer_outputs(self, inputs, False, deterministic, flags)
        hidden = nn.Dropout(self.config.dropout)(outputs.last_hidden_state, deterministic=deterministic)
        logits = _dense(self.config.num_labels, self.config, self.dtype, "classifier", ("embed", "labels"))(hidden)  # [batch, len, labels]
        return TokenClassifierOutput(logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class FlaubertForQuestionAnsweringSimpleModule(nn.Module):
    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, deterministic=True, output_attentions=False, output_hidden_states=False, **inputs):
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        _, outputs = _transformer_outputs(self, inputs, False, deterministic, flags)
        logits = _dense(self.config.num_labels, self.config, self.dtype, "qa_outputs", ("embed", "labels"))(
            outputs.last_hidden_state
        )
        return QuestionAnsweringModelOutput(
            start_logits=logits[..., 0],  # [batch, len]
            end_logits=logits[..., 1],
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class FlaubertForMultipleChoiceModule(nn.Module):
    config: FlaubertConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, deterministic=True, output_attentions=False, output_hidden_states=False, **inputs):
        source = inputs["input_ids"] if inputs.get("input_ids") is not None else inputs["inputs_embeds"]
        batch, choices = source.shape[:2]
        flat = {}
        for name, value in inputs.items():  # [batch, choices, len, ...] -> [batch * choices, len, ...]
            flat[name] = None if value is None or name == "head_mask" else value.reshape(-1, *value.shape[2:])
        flat["head_mask"] = inputs.get("head_mask")
        flags = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        _, outputs = _transformer_outputs(self, flat, False, deterministic, flags)
        summary = FlaubertSequenceSummary(self.config, self.dtype, name="sequence_summary")(
            outputs.last_hidden_state, deterministic
        )
        logits = _dense(1, self.config, self.dtype, "logits_proj", ("embed", "labels"))(summary)  # [batch * choices, 1]
        return MultipleChoiceModelOutput(
            logits=logits.reshape(batch, choices), hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class _FlaxFlaubertHead(FlaxFlaubertPreTrainedModel):
    """A head model's call: the base model's inputs, plus what the head takes (labels), without a cache."""

    def init_cache(self, batch_size: int, max_length: int) -> dict:
        raise ValueError(
            f"{type(self).__name__} takes no cache: only FlaxFlaubertModel and FlaxFlaubertWithLMHeadModel decode "
            "incrementally"
        )

    def _run_head(self, inputs: dict, extras: dict, cache, params, dropout_rng, train, output_attentions,
                  output_hidden_states, return_dict):
        if cache is not None:
            raise ValueError(
                f"{type(self).__name__} takes no cache: only FlaxFlaubertModel and FlaxFlaubertWithLMHeadModel "
                "decode incrementally"
            )
        inputs.update({name: value for name, value in extras.items() if value is not None})
        return self._run(
            inputs,
            cache=None,
            params=params,
            dropout_rng=dropout_rng,
            train=train,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )


class FlaxFlaubertWithLMHeadModel(FlaxFlaubertPreTrainedModel):
    """Logits over the vocabulary [batch, len, vocab_size]; with `labels`, also the masked-LM `loss`."""

    module_class = FlaubertWithLMHeadModule

    def __init__(self, config: FlaubertConfig, *args: Any, **kwargs: Any):
        if config.asm:
            raise NotImplementedError(
                "FlauBERT with asm=True (an adaptive log-softmax output layer) is not supported: its "
                "pred_layer.proj.head / tail weights cannot be loaded. FlaxFlaubertModel loads the same checkpoint "
                "without the LM head."
            )
        super().__init__(config, *args, **kwargs)

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
        labels=None,
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
        if labels is not None:
            if cache is not None:
                raise ValueError("labels with a cache: give the loss's labels to a full (uncached) call")
            inputs["labels"] = labels
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


class FlaxFlaubertForSequenceClassification(_FlaxFlaubertHead):
    """Logits [batch, num_labels] from the sequence summary; with `labels`, the reference's loss."""

    module_class = FlaubertForSequenceClassificationModule

    def __init__(self, config: FlaubertConfig, *args: Any, **kwargs: Any):
        _check_summary(config)
        super().__init__(config, *args, **kwargs)

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
        labels=None,
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
        return self._run_head(inputs, {"labels": labels}, cache, params, dropout_rng, train, output_attentions,
                              output_hidden_states, return_dict)


class FlaxFlaubertForTokenClassification(_FlaxFlaubertHead):
    """Logits [batch, len, num_labels]."""

    module_class = FlaubertForTokenClassificationModule

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
        return self._run_head(inputs, {}, cache, params, dropout_rng, train, output_attentions,
                              output_hidden_states, return_dict)


class FlaxFlaubertForQuestionAnsweringSimple(_FlaxFlaubertHead):
    """Span start and end logits [batch, len] (config.num_labels must be 2, as the reference assumes)."""

    module_class = FlaubertForQuestionAnsweringSimpleModule

    def __init__(self, config: FlaubertConfig, *args: Any, **kwargs: Any):
        if config.num_labels != 2:
            raise ValueError(
                f"FlaubertForQuestionAnsweringSimple splits its {config.num_labels} outputs into start and end "
                "logits: it needs num_labels=2"
            )
        super().__init__(config, *args, **kwargs)

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
        return self._run_head(inputs, {}, cache, params, dropout_rng, train, output_attentions,
                              output_hidden_states, return_dict)


class FlaxFlaubertForMultipleChoice(_FlaxFlaubertHead):
    """Inputs [batch, choices, len]; logits [batch, choices]. `lengths` is ignored (with a warning), as in the
    reference: use attention_mask."""

    module_class = FlaubertForMultipleChoiceModule

    def __init__(self, config: FlaubertConfig, *args: Any, **kwargs: Any):
        _check_summary(config)
        super().__init__(config, *args, **kwargs)

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        if len(input_shape) == 2:  # (batch, len) from the default input_shape: one choice
            input_shape = (input_shape[0], 1, input_shape[1])
        return super().dummy_inputs(input_shape)

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
        if lengths is not None:
            logger.warning("lengths cannot be used with FlauBERT's multiple-choice model; pass attention_mask")
        inputs = self._base_inputs(
            input_ids, attention_mask, langs, token_type_ids, position_ids, None, head_mask, inputs_embeds
        )
        return self._run_head(inputs, {}, cache, params, dropout_rng, train, output_attentions,
                              output_hidden_states, return_dict)

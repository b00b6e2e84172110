"""XLM-RoBERTa task heads: masked LM, causal LM, sequence / token classification, multiple choice, question answering.

Each head module holds the base model under "roberta" (without its pooler, except multiple choice) and its head under
the checkpoint's names (`lm_head`, `classifier`, `qa_outputs`), so head checkpoints load as they are, and a base
checkpoint loads with the head newly initialised (see FlaxPreTrainedModel.from_pretrained).
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from textbatch.models.activations import activation
from textbatch.models.matmuls import dense_matmuls, product
from textbatch.models.outputs import (
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from textbatch.models.sharding import logical
from textbatch.models.xlm_roberta import (
    FlaxXLMRobertaPreTrainedModel,
    XLMRobertaConfig,
    XLMRobertaModule,
    _dense,
    _layer_norm,
)

logger = logging.getLogger(__name__)

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def _classifier_dropout(config: XLMRobertaConfig) -> float:
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


def _tied_embedding(roberta: nn.Module, config: XLMRobertaConfig) -> jax.Array | None:
    """The word-embedding matrix [vocab, hidden] when the LM decoder is tied to it (no decoder kernel of its own)."""
    if not config.tie_word_embeddings:
        return None
    # Unboxed: while the model is initialised, parameters still carry their logical axis names.
    return nn.meta.unbox(roberta.variables["params"]["embeddings"]["word_embeddings"]["embedding"])


def _finish(outputs, return_dict: bool):
    return outputs if return_dict else outputs.to_tuple()


# ---------------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------------


class XLMRobertaLMHead(nn.Module):
    """dense -> gelu -> layer_norm -> vocabulary logits, by the word embeddings (tied) or a decoder of its own."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, shared_embedding=None):
        cfg = self.config
        hidden = _dense(cfg.hidden_size, cfg, self.dtype, "dense", ("embed", "embed"))(hidden)
        hidden = activation("gelu")(hidden)
        hidden = _layer_norm(cfg, self.dtype, "layer_norm")(hidden)
        # Tied, the reference's decoder bias *is* lm_head.bias; untied, its decoder has a bias of its own and
        # lm_head.bias goes unused (kept so checkpoints round-trip).
        bias = self.param("bias", logical(nn.initializers.zeros, ("vocab",)), (cfg.vocab_size,))
        if shared_embedding is None:
            return _dense(cfg.vocab_size, cfg, self.dtype, "decoder", ("embed", "vocab"))(hidden)
        logits = product("blh,vh->blv", hidden, shared_embedding, self.dtype)  # [batch, len, vocab]
        return logits + bias.astype(self.dtype)


class XLMRobertaForMaskedLMModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

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
        roberta = XLMRobertaModule(self.config, self.dtype, add_pooling_layer=False, name="roberta")
        base = roberta(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask,
            deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        lm_head = XLMRobertaLMHead(self.config, self.dtype, name="lm_head")
        logits = lm_head(base.last_hidden_state, _tied_embedding(roberta, self.config))
        outputs = MaskedLMOutput(logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return _finish(outputs, return_dict)


class XLMRobertaForCausalLMModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

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
        roberta = XLMRobertaModule(self.config, self.dtype, add_pooling_layer=False, name="roberta")
        base = roberta(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache, deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        lm_head = XLMRobertaLMHead(self.config, self.dtype, name="lm_head")
        logits = lm_head(base.last_hidden_state, _tied_embedding(roberta, self.config))
        outputs = CausalLMOutputWithCrossAttentions(
            logits=logits,
            hidden_states=base.hidden_states,
            attentions=base.attentions,
            cross_attentions=base.cross_attentions,
        )
        return _finish(outputs, return_dict)


class XLMRobertaClassificationHead(nn.Module):
    """The <s> token's vector -> dense -> tanh -> out_proj, with dropout before each projection."""

    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden, deterministic: bool = True):
        cfg = self.config
        dropout = nn.Dropout(_classifier_dropout(cfg))
        first = dropout(hidden[:, 0], deterministic=deterministic)  # [batch, hidden]
        first = jnp.tanh(_dense(cfg.hidden_size, cfg, self.dtype, "dense", ("embed", "embed"))(first))
        first = dropout(first, deterministic=deterministic)
        return _dense(cfg.num_labels, cfg, self.dtype, "out_proj", ("embed", "labels"))(first)  # [batch, num_labels]


class XLMRobertaForSequenceClassificationModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

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
        base = XLMRobertaModule(self.config, self.dtype, add_pooling_layer=False, name="roberta")(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask,
            deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = XLMRobertaClassificationHead(self.config, self.dtype, name="classifier")(
            base.last_hidden_state, deterministic
        )
        outputs = SequenceClassifierOutput(logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return _finish(outputs, return_dict)


class XLMRobertaForMultipleChoiceModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

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
        num_choices = input_ids.shape[1]

        def flat(x):  # [batch, choices, len] -> [batch * choices, len]
            return None if x is None else x.reshape(-1, x.shape[-1])

        base = XLMRobertaModule(self.config, self.dtype, add_pooling_layer=True, name="roberta")(
            flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids), head_mask,
            deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        pooled = nn.Dropout(self.config.hidden_dropout_prob)(base.pooler_output, deterministic=deterministic)
        scores = _dense(1, self.config, self.dtype, "classifier", ("embed", "labels"))(pooled)  # [batch * choices, 1]
        outputs = MultipleChoiceModelOutput(
            logits=scores.reshape(-1, num_choices), hidden_states=base.hidden_states, attentions=base.attentions
        )
        return _finish(outputs, return_dict)


class XLMRobertaForTokenClassificationModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

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
        base = XLMRobertaModule(self.config, self.dtype, add_pooling_layer=False, name="roberta")(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask,
            deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = nn.Dropout(_classifier_dropout(self.config))(base.last_hidden_state, deterministic=deterministic)
        logits = _dense(self.config.num_labels, self.config, self.dtype, "classifier", ("embed", "labels"))(hidden)  # [batch, len, labels]
        outputs = TokenClassifierOutput(logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return _finish(outputs, return_dict)


class XLMRobertaForQuestionAnsweringModule(nn.Module):
    config: XLMRobertaConfig
    dtype: jnp.dtype = jnp.float32

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
        base = XLMRobertaModule(self.config, self.dtype, add_pooling_layer=False, name="roberta")(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask,
            deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = _dense(self.config.num_labels, self.config, self.dtype, "qa_outputs", ("embed", "labels"))(
            base.last_hidden_state
        )
        outputs = QuestionAnsweringModelOutput(
            start_logits=logits[..., 0],  # [batch, len]
            end_logits=logits[..., 1],
            hidden_states=base.hidden_states,
            attentions=base.attentions,
        )
        return _finish(outputs, return_dict)


# ---------------------------------------------------------------------------------------------------------------------
# Models: config + parameters + the Hugging Face call signature (FlaxXLMRobertaPreTrainedModel.__call__)
# ---------------------------------------------------------------------------------------------------------------------


class FlaxXLMRobertaForMaskedLM(FlaxXLMRobertaPreTrainedModel):
    module_class = XLMRobertaForMaskedLMModule

    def __init__(self, config: XLMRobertaConfig, *args: Any, **kwargs: Any):
        if config.is_decoder:
            logger.warning("FlaxXLMRobertaForMaskedLM attends both ways only with config.is_decoder=False")
        super().__init__(config, *args, **kwargs)


class FlaxXLMRobertaForCausalLM(FlaxXLMRobertaPreTrainedModel):
    """Left-to-right LM. Decode with a static-shape KV cache:

        cache = model.init_cache(batch, max_length)
        out = model(prompt_ids, attention_mask=mask_of_max_length, past_key_values=cache)
        out = model(next_ids, attention_mask=mask_of_max_length, past_key_values=out.past_key_values)

    Without position_ids, positions continue from the cache length as the reference's do (right for prompts without
    left padding); `prepare_inputs_for_generation` gives positions that also skip left padding.
    """

    module_class = XLMRobertaForCausalLMModule
    takes_decoder_inputs = True

    def __init__(self, config: XLMRobertaConfig, *args: Any, **kwargs: Any):
        if not config.is_decoder:
            logger.warning("FlaxXLMRobertaForCausalLM is meant as a decoder: set config.is_decoder=True")
        super().__init__(config, *args, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, max_length: int, attention_mask=None, encoder_hidden_states=None,
                                      encoder_attention_mask=None) -> dict[str, Any]:
        """Keyword arguments for the first call of a decode loop over a (possibly left-padded) prompt."""
        batch, length = jnp.shape(input_ids)
        mask = jnp.ones((batch, length), jnp.int32) if attention_mask is None else jnp.asarray(attention_mask)
        mask = mask.astype(jnp.int32)
        pad = self.config.pad_token_id
        return {
            "past_key_values": self.init_cache(batch, max_length),
            "attention_mask": jax.lax.dynamic_update_slice(jnp.ones((batch, max_length), jnp.int32), mask, (0, 0)),
            "position_ids": jnp.cumsum(mask, axis=-1) * mask + pad,  # [batch, len]: real tokens count from pad + 1
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
        }

    def update_inputs_for_generation(self, model_outputs, model_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the next one-token call."""
        return {
            **model_kwargs,
            "past_key_values": model_outputs.past_key_values,
            "position_ids": jnp.max(model_kwargs["position_ids"], axis=-1, keepdims=True) + 1,  # [batch, 1]
        }


class FlaxXLMRobertaForSequenceClassification(FlaxXLMRobertaPreTrainedModel):
    """`logits` [batch, num_labels]. With num_labels == 1 the head is a regression. `config.problem_type` (or, unset,
    the reference's rule: regression for one label, else integer labels -> single-label, float -> multi-label) picks
    the loss when `labels` are given, and tells callers to apply softmax or sigmoid."""

    module_class = XLMRobertaForSequenceClassificationModule

    def __init__(self, config: XLMRobertaConfig, *args: Any, **kwargs: Any):
        if config.problem_type is not None and config.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"config.problem_type={config.problem_type!r} is not one of {PROBLEM_TYPES} (or None)")
        super().__init__(config, *args, **kwargs)

    def __call__(self, *args: Any, labels=None, return_dict: bool | None = None, **kwargs: Any):
        """The arguments of FlaxXLMRobertaModel, plus `labels` ([batch] class ids, or [batch, num_labels] floats)
        to get the reference's `loss` for `config.problem_type`."""
        outputs = super().__call__(*args, return_dict=True, **kwargs)
        if labels is not None:
            cfg = self.config
            outputs = outputs.replace(
                loss=sequence_classification_loss(outputs.logits, labels, cfg.problem_type, cfg.num_labels)
            )
        as_dict = self.config.use_return_dict if return_dict is None else return_dict
        return outputs if as_dict else outputs.to_tuple()

    def classify_states(self, states: jax.Array, params: dict | None = None) -> jax.Array:
        """The head alone: `<s>` states [..., hidden] (the last hidden states' first token of each text, e.g. of
        texts packed side by side into one model row) -> logits [..., num_labels], as the full call gives."""
        head = XLMRobertaClassificationHead(self.config, self.dtype)
        flat = states.reshape(-1, 1, states.shape[-1])  # the head reads position 0 of each row
        with dense_matmuls():  # int8 kernels as stored, half precision accumulated in float32
            logits = head.apply({"params": (self.params if params is None else params)["classifier"]}, flat)
        return logits.reshape(*states.shape[:-1], logits.shape[-1])


def resolve_problem_type(problem_type: str | None, num_labels: int, labels_dtype: Any) -> str:
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    return "single_label_classification" if jnp.issubdtype(labels_dtype, jnp.integer) else "multi_label_classification"


def sequence_classification_loss(logits, labels, problem_type: str | None, num_labels: int) -> jax.Array:
    """Mean loss as the reference computes it: MSE, cross-entropy (ignoring label -100) or binary cross-entropy."""
    labels = jnp.asarray(labels)
    problem_type = resolve_problem_type(problem_type, num_labels, labels.dtype)
    logits = logits.astype(jnp.float32)
    if problem_type == "regression":
        if num_labels == 1:
            logits, labels = jnp.squeeze(logits), jnp.squeeze(labels)
        return jnp.mean((logits - labels.astype(jnp.float32)) ** 2)
    if problem_type == "single_label_classification":
        labels = labels.reshape(-1)
        valid = labels != -100
        log_probs = jax.nn.log_softmax(logits.reshape(-1, num_labels), axis=-1)  # [batch, labels]
        picked = jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[:, None], axis=-1)[:, 0]
        return -jnp.sum(jnp.where(valid, picked, 0.0)) / jnp.sum(valid)
    if problem_type == "multi_label_classification":
        labels = labels.astype(jnp.float32)
        return jnp.mean(jax.nn.softplus(logits) - logits * labels)  # binary cross-entropy on logits, stably
    raise ValueError(f"problem_type={problem_type!r} is not one of {PROBLEM_TYPES}")


class FlaxXLMRobertaForMultipleChoice(FlaxXLMRobertaPreTrainedModel):
    """Inputs [batch, num_choices, len] -> `logits` [batch, num_choices]."""

    module_class = XLMRobertaForMultipleChoiceModule

    def dummy_inputs(self, input_shape: tuple[int, ...]) -> dict[str, jax.Array]:
        if len(input_shape) == 2:  # from_pretrained's default (batch, len): one choice
            input_shape = (input_shape[0], 1, input_shape[1])
        return super().dummy_inputs(input_shape)


class FlaxXLMRobertaForTokenClassification(FlaxXLMRobertaPreTrainedModel):
    """`logits` [batch, len, num_labels]."""

    module_class = XLMRobertaForTokenClassificationModule


class FlaxXLMRobertaForQuestionAnswering(FlaxXLMRobertaPreTrainedModel):
    """`start_logits`, `end_logits` [batch, len]."""

    module_class = XLMRobertaForQuestionAnsweringModule

    def __init__(self, config: XLMRobertaConfig, *args: Any, **kwargs: Any):
        if config.num_labels != 2:
            raise ValueError(
                f"Question answering needs num_labels == 2 (start, end), the config has {config.num_labels}"
            )
        super().__init__(config, *args, **kwargs)

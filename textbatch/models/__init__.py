"""JAX/Flax models that load Hugging Face checkpoints and keep their class names and call signatures."""

from textbatch.models.auto import (
    FlaxAutoModel,
    FlaxAutoModelForCausalLM,
    FlaxAutoModelForMaskedLM,
    FlaxAutoModelForMultipleChoice,
    FlaxAutoModelForQuestionAnswering,
    FlaxAutoModelForSeq2SeqLM,
    FlaxAutoModelForSequenceClassification,
    FlaxAutoModelForTokenClassification,
)
from textbatch.models.flaubert import FlaubertConfig, FlaxFlaubertModel
from textbatch.models.flaubert_heads import (
    FlaxFlaubertForMultipleChoice,
    FlaxFlaubertForQuestionAnsweringSimple,
    FlaxFlaubertForSequenceClassification,
    FlaxFlaubertForTokenClassification,
    FlaxFlaubertWithLMHeadModel,
)
from textbatch.models.t5 import FlaxT5EncoderModel, FlaxT5ForConditionalGeneration, FlaxT5Model, T5Config
from textbatch.models.xlm_roberta import FlaxXLMRobertaModel, XLMRobertaConfig
from textbatch.models.xlm_roberta_heads import (
    FlaxXLMRobertaForCausalLM,
    FlaxXLMRobertaForMaskedLM,
    FlaxXLMRobertaForMultipleChoice,
    FlaxXLMRobertaForQuestionAnswering,
    FlaxXLMRobertaForSequenceClassification,
    FlaxXLMRobertaForTokenClassification,
)

__all__ = [
    "FlaubertConfig",
    "FlaxAutoModel",
    "FlaxAutoModelForCausalLM",
    "FlaxAutoModelForMaskedLM",
    "FlaxAutoModelForMultipleChoice",
    "FlaxAutoModelForQuestionAnswering",
    "FlaxAutoModelForSeq2SeqLM",
    "FlaxAutoModelForSequenceClassification",
    "FlaxAutoModelForTokenClassification",
    "FlaxFlaubertForMultipleChoice",
    "FlaxFlaubertForQuestionAnsweringSimple",
    "FlaxFlaubertForSequenceClassification",
    "FlaxFlaubertForTokenClassification",
    "FlaxFlaubertModel",
    "FlaxFlaubertWithLMHeadModel",
    "FlaxT5EncoderModel",
    "FlaxT5ForConditionalGeneration",
    "FlaxT5Model",
    "FlaxXLMRobertaForCausalLM",
    "FlaxXLMRobertaForMaskedLM",
    "FlaxXLMRobertaForMultipleChoice",
    "FlaxXLMRobertaForQuestionAnswering",
    "FlaxXLMRobertaForSequenceClassification",
    "FlaxXLMRobertaForTokenClassification",
    "FlaxXLMRobertaModel",
    "T5Config",
    "XLMRobertaConfig",
]

"""JAX/Flax models that load Hugging Face checkpoints and keep their class names and call signatures."""

from textbatch.models.xlm_roberta import FlaxXLMRobertaModel, XLMRobertaConfig

__all__ = ["FlaxXLMRobertaModel", "XLMRobertaConfig"]

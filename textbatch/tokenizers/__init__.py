"""Tokenizers that give the same ids as transformers' (the reference), without transformers at run time."""

from textbatch.tokenizers.added_tokens import AddedToken
from textbatch.tokenizers.base import BatchEncoding
from textbatch.tokenizers.xlm_roberta import XLMRobertaTokenizer

__all__ = ["AddedToken", "BatchEncoding", "XLMRobertaTokenizer"]

"""Tokenizers that give the same ids as transformers' (the reference), without transformers at run time."""

from textbatch.tokenizers.added_tokens import AddedToken
from textbatch.tokenizers.auto import AutoTokenizer
from textbatch.tokenizers.base import BatchEncoding
from textbatch.tokenizers.flaubert import FlaubertTokenizer
from textbatch.tokenizers.t5 import T5Tokenizer
from textbatch.tokenizers.xlm_roberta import XLMRobertaTokenizer

__all__ = ["AddedToken", "AutoTokenizer", "BatchEncoding", "FlaubertTokenizer", "T5Tokenizer", "XLMRobertaTokenizer"]

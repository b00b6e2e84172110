"""Session fixtures: one trained sentencepiece model, loaded by textbatch and by transformers (the reference)."""

from __future__ import annotations

import warnings

import pytest

from tests.tokenizers.spm_fixture import (
    build_xlmr_tokenizer_folder,
    read_multilingual_lines,
)
from textbatch.tokenizers import XLMRobertaTokenizer


def _reference(folder):
    from transformers import XLMRobertaTokenizer as ReferenceTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def lines() -> list[str]:
    return read_multilingual_lines()


@pytest.fixture(scope="session")
def pairs(lines) -> list[tuple[str, str]]:
    """Deterministic pairs of corpus lines, including empty ones and pairs of very different lengths."""
    n = len(lines)
    return [(lines[i], lines[(7 * i + 3) % n]) for i in range(n)]


@pytest.fixture(scope="session")
def xlmr_folder(tmp_path_factory):
    """sentencepiece.bpe.model + tokenizer_config.json (model_max_length only)."""
    return build_xlmr_tokenizer_folder(tmp_path_factory.mktemp("xlmr_plain"))


@pytest.fixture(scope="session")
def xlmr_hub_folder(tmp_path_factory):
    """The same kind of model with a hub-like config: "<mask>" lstrip=True, clean_up_tokenization_spaces=True."""
    return build_xlmr_tokenizer_folder(tmp_path_factory.mktemp("xlmr_hub"), hub_like_config=True)


@pytest.fixture(scope="session")
def ours(xlmr_folder):
    return XLMRobertaTokenizer.from_pretrained(xlmr_folder)


@pytest.fixture(scope="session")
def ref(xlmr_folder):
    return _reference(xlmr_folder)


@pytest.fixture(scope="session")
def ours_hub(xlmr_hub_folder):
    return XLMRobertaTokenizer.from_pretrained(xlmr_hub_folder)


@pytest.fixture(scope="session")
def ref_hub(xlmr_hub_folder):
    return _reference(xlmr_hub_folder)


@pytest.fixture(scope="session")
def reference_loader():
    """transformers' XLMRobertaTokenizer.from_pretrained, warnings silenced."""
    return _reference

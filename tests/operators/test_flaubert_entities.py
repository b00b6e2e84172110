"""The NER step (Tokenize -> TagEntities, no Ray) with a tiny FlauBERT token classifier, whose tokenizer gives no
character offsets: `none` and `simple` equal transformers' token-classification pipeline with its slow
FlaubertTokenizer (start/end None); `first`/`average`/`max`, which that pipeline refuses, group tokens into words by
the BPE end-of-word marks; long texts go through windows merged by token positions; asking for offsets fails clearly."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
import torch
import transformers
from transformers.pipelines.token_classification import AggregationStrategy

from tests.operators.flaubert_checkpoints import build_flaubert_checkpoint
from tests.operators.test_entities_parity import assert_same, with_aggregation
from textbatch.operators.token_classify import TagEntities
from textbatch.operators.tokenize import Tokenize
from textbatch.operators.word_boundaries import check_word_aggregation
from textbatch.tokenizers import AutoTokenizer

NER = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
TEXTS = [
    "Emmanuel Macron a rencontré Angela Merkel à Paris, près de la Tour Eiffel.",
    "Le train de Marseille a vingt minutes de retard.",
    "« Bonjour », dit-elle à l'ami d'Émile.",
    "Un ☃ inconnu et <special3> écrit dans le texte.",
    "",
]
WINDOW = 64


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    return build_flaubert_checkpoint(
        tmp_path_factory.mktemp("flaubert-ner"), transformers.FlaubertForTokenClassification, labels=NER,
        scale_head="classifier.weight",
    )


@pytest.fixture(scope="module")
def tagger(ner):
    return TagEntities(str(ner), aggregation="none", max_length=WINDOW, stride=16, buckets=(WINDOW,),
                       batch_tokens=4 * WINDOW)


@pytest.fixture(scope="module")
def pipe(ner):
    model = transformers.AutoModelForTokenClassification.from_pretrained(ner, dtype=torch.float32)
    return transformers.pipeline("token-classification", model=model,
                                 tokenizer=transformers.FlaubertTokenizer.from_pretrained(ner))


def tag(ner, tagger, texts):
    tokenized = Tokenize(str(ner), None)(pa.table({"id": list(range(len(texts))), "text": texts}))
    assert "offsets" not in tokenized.column_names and "text" not in tokenized.column_names
    result = tagger(tokenized)
    assert result.column("error").null_count == len(texts)
    return result.column("entities").to_pylist()


@pytest.mark.parametrize("aggregation", ["none", "simple"])
def test_equals_the_pipeline_with_a_slow_tokenizer(ner, tagger, pipe, aggregation):
    found = tag(ner, with_aggregation(tagger, aggregation), TEXTS)
    for text, ours in zip(TEXTS, found):
        assert_same(ours, pipe(text, aggregation_strategy=aggregation), f"{aggregation}: {text!r}")
        assert all(entity["start"] is None and entity["end"] is None for entity in ours)
    assert sum(map(len, found)) >= 5 and found[-1] == []  # entities found; no tokens, no entities
    if aggregation == "none":
        assert "<unk>" in {entity["word"] for ours in found for entity in ours}  # the unknown token, by its piece


def reference_by_end_marks(pipe, text: str, strategy: str) -> list[dict]:
    """The reference's own word aggregation, with word starts given by the end-of-word marks (its pipeline refuses
    word aggregations for a slow tokenizer, which has no other way to know them)."""
    tokenizer = pipe.tokenizer
    inputs = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
    special = inputs.pop("special_tokens_mask")[0].numpy()
    with torch.no_grad():
        logits = pipe.model(**inputs).logits[0].numpy()
    scores = np.exp(logits - logits.max(axis=-1, keepdims=True))
    scores /= scores.sum(axis=-1, keepdims=True)
    tokens = pipe.gather_pre_entities(text, inputs["input_ids"][0], scores, None, special, AggregationStrategy.SIMPLE)
    specials = set(tokenizer.all_special_tokens) - {tokenizer.unk_token}
    for before, token in zip([None, *tokens], tokens):  # the rule of textbatch/operators/word_boundaries.py
        token["is_subword"] = (
            before is not None
            and token["word"] not in specials
            and before["word"] not in specials | {tokenizer.unk_token}
            and not before["word"].endswith("</w>")
        )
    grouped = pipe.aggregate(tokens, AggregationStrategy[strategy.upper()])
    return [entity for entity in grouped if entity["entity_group"] != "O"]


@pytest.mark.parametrize("aggregation", ["first", "average", "max"])
def test_word_aggregations_follow_the_end_of_word_marks(ner, tagger, pipe, aggregation):
    found = tag(ner, with_aggregation(tagger, aggregation), TEXTS)
    for text, ours in zip(TEXTS, found):
        assert_same(ours, reference_by_end_marks(pipe, text, aggregation), f"{aggregation}: {text!r}")
    assert sum(map(len, found)) >= 3


def test_long_texts_in_windows_merged_by_token_positions(ner, tagger):
    """Windows of 14 text tokens sharing 4: with `none`, every token tagged once, by its index in the whole text."""
    text = " ".join(TEXTS[:3] * 4)
    ids = AutoTokenizer.from_pretrained(ner)(text)["input_ids"]
    pieces = AutoTokenizer.from_pretrained(ner).convert_ids_to_tokens(ids)
    assert len(ids) > 100
    small = copy.copy(tagger)
    small.window, small.stride = 14, 4  # the same compiled model: window rows are padded to 64
    (tokens,) = tag(ner, small, [text])
    indices = [entity["index"] for entity in tokens]
    assert indices == sorted(set(indices)) and 0 < indices[0] and indices[-1] < len(ids) - 1
    assert [entity["word"] for entity in tokens] == [pieces[index] for index in indices]
    assert len(indices) > 30
    (groups,) = tag(ner, with_aggregation(small, "first"), [text])
    assert groups and all(group["start"] is None for group in groups)


def test_offsets_are_refused_clearly(ner):
    with pytest.raises(ValueError, match="FlaubertTokenizer of .* gives no character offsets"):
        Tokenize(str(ner), None, offsets=True, keep_text=True)
    tokenizer = AutoTokenizer.from_pretrained(ner)
    tokenizer.end_of_word_suffix = None  # a tokenizer with neither offsets nor word marks
    with pytest.raises(ValueError, match="aggregation 'first' labels whole words.*use none or simple"):
        check_word_aggregation(tokenizer, "first", "here")
    check_word_aggregation(tokenizer, "simple", "here")  # needs no words

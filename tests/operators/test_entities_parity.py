"""The NER step (Tokenize -> TagEntities, no Ray) against transformers' token-classification pipeline on the bundled
tiny checkpoint (saved by transformers; its head scaled up so that labels vary): every aggregation strategy, texts
with accents, CJK, emoji, unknown pieces and special tokens written in the text, and long texts in windows."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import transformers

from textbatch.jobs.label import SAMPLE_CORPUS, TINY_MODEL
from textbatch.operators.entities import AGGREGATIONS, EntityAggregator
from textbatch.operators.token_classify import TagEntities, entity_type
from textbatch.operators.tokenize import Tokenize

# The reference warns that sentencepiece tokenizers do not mark words (it then guesses from spaces, as we do).
pytestmark = pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")

TEXTS = [
    "Angela Merkel a rencontré Emmanuel Macron à Paris, près de la Tour Eiffel.",
    "Mañana lloverá en Łódź y Ærøskøbing; Ångström über Straße, naïve café.",
    "東京タワーは東京都港区にあります。北京和上海是中国的城市。서울은 한국의 수도입니다.",
    "Emoji 👍🏽 🇺🇦 👨\u200d👩\u200d👧\u200d👦 and 🙂 mixed with words😀inside",
    "Unknown ☃ ⚛ pieces, a <mask> and </s> written in the text.",
    "tabs\tbetween\twords, a non-breaking\xa0space and a thin\u2009space",
    "Ελληνικά και русский текст, עברית ו-العربية.",
    "",
    "   ",
]
WINDOW = 64


def reference_pipeline(aggregation, window=None, stride=None):
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(
        TINY_MODEL, **({"model_max_length": window} if window else {})
    )
    model = transformers.AutoModelForTokenClassification.from_pretrained(TINY_MODEL, dtype=torch.float32)
    options = {} if stride is None else {"stride": stride}
    return transformers.pipeline(
        "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=aggregation, **options
    )


def with_aggregation(tagger: TagEntities, aggregation: str) -> TagEntities:
    """The same loaded (and compiled) tagger with another aggregation strategy."""
    other = copy.copy(tagger)
    other.aggregator = EntityAggregator(
        tagger.aggregator.id2label, tagger.tokenizer.convert_tokens_to_string, aggregation
    )
    other.type = entity_type(aggregation)
    return other


def tag(tagger: TagEntities, texts: list[str]) -> list[list[dict]]:
    tokenized = Tokenize(str(TINY_MODEL), None, offsets=True, keep_text=True)(
        pa.table({"id": list(range(len(texts))), "text": texts})
    )
    result = tagger(tokenized)
    assert result.schema.field("entities").type == tagger.type
    assert result.column("error").null_count == len(texts)
    return result.column("entities").to_pylist()


def assert_same(ours: list[dict], theirs: list[dict], where: str) -> None:
    """Equal results: the same keys, labels, words and spans; scores within 1e-4 (float32, two implementations)."""
    theirs = [{key: (float(value) if key == "score" else value) for key, value in e.items()} for e in theirs]
    assert [{k: v for k, v in e.items() if k != "score"} for e in ours] == [
        {k: v for k, v in e.items() if k != "score"} for e in theirs
    ], where
    assert np.allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-4, rtol=0), where


@pytest.fixture(scope="module", params=[32, 0], ids=["some-packed", "padded"])
def tagger(request):
    """Windows of up to 32 tokens packed side by side into model rows (XLM-R), longer ones padded; or all padded."""
    return TagEntities(str(TINY_MODEL), max_length=WINDOW, stride=16, buckets=(32, WINDOW), batch_tokens=256,
                       pack_length=request.param)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_every_aggregation_equals_the_pipeline(tagger, aggregation):
    reference = reference_pipeline(aggregation)
    found = tag(with_aggregation(tagger, aggregation), TEXTS)
    labelled = 0
    for text, ours in zip(TEXTS, found):
        assert_same(ours, reference(text), f"{aggregation}: {text!r}")
        for entity in ours:
            assert 0 <= entity["start"] <= entity["end"] <= len(text)
        labelled += len(ours)
    assert labelled >= 5  # the checkpoint does find entities
    assert found[-1] == found[-2] == []  # no tokens, no entities (and no error)


def long_texts(count: int, per_text: int) -> list[str]:
    texts = [text for text in pq.read_table(SAMPLE_CORPUS, columns=["text"]).column("text").to_pylist() if text]
    return [" ".join(texts[start : start + per_text]) for start in range(0, count * per_text, per_text)]


@pytest.mark.parametrize(("window", "stride", "aggregations"), [(40, 7, AGGREGATIONS[1:]), (33, 0, ("simple",))])
def test_windows_equal_the_pipeline_with_stride(window, stride, aggregations):
    """Texts of 180..540 tokens in windows of a few dozen: the same windows and merged spans as the reference's."""
    texts = long_texts(3, per_text=5)
    tagger = TagEntities(str(TINY_MODEL), max_length=window, stride=stride, buckets=(window,), batch_tokens=512)
    for aggregation in aggregations:
        reference = reference_pipeline(aggregation, window=window, stride=stride)
        for text, ours in zip(texts, tag(with_aggregation(tagger, aggregation), texts)):
            assert_same(ours, reference(text), f"{aggregation}, window {window}, stride {stride}")


def test_nothing_past_token_512_is_lost():
    """A text of 1000+ tokens with the full 512-token window and the default stride: equal to the reference's
    windows, with entities found past the 512th token; with `none`, every token is tagged once, by its index."""
    from textbatch.tokenizers import XLMRobertaTokenizer

    text = long_texts(1, per_text=24)[0]
    offsets = XLMRobertaTokenizer.from_pretrained(TINY_MODEL)(text, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) > 1000
    tagger = TagEntities(str(TINY_MODEL), aggregation="first", buckets=(512,), batch_tokens=2048)
    assert (tagger.max_length, tagger.stride) == (512, 128)
    (ours,) = tag(tagger, [text])
    assert_same(ours, reference_pipeline("first", stride=128)(text), "first, 512-token windows")
    past = offsets[513][0]  # the first character no single window from the start would see
    assert sum(entity["start"] >= past for entity in ours) > 20

    (tokens,) = tag(with_aggregation(tagger, "none"), [text])
    indices = [entity["index"] for entity in tokens]
    assert indices == sorted(set(indices)) and indices[-1] > 900
    for entity in tokens:
        assert (entity["start"], entity["end"]) == tuple(offsets[entity["index"]])

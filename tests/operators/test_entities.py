"""Windows and BIO -> span rules on hand-made scores (no model, no Ray): the cases the tiny checkpoint may not hit."""

from __future__ import annotations

import numpy as np
import pytest

from textbatch.operators.entities import EntityAggregator, Window, merge_overlapping, softmax, split_tag
from textbatch.operators.windows import special_frame, window_bounds
from textbatch.operators.word_boundaries import continues_by_end_marks

LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "DATE"}


def join(tokens):  # sentencepiece's way: "▁" is a space, dropped at the start
    return "".join(t.replace("▁", "") if i == 0 else t.replace("▁", " ") for i, t in enumerate(tokens))


def window(text, pieces, spans, labels, confidence=0.9, first_index=1, unknown=None):
    """Scores that put `confidence` on each token's label (an int, or a full score row)."""
    scores = []
    for label in labels:
        if isinstance(label, (list, tuple)):
            scores.append(np.asarray(label, np.float32))
        else:
            row = np.full(len(LABELS), (1 - confidence) / (len(LABELS) - 1), np.float32)
            row[label] = confidence
            scores.append(row)
    return Window(
        pieces=pieces,
        unknown=unknown or [False] * len(pieces),
        offsets=np.asarray(spans, np.int32).reshape(-1, 2),
        scores=np.stack(scores),
        first_index=first_index,
    )


# "Jean-Pierre vit à New York." as a sentencepiece model might cut it.
TEXT = "Jean-Pierre vit à New York."
PIECES = ["▁Jean", "-", "Pierre", "▁vit", "▁à", "▁New", "▁Yo", "rk", "."]
SPANS = [(0, 4), (4, 5), (5, 11), (12, 15), (16, 17), (18, 21), (22, 24), (24, 26), (26, 27)]


def tag(aggregation, labels, **kwargs):
    found = EntityAggregator(LABELS, join, aggregation, kwargs.pop("labels_only", None))
    return found(TEXT, [window(TEXT, PIECES, SPANS, labels, **kwargs)])


def test_window_bounds_follow_the_overflow_rule():
    assert window_bounds(0, 5, 2) == []
    assert window_bounds(5, 5, 2) == [(0, 5)]
    assert window_bounds(6, 5, 2) == [(0, 5), (3, 6)]
    assert window_bounds(11, 5, 2) == [(0, 5), (3, 8), (6, 11)]
    assert window_bounds(12, 5, 0) == [(0, 5), (5, 10), (10, 12)]
    assert window_bounds(7, 5, 4) == [(0, 5), (1, 6), (2, 7)]
    for bad in ((5, 5), (5, -1)):
        with pytest.raises(ValueError, match="stride must be"):
            window_bounds(9, *bad)
    with pytest.raises(ValueError, match="at least one token"):
        window_bounds(9, 0, 0)


def test_special_frame():
    from textbatch.jobs.label import TINY_MODEL
    from textbatch.tokenizers import XLMRobertaTokenizer

    assert special_frame(XLMRobertaTokenizer.from_pretrained(TINY_MODEL)) == (1, 1)


def test_simple_groups_neighbours_and_b_starts_anew():
    # Jean/-/Pierre: B I I -> one PER; vit: O; à: I-LOC alone; New: B-LOC, Yo: B-LOC (new group), rk: I-LOC, ".": O
    found = tag("simple", [1, 2, 2, 0, 4, 3, 3, 4, 0])
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in found] == [
        ("PER", "Jean-Pierre", 0, 11),
        ("LOC", "à", 16, 17),
        ("LOC", "New", 18, 21),
        ("LOC", "York", 22, 26),
    ]
    assert all(abs(e["score"] - 0.9) < 1e-6 for e in found)
    assert TEXT[found[0]["start"] : found[0]["end"]] == "Jean-Pierre"


def test_none_keeps_tokens_with_their_pieces_and_indices():
    found = tag("none", [1, 2, 2, 0, 4, 3, 3, 4, 0], first_index=7)
    assert [(e["entity"], e["word"], e["index"]) for e in found] == [
        ("B-PER", "▁Jean", 7),
        ("I-PER", "-", 8),
        ("I-PER", "Pierre", 9),
        ("I-LOC", "▁à", 11),
        ("B-LOC", "▁New", 12),
        ("B-LOC", "▁Yo", 13),
        ("I-LOC", "rk", 14),
    ]


def test_word_strategies_label_whole_words():
    # "Jean" "-" "Pierre" are one word, and so are "Yo" "rk" "." (no space between): "Yo" says PER weakly, "rk"
    # and "." say I-LOC strongly.
    weak_per = [0.1, 0.5, 0.1, 0.1, 0.1, 0.1]
    labels = [1, 2, 2, 0, 0, 3, weak_per, 4, 4]
    first = tag("first", labels)
    assert [(e["entity_group"], e["start"], e["end"]) for e in first] == [("PER", 0, 11), ("LOC", 18, 21), ("PER", 22, 27)]
    assert [(e["entity_group"], e["start"], e["end"]) for e in tag("max", labels)][-1] == ("LOC", 18, 27)
    average = tag("average", labels)[-1]
    assert (average["entity_group"], average["start"]) == ("LOC", 18)
    assert abs(average["score"] - np.mean([0.9, (0.1 + 0.9 + 0.9) / 3])) < 1e-6  # the group's mean of word means
    # Words are joined as tokens twice over, as the reference does: "New" + "York." -> "NewYork."
    merged = tag("first", [0, 0, 0, 0, 0, 3, 4, 4, 0])
    assert [(e["word"], e["start"], e["end"]) for e in merged] == [("NewYork.", 18, 27)]


def test_labels_without_bio_prefix_continue_and_labels_only():
    found = tag("simple", [5, 5, 5, 0, 0, 1, 1, 2, 0])
    assert [(e["entity_group"], e["word"]) for e in found] == [("DATE", "Jean-Pierre"), ("PER", "New"), ("PER", "York")]
    assert [e["word"] for e in tag("simple", [5, 5, 5, 0, 0, 1, 1, 2, 0], labels_only=("B-PER",))] == ["New", "York"]
    assert [e["word"] for e in tag("none", [5, 5, 5, 0, 0, 1, 1, 2, 0], labels_only=("I-PER",))] == ["rk"]
    assert [e["word"] for e in tag("first", [5, 5, 5, 0, 0, 1, 1, 2, 0], labels_only=("DATE",))] == ["Jean-Pierre"]
    with pytest.raises(ValueError, match=r"does not have: \['B-ORG'\]"):
        EntityAggregator(LABELS, join, "simple", ("B-ORG",))
    with pytest.raises(ValueError, match="aggregation must be one of"):
        EntityAggregator(LABELS, join, "mean")


def test_unknown_tokens_take_their_text_and_start_a_word():
    text = "Ab😀c"
    pieces, spans = ["▁Ab", "<unk>", "c"], [(0, 2), (2, 3), (3, 4)]
    win = window(text, pieces, spans, [1, 2, 2], unknown=[False, True, False])
    found = EntityAggregator(LABELS, join, "none")(text, [win])
    assert [e["word"] for e in found] == ["▁Ab", "😀", "c"]
    # first: "😀" starts a word of its own though no space precedes it; "c" continues it
    words = EntityAggregator(LABELS, join, "first")
    assert [(e["word"], e["start"], e["end"]) for e in words(text, [win])] == [("Ab😀c", 0, 4)]
    assert [len(group) for group in _words(words, text, win)] == [1, 2]


def _words(aggregator, text, win):
    groups = []
    for token in aggregator.tokens(text, win):
        if groups and token.is_subword:
            groups[-1].append(token)
        else:
            groups.append([token])
    return groups


def test_overlapping_windows_keep_the_longer_then_the_surer_span():
    a = {"entity_group": "PER", "score": 0.5, "start": 0, "end": 4}
    b = {"entity_group": "PER", "score": 0.7, "start": 0, "end": 11}  # longer: wins over a
    c = {"entity_group": "LOC", "score": 0.6, "start": 18, "end": 21}
    d = {"entity_group": "LOC", "score": 0.8, "start": 18, "end": 21}  # as long, surer: wins over c
    e = {"entity_group": "LOC", "score": 0.8, "start": 22, "end": 26}
    assert merge_overlapping([c, a, e, b, d]) == [b, d, e]
    assert merge_overlapping([]) == []


def test_windows_are_merged_into_one_list():
    aggregator = EntityAggregator(LABELS, join, "simple")
    labels = [1, 2, 2, 0, 0, 3, 4, 4, 0]
    left = window(TEXT, PIECES[:6], SPANS[:6], labels[:6], first_index=1)  # ends inside "New York"
    right = window(TEXT, PIECES[4:], SPANS[4:], labels[4:], first_index=5, confidence=0.8)
    found = aggregator(TEXT, [left, right])
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in found] == [
        ("PER", "Jean-Pierre", 0, 11),
        ("LOC", "New York", 18, 26),  # the right window's longer span
    ]


def test_softmax_and_tags():
    scores = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]], np.float32))
    assert scores.dtype == np.float32 and np.allclose(scores.sum(-1), 1) and scores[1, 0] == 1.0
    assert split_tag("B-PER") == ("B", "PER") and split_tag("I-B-X") == ("I", "B-X") and split_tag("O") == ("I", "O")


# FlauBERT's BPE: no character offsets, "</w>" ends the last piece of each word.
def bpe_join(tokens):
    return "".join(tokens).replace("</w>", " ").strip()


def bpe_window(pieces, labels, first_index, confidence=0.9):
    scores = window(TEXT, pieces, [(0, 0)] * len(pieces), labels, confidence).scores
    unknown = [piece == "<unk>" for piece in pieces]
    continues = continues_by_end_marks(pieces, unknown, "</w>", frozenset({"<unk>", "<special3>"}))
    return Window(pieces, unknown, None, scores, first_index, continues)


def test_end_of_word_marks_say_which_tokens_continue_a_word():
    pieces = ["Jean</w>", "-</w>", "Pi", "erre</w>", "<unk>", "vit</w>", "ren", "<unk>", "tré</w>", "<special3>", "à</w>"]
    unknown = [piece == "<unk>" for piece in pieces]
    flags = continues_by_end_marks(pieces, unknown, "</w>", frozenset({"<unk>", "<special3>"}))
    # "erre" ends "Pi"'s word; an unknown token continues an open word ("ren") but what follows it starts anew
    assert [piece for piece, flag in zip(pieces, flags) if flag] == ["erre</w>", "<unk>"]


def test_without_offsets_words_come_from_the_marks_and_spans_are_none():
    found = EntityAggregator(LABELS, bpe_join, "first")(None, [bpe_window(["Pi", "erre</w>", "vit</w>"], [1, 3, 0], 1)])
    assert found == [{"entity_group": "PER", "score": pytest.approx(0.9), "word": "Pierre", "start": None, "end": None}]


def test_windows_without_offsets_are_merged_by_token_positions():
    aggregator = EntityAggregator(LABELS, bpe_join, "simple")
    left = bpe_window(["Jean</w>", "vit</w>", "à</w>"], [1, 0, 3], first_index=1)  # ends inside "à Paris"
    right = bpe_window(["vit</w>", "à</w>", "Paris</w>"], [0, 3, 4], first_index=2, confidence=0.8)
    found = aggregator(None, [left, right])
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in found] == [
        ("PER", "Jean", None, None),
        ("LOC", "à Paris", None, None),  # the right window's longer span, in tokens
    ]
    assert "_tokens" not in found[0]

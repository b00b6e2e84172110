"""Per-token label scores -> entity spans, with the meaning of transformers' token-classification pipeline.

Pure Python and numpy (no Ray, no JAX), so the rules can be read and tested on their own. For one window of tokens
(its text tokens only, no special tokens):

1. Each token gets its scores (softmax over the labels), its piece (`"▁Paris"`), its character span in the text,
   and a guess whether it continues the previous word: it does when it does not start the text and neither it nor
   the character before it is a space (the reference's heuristic for tokenizers that do not mark word starts, such
   as sentencepiece ones). An unknown token's word is its text, and it always starts a word.
   A tokenizer without character offsets (FlauBERT's: Moses rewrites the text first) gives no spans: `start` and
   `end` are None, as the reference's pipeline gives them with such a (slow) tokenizer, and an unknown token's word
   is its piece (`<unk>`). Whether a token continues a word then comes with the window (`continues`, from the BPE
   end-of-word marks: see word_boundaries.py); without it no token does.
2. The aggregation strategy (`--aggregation`):
   - `none`: one result per token: `{entity, score, index, word, start, end}` (`entity` is the token's label,
     `index` its position in the framed sequence, `<s>` being 0, `word` its piece);
   - `simple`: each token labelled on its own, then grouped;
   - `first` / `average` / `max`: the tokens of a word are first merged into one, labelled by the first token's
     scores / the mean of their scores / the token with the highest score, then grouped.
   Grouping joins neighbours of the same entity type unless the later one is a `B-` tag; a group is
   `{entity_group, score, word, start, end}` with the type without its `B-`/`I-` prefix and the mean score.
   Words are joined as the tokenizer joins tokens into text (for sentencepiece: "▁" becomes a space, and not at the
   start), applied to the word strings once more when they are grouped, exactly as the reference does; so with
   `first`/`average`/`max`, a multi-word group of a sentencepiece model reads "NewYork" while `start`/`end` span
   "New York". Use `start`/`end` for the exact text.
3. Results labelled `O` are dropped.

A text tagged in several overlapping windows (windows.py) has its windows' results put together as the reference
puts its chunks together: sorted by start, and of two results that overlap the longer one is kept (or, as long as
each other, the one with the higher score). With `none`, which the reference refuses to combine with windows, a token
seen in two windows thereby keeps its higher-scored prediction; its `index` counts from the start of the whole text.
Without character offsets, starts, ends and lengths are counted in tokens of the whole text instead (the reference
cannot window such texts at all).

Finally `labels_only` keeps only results with those labels: with `none` a token's `entity` must be listed; a group
is kept when its type is listed with or without a `B-`/`I-` prefix (`PER`, `B-PER` or `I-PER` keep `PER` groups).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

AGGREGATIONS = ("none", "simple", "first", "average", "max")
WORD_AGGREGATIONS = ("first", "average", "max")  # those that need to know where words start
IGNORED_LABELS = ("O",)
TOKENS = "_tokens"  # an internal key: [first, stop) token indices in the whole text, for merging without offsets


@dataclasses.dataclass
class Token:
    """One text token of a window, before aggregation."""

    index: int  # position in the framed sequence of the whole text (<s> = 0)
    word: str
    scores: np.ndarray  # [labels] float32, summing to 1
    start: int | None  # character span in the text; None without offsets
    end: int | None
    is_subword: bool


@dataclasses.dataclass(frozen=True)
class Window:
    """What the model and the tokenizer say about one window of a text."""

    pieces: Sequence[str]  # the tokens' pieces, e.g. "▁Paris"
    unknown: Sequence[bool]  # whether each token is the unknown token
    offsets: np.ndarray | None  # [tokens, 2] character spans in the text; None when the tokenizer has none
    scores: np.ndarray  # [tokens, labels] float32
    first_index: int  # index of the window's first token in the framed sequence of the whole text
    continues: Sequence[bool] | None = None  # without offsets: whether each token continues the previous word


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in the logits' precision, as the reference computes it."""
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def split_tag(label: str) -> tuple[str, str]:
    """("B" or "I", the entity type): "B-PER" -> ("B", "PER"); a label without a prefix continues: ("I", label)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


class EntityAggregator:
    """Callable: (text, windows) -> the text's list of entity dicts.

    `id2label` maps label ids to names; `tokens_to_string` joins token pieces into text the way the tokenizer does.
    """

    def __init__(
        self,
        id2label: dict[int, str],
        tokens_to_string: Callable[[list[str]], str],
        aggregation: str = "simple",
        labels_only: Iterable[str] | None = None,
    ):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.id2label = {int(key): value for key, value in id2label.items()}
        self.labels = [self.id2label[index] for index in range(len(self.id2label))]
        self.tokens_to_string = tokens_to_string
        self.aggregation = aggregation
        self.labels_only = None if labels_only is None else frozenset(labels_only)
        if self.labels_only is not None:
            known = set(self.labels) | {split_tag(label)[1] for label in self.labels}
            unknown = sorted(self.labels_only - known)
            if unknown:
                raise ValueError(f"labels_only names labels the model does not have: {unknown}; it has {self.labels}")

    # -- one window ----------------------------------------------------------------------------------------------
    def tokens(self, text: str, window: Window) -> list[Token]:
        if window.offsets is None:
            return self.tokens_without_offsets(window)
        tokens = []
        for slot, (piece, unknown) in enumerate(zip(window.pieces, window.unknown)):
            start, end = int(window.offsets[slot, 0]), int(window.offsets[slot, 1])
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            word = piece
            if unknown:
                word, is_subword = text[start:end], False
            tokens.append(Token(window.first_index + slot, word, window.scores[slot], start, end, is_subword))
        return tokens

    @staticmethod
    def tokens_without_offsets(window: Window) -> list[Token]:
        continues = window.continues if window.continues is not None else [False] * len(window.pieces)
        return [
            Token(window.first_index + slot, piece, window.scores[slot], None, None, bool(continues[slot]))
            for slot, piece in enumerate(window.pieces)
        ]

    def label_tokens(self, tokens: list[Token]) -> list[dict]:
        """`none` and `simple`: each token's own best label."""
        entities = []
        for token in tokens:
            best = int(token.scores.argmax())
            entities.append(
                {
                    "entity": self.labels[best],
                    "score": token.scores[best],
                    "index": token.index,
                    "word": token.word,
                    "start": token.start,
                    "end": token.end,
                    TOKENS: (token.index, token.index + 1),
                }
            )
        return entities

    def label_word(self, tokens: list[Token]) -> dict:
        """`first` / `average` / `max`: one label for the tokens of one word."""
        if self.aggregation == "first":
            scores = tokens[0].scores
        elif self.aggregation == "max":
            scores = max(tokens, key=lambda token: token.scores.max()).scores  # the first of equal maxima
        else:
            scores = np.nanmean(np.stack([token.scores for token in tokens]), axis=0)
        best = int(scores.argmax())
        return {
            "entity": self.labels[best],
            "score": scores[best],
            "word": self.tokens_to_string([token.word for token in tokens]),
            "start": tokens[0].start,
            "end": tokens[-1].end,
            TOKENS: (tokens[0].index, tokens[-1].index + 1),
        }

    def label_words(self, tokens: list[Token]) -> list[dict]:
        words: list[list[Token]] = []
        for token in tokens:
            if words and token.is_subword:
                words[-1].append(token)
            else:
                words.append([token])
        return [self.label_word(word) for word in words]

    def group(self, entities: list[dict]) -> list[dict]:
        """Join neighbours of one entity type into groups (a `B-` tag starts a new group)."""
        groups: list[list[dict]] = []
        for entity in entities:
            if groups:
                bi, kind = split_tag(entity["entity"])
                if kind == split_tag(groups[-1][-1]["entity"])[1] and bi != "B":
                    groups[-1].append(entity)
                    continue
            groups.append([entity])
        return [
            {
                "entity_group": members[0]["entity"].split("-", 1)[-1],
                "score": np.mean(np.nanmean([member["score"] for member in members])),
                "word": self.tokens_to_string([member["word"] for member in members]),
                "start": members[0]["start"],
                "end": members[-1]["end"],
                TOKENS: (members[0][TOKENS][0], members[-1][TOKENS][1]),
            }
            for members in groups
        ]

    def window_entities(self, text: str, window: Window) -> list[dict]:
        tokens = self.tokens(text, window)
        if self.aggregation in ("none", "simple"):
            entities = self.label_tokens(tokens)
        else:
            entities = self.label_words(tokens)
        if self.aggregation != "none":
            entities = self.group(entities)
        key = "entity" if self.aggregation == "none" else "entity_group"
        return [entity for entity in entities if entity[key] not in IGNORED_LABELS]

    # -- a whole text --------------------------------------------------------------------------------------------
    def __call__(self, text: str, windows: Sequence[Window]) -> list[dict]:
        per_window = [self.window_entities(text, window) for window in windows]
        if len(per_window) <= 1:  # a text without tokens has no window
            entities = per_window[0] if per_window else []
        else:
            span = character_span if windows[0].offsets is not None else token_span
            entities = merge_overlapping([entity for found in per_window for entity in found], span)
        return [public(entity) for entity in entities if self.keep(entity)]

    def keep(self, entity: dict) -> bool:
        if self.labels_only is None:
            return True
        if "entity" in entity:
            return entity["entity"] in self.labels_only
        kind = entity["entity_group"]
        return bool({kind, f"B-{kind}", f"I-{kind}"} & self.labels_only)


def public(entity: dict) -> dict:
    """The entity without its internal keys."""
    return {key: value for key, value in entity.items() if key != TOKENS}


def character_span(entity: dict) -> tuple[int, int]:
    return entity["start"], entity["end"]


def token_span(entity: dict) -> tuple[int, int]:
    return entity[TOKENS]


def merge_overlapping(
    entities: list[dict], span: Callable[[dict], tuple[int, int]] = character_span
) -> list[dict]:
    """Results of overlapping windows -> one list: sorted by start; of two that overlap, keep the longer one (equal
    lengths: the higher score; equal scores: the earlier window's). `span` gives a result's [start, end): in
    characters, or in tokens for a tokenizer without offsets."""
    if not entities:
        return []
    ordered = sorted(entities, key=lambda entity: span(entity)[0])
    merged = []
    kept = ordered[0]
    for entity in ordered:
        (start, end), (kept_start, kept_end) = span(entity), span(kept)
        if kept_start <= start < kept_end:
            length, kept_length = end - start, kept_end - kept_start
            if length > kept_length or (length == kept_length and entity["score"] > kept["score"]):
                kept = entity
        else:
            merged.append(kept)
            kept = entity
    merged.append(kept)
    return merged

"""Where words start, for the NER step's word-level aggregations ("first", "average", "max"), when the tokenizer
gives no character offsets.

With offsets, entities.py guesses word starts from the text around each token, as transformers' pipeline does.
FlauBERT's tokenizer has no offsets (Moses rewrites the text before splitting it), but its BPE pieces say it
exactly: the last piece of every Moses word ends with "</w>" (`tokenizer.end_of_word_suffix`), so a token continues
a word when the token before it does not end one. transformers' pipeline refuses word aggregations with such a
(slow) tokenizer; we use the marks instead. A tokenizer with neither offsets nor end-of-word marks cannot tell words
apart: word aggregations are refused for it, naming the ones that work.

Pure functions, no Ray, no JAX.
"""

from __future__ import annotations

from collections.abc import Sequence

from textbatch.operators.entities import AGGREGATIONS, WORD_AGGREGATIONS
from textbatch.operators.tokenize import offsets_unavailable


def end_of_word_suffix(tokenizer) -> str | None:
    """The mark that ends the last piece of each word ("</w>" for FlauBERT's BPE), or None."""
    return getattr(tokenizer, "end_of_word_suffix", None) or None


def check_word_aggregation(tokenizer, aggregation: str, where: str) -> None:
    """A ValueError when `aggregation` needs word starts that `tokenizer` (of the checkpoint at `where`) cannot give:
    neither character offsets nor end-of-word marks."""
    if aggregation not in WORD_AGGREGATIONS or end_of_word_suffix(tokenizer) is not None:
        return
    why = offsets_unavailable(tokenizer)
    if why is not None:
        usable = [name for name in AGGREGATIONS if name not in WORD_AGGREGATIONS]
        raise ValueError(
            f"aggregation {aggregation!r} labels whole words, but the {type(tokenizer).__name__} of {where} cannot "
            f"say where words start: it gives no character offsets ({why}) and marks no word ends; use "
            f"{' or '.join(usable)}"
        )


def continues_by_end_marks(
    pieces: Sequence[str], unknown: Sequence[bool], suffix: str, specials: frozenset[str]
) -> list[bool]:
    """Whether each token continues the word of the token before it: it does when that token is a piece that does
    not end with `suffix`. An unknown token follows the same rule, but whether its lost piece ended a word cannot be
    known, so the token after it starts a new one; any other special token is a word of its own."""
    flags = []
    for slot, piece in enumerate(pieces):
        before = pieces[slot - 1] if slot else None
        flags.append(
            before is not None
            and (unknown[slot] or piece not in specials)
            and before not in specials
            and not before.endswith(suffix)
        )
    return flags

"""The two halves of XLM/FlauBERT tokenization: Moses pre-processing (text -> words) and BPE (word -> pieces).

Moses (through sacremoses, in the order the reference applies it):
  map CJK / full-width punctuation to ASCII (Moses' replace-unicode-punctuation.perl table)
  -> sacremoses' punctuation normaliser (quotes, spacing around French punctuation, ...)
  -> drop every character of Unicode category C* (controls, format characters, unassigned: tabs and newlines too)
  -> sacremoses' tokenizer, without XML escaping.
BPE: a word is split into characters, the last one marked with "</w>", and adjacent symbols are merged, lowest
merge rank first, until no ranked pair is left. Results are cached per word.
"""

from __future__ import annotations

import re
import unicodedata

# Moses' replace-unicode-punctuation.perl, single characters (the two full stops are handled by regex below).
_UNICODE_PUNCT = str.maketrans(
    {
        "，": ",",
        "、": ",",
        "”": '"',
        "“": '"',
        "∶": ":",
        "：": ":",
        "？": "?",
        "《": '"',
        "》": '"',
        "）": ")",
        "！": "!",
        "（": "(",
        "；": ";",
        "」": '"',
        "「": '"',
        "～": "~",
        "’": "'",
        "…": "...",
        "━": "-",
        "〈": "<",
        "〉": ">",
        "【": "[",
        "】": "]",
        "％": "%",
        **{chr(0xFF10 + digit): str(digit) for digit in range(10)},  # full-width digits
    }
)
# The ideographic and the full-width full stop swallow the whitespace after them.
_IDEOGRAPHIC_STOP = re.compile(r"。\s*")
_FULLWIDTH_STOP = re.compile(r"．\s*")


def replace_unicode_punctuation(text: str) -> str:
    text = _IDEOGRAPHIC_STOP.sub(". ", text)
    text = _FULLWIDTH_STOP.sub(". ", text)
    return text.translate(_UNICODE_PUNCT)


def remove_non_printing(text: str) -> str:
    """Drops characters of Unicode category C* (Cc, Cf, Cs, Co, Cn), as Moses' remove-non-printing-char.perl."""
    if text.isprintable():  # fast path: no C* character (isprintable is False for any of them)
        return text
    return "".join(char for char in text if not unicodedata.category(char).startswith("C"))


class MosesPreTokenizer:
    """Text -> words, the way XLM-family tokenizers run Moses for one language."""

    def __init__(self, lang: str):
        try:
            import sacremoses
        except ImportError:
            raise ImportError("FlauBERT's tokenizer needs sacremoses: pip install sacremoses") from None
        self.lang = lang
        self._normalizer = sacremoses.MosesPunctNormalizer(lang=lang)
        self._tokenizer = sacremoses.MosesTokenizer(lang=lang)

    def normalize(self, text: str) -> str:
        text = replace_unicode_punctuation(text)
        text = self._normalizer.normalize(text)
        return remove_non_printing(text)

    def words(self, text: str) -> list[str]:
        """The Moses tokens of already normalised text (no escaping of &, <, > ...)."""
        return self._tokenizer.tokenize(text, return_str=False, escape=False)


END_OF_WORD = "</w>"


def read_merges(text: str) -> dict[tuple[str, str], int]:
    """Merge ranks from the text of merges.txt, read as the reference reads it.

    The reference keeps every line but the text after the last newline, ranks lines by position (so a header
    line takes rank 0 and a repeated pair keeps its later rank) and uses the first two whitespace-separated
    fields. Lines with fewer than two fields can never match a pair and are only counted.
    """
    ranks: dict[tuple[str, str], int] = {}
    for rank, line in enumerate(text.split("\n")[:-1]):
        fields = line.split()
        if len(fields) >= 2:
            ranks[(fields[0], fields[1])] = rank
    return ranks


class BytePairEncoder:
    """Word -> BPE pieces over `</w>`-marked merges, with a bounded cache."""

    def __init__(self, ranks: dict[tuple[str, str], int], cache_size: int = 200_000):
        self.ranks = ranks
        self.cache_size = cache_size
        self._cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        pieces = self._cache.get(word)
        if pieces is None:
            pieces = self._merge(word)
            if len(self._cache) >= self.cache_size:  # a corpus-long run must not grow without bound
                self._cache.clear()
            self._cache[word] = pieces
        return pieces

    def _merge(self, word: str) -> tuple[str, ...]:
        symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
        ranks = self.ranks
        while len(symbols) > 1:
            best, best_rank = None, None
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = pair, rank
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(symbols):  # left to right, non-overlapping
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return tuple(symbols)

"""Special tokens written inside text: what they are and how they are found, as transformers' tokenizers do it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

# The characters Rust's `char::is_whitespace` accepts (Unicode White_Space). Python's `str.isspace` also accepts
# U+001C..U+001F, which the reference does not treat as whitespace, so the set is spelled out.
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_RUST_WHITESPACE_SET = frozenset(RUST_WHITESPACE)


@dataclasses.dataclass(frozen=True)
class AddedToken:
    """A token matched in raw text before any normalisation (special tokens such as "<mask>").

    `lstrip` / `rstrip` let the token swallow whitespace on its left / right (XLM-R's hub config sets lstrip on
    "<mask>"); `single_word` only matches when no word character touches it.
    """

    content: str
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    special: bool = True

    def __str__(self) -> str:
        return self.content

    @classmethod
    def coerce(cls, value: str | AddedToken | dict, special: bool = True) -> AddedToken:
        """A token from a string, an AddedToken, or a config dict like {"content": "<mask>", "lstrip": true}."""
        if isinstance(value, AddedToken):
            return value
        if isinstance(value, str):
            return cls(value, special=special)
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            return cls(
                value["content"],
                lstrip=bool(value.get("lstrip", False)),
                rstrip=bool(value.get("rstrip", False)),
                single_word=bool(value.get("single_word", False)),
                special=bool(value.get("special", special)),
            )
        raise TypeError(f"a token must be a str, an AddedToken or a dict with 'content', got {value!r}")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


class AddedTokenSplitter:
    """Finds added tokens in raw text: leftmost match, longest first, never overlapping (as the reference does).

    `split` returns (start, end, id) spans that cover the text; id is None for ordinary text in between.
    """

    def __init__(self, tokens: Iterable[tuple[AddedToken, int]]):
        self.tokens: dict[str, tuple[AddedToken, int]] = {}
        for token, token_id in tokens:
            self.tokens[token.content] = (token, token_id)
        contents = sorted((c for c in self.tokens if c), key=len, reverse=True)
        # Longest alternative first makes Python's leftmost-first alternation leftmost-longest.
        self._pattern = re.compile("|".join(re.escape(c) for c in contents)) if contents else None
        self._first_chars = frozenset(c[0] for c in contents)
        self._has_non_special = any(not t.special for t, _ in self.tokens.values())

    def split(self, text: str, split_special_tokens: bool = False) -> list[tuple[int, int, int | None]]:
        if self._pattern is None or not any(c in text for c in self._first_chars):
            return [(0, len(text), None)]
        if split_special_tokens and not self._has_non_special:
            return [(0, len(text), None)]
        spans: list[tuple[int, int, int | None]] = []
        previous_end = 0
        for match in self._pattern.finditer(text):
            token, token_id = self.tokens[match.group()]
            if split_special_tokens and token.special:
                continue
            start, end = match.span()
            if token.single_word:
                if (start > 0 and _is_word_char(text[start - 1])) or (end < len(text) and _is_word_char(text[end])):
                    continue
            if token.lstrip:
                new_start = start
                while new_start > 0 and text[new_start - 1] in _RUST_WHITESPACE_SET:
                    new_start -= 1
                start = max(new_start, previous_end)
            if token.rstrip:
                while end < len(text) and text[end] in _RUST_WHITESPACE_SET:
                    end += 1
            if previous_end < start:
                spans.append((previous_end, start, None))
            spans.append((start, end, token_id))
            previous_end = end
        if previous_end < len(text):
            spans.append((previous_end, len(text), None))
        return spans

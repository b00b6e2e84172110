"""The shared pieces on their own: truncation arithmetic, special-token splitting, BatchEncoding, strategy rules."""

from __future__ import annotations

import pickle

import pytest

from textbatch.tokenizers.added_tokens import AddedToken, AddedTokenSplitter
from textbatch.tokenizers.base import BatchEncoding, _resolve_strategies, truncated_lengths


@pytest.mark.parametrize(
    ("len_a", "len_b", "budget", "expected"),
    [
        (10, None, 4, (4, None)),
        (3, None, 4, (3, None)),
        (10, 3, 8, (5, 3)),  # the shorter one is kept whole, the longer one takes the rest
        (3, 10, 8, (3, 5)),
        (10, 10, 7, (3, 4)),  # equal: halves, the second gets the odd token
        (10, 9, 7, (4, 3)),  # the longer one gets the odd token
        (9, 10, 7, (3, 4)),
        (6, 5, 9, (5, 4)),  # shorter (5) above half: cut to 4 and 5 (the longer one keeps the extra)
        (2, 2, 4, (2, 2)),
        (5, 5, 0, (0, 0)),
        (5, None, 0, (0, None)),
    ],
)
def test_longest_first_arithmetic(len_a, len_b, budget, expected):
    assert truncated_lengths(len_a, len_b, budget, "longest_first") == expected


def test_only_first_and_only_second():
    assert truncated_lengths(10, 4, 8, "only_first") == (4, 4)
    assert truncated_lengths(4, 10, 8, "only_second") == (4, 4)
    with pytest.raises(ValueError, match="only_first.*first sequence has 4 tokens but 6 must go"):
        truncated_lengths(4, 10, 8, "only_first")
    with pytest.raises(ValueError, match="needs a second sequence"):
        truncated_lengths(10, None, 8, "only_second")
    assert truncated_lengths(5, None, 8, "only_second") == (5, None)  # nothing to cut: no error


def _split(tokens, text, split_special_tokens=False):
    splitter = AddedTokenSplitter([(token, i) for i, token in enumerate(tokens)])
    return [(text[s:e], i) for s, e, i in splitter.split(text, split_special_tokens)]


def test_splitter_is_leftmost_longest_and_covers_the_text():
    tokens = [AddedToken("<s>"), AddedToken("<s>x"), AddedToken("</s>")]
    assert _split(tokens, "a<s>xb</s><s>") == [("a", None), ("<s>x", 1), ("b", None), ("</s>", 2), ("<s>", 0)]
    assert _split(tokens, "no tokens here") == [("no tokens here", None)]
    assert _split(tokens, "") == [("", None)]


def test_splitter_strips_whitespace_but_not_past_the_previous_token():
    tokens = [AddedToken("<m>", lstrip=True), AddedToken("<r>", rstrip=True)]
    assert _split(tokens, "a \t <m> b") == [("a", None), (" \t <m>", 0), (" b", None)]
    assert _split(tokens, "a <r>  <m>x") == [("a ", None), ("<r>  ", 1), ("<m>", 0), ("x", None)]
    assert _split(tokens, "\u00a0<m>") == [("\u00a0<m>", 0)]
    assert _split(tokens, "\x1c<m>") == [("\x1c", None), ("<m>", 0)]  # not whitespace for the reference


def test_splitter_single_word_and_split_special_tokens():
    tokens = [AddedToken("<w>", single_word=True), AddedToken("<u>", special=False), AddedToken("<s>")]
    assert _split(tokens, "a <w> b<w>") == [("a ", None), ("<w>", 0), (" b<w>", None)]
    assert _split(tokens, "<s><u>", split_special_tokens=True) == [("<s>", None), ("<u>", 1)]
    assert _split([AddedToken("<s>")], "x<s>", split_special_tokens=True) == [("x<s>", None)]


def test_added_token_from_config_dict():
    token = AddedToken.coerce({"content": "<mask>", "lstrip": True, "normalized": False})
    assert token == AddedToken("<mask>", lstrip=True)
    assert str(token) == "<mask>"
    with pytest.raises(TypeError, match="content"):
        AddedToken.coerce({"lstrip": True})


def test_batch_encoding_keys_are_attributes():
    encoding = BatchEncoding({"input_ids": [[5, 6]], "attention_mask": [[1, 1]]})
    assert encoding.input_ids == [[5, 6]] and encoding["attention_mask"] == [[1, 1]]
    with pytest.raises(AttributeError, match="has no key 'offset_mapping'"):
        encoding.offset_mapping
    clone = pickle.loads(pickle.dumps(encoding))
    assert clone == encoding and isinstance(clone, BatchEncoding)


def test_strategy_rules():
    assert _resolve_strategies(False, None, 7, 512) == ("do_not_pad", "longest_first", 7)  # max_length alone
    assert _resolve_strategies(True, None, 7, 512) == ("longest", "do_not_truncate", 7)
    assert _resolve_strategies("max_length", None, None, 512) == ("max_length", "do_not_truncate", 512)
    assert _resolve_strategies("max_length", True, None, int(1e30)) == ("do_not_pad", "do_not_truncate", None)
    assert _resolve_strategies(False, True, None, 512) == ("do_not_pad", "longest_first", 512)
    assert _resolve_strategies(False, False, 9, 512) == ("do_not_pad", "do_not_truncate", 9)

"""Truncation strategies, padding modes and tensors equal transformers' (ids, masks, offsets, lengths)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.tokenizers.compare import assert_same_encoding

FULL = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)
MAX_LENGTHS = [0, 1, 2, 3, 4, 5, 7, 12, 33]


def same_or_both_fail(ref, ours, *args, **kwargs):
    """Either both give the same encoding, or the reference raises and ours raises ValueError."""
    try:
        expected = ref(*args, **kwargs)
    except Exception:  # the reference raises a bare Exception from Rust for impossible truncations
        with pytest.raises(ValueError):
            ours(*args, **kwargs)
        return False
    assert_same_encoding(expected, ours(*args, **kwargs), f"{args!r} {kwargs!r}")
    return True


@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first"])
@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_truncate_single_texts(ours, ref, lines, truncation, max_length):
    assert same_or_both_fail(ref, ours, lines, truncation=truncation, max_length=max_length, **FULL)


@pytest.mark.parametrize("max_length", MAX_LENGTHS + [64])
def test_truncate_pairs_longest_first(ours, ref, pairs, max_length):
    if max_length < 20:
        # The reference builds overflow windows for pairs even when not asked to (quadratic for tiny budgets and
        # long texts: ~10 ms a pair), so small budgets use a third of the shorter pairs; 33 and 64 take them all.
        pairs = [(a, b) for a, b in pairs if len(a) + len(b) < 160][::3]
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    assert same_or_both_fail(ref, ours, first, second, truncation="longest_first", max_length=max_length, **FULL)


@pytest.mark.parametrize("truncation", ["only_first", "only_second"])
@pytest.mark.parametrize("max_length", [4, 6, 9, 16, 40])
def test_truncate_pairs_only_one_side(ours, ref, pairs, truncation, max_length):
    """Row by row, since one impossible row makes the whole batch fail (in both)."""
    outcomes = [same_or_both_fail(ref, ours, a, b, truncation=truncation, max_length=max_length) for a, b in pairs[::3]]
    assert any(outcomes), "some rows must be truncatable"
    if 4 < max_length <= 9:  # (4 leaves a budget of 0, which the reference special-cases: both emptied)
        assert not all(outcomes), "with a small budget some rows must be impossible"


def test_only_second_without_a_pair_fails_only_when_cutting(ours, ref):
    assert same_or_both_fail(ref, ours, "short", truncation="only_second", max_length=50)
    long_text = "a text long enough to need cutting"
    assert not same_or_both_fail(ref, ours, long_text, truncation="only_second", max_length=4)


def test_truncation_left_side(xlmr_folder, reference_loader, pairs):
    from textbatch.tokenizers import XLMRobertaTokenizer

    ours = XLMRobertaTokenizer.from_pretrained(xlmr_folder, truncation_side="left")
    ref = reference_loader(xlmr_folder)
    ref.truncation_side = "left"
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    assert same_or_both_fail(ref, ours, first, second, truncation=True, max_length=11, **FULL)


def test_max_length_alone_truncates_and_model_max_length_is_the_default(ours, ref, lines):
    assert same_or_both_fail(ref, ours, lines, max_length=9)  # the reference's backward-compatible rule
    long_text = " ".join(lines)
    assert len(ref(long_text)["input_ids"]) > 512
    assert ours.model_max_length == ref.model_max_length == 512
    for kwargs in (dict(truncation=True), dict(padding="max_length"), dict(truncation=True, padding="max_length")):
        assert same_or_both_fail(ref, ours, [long_text, "short"], **kwargs)
    assert len(ours(long_text, truncation=True)["input_ids"]) == 512


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=True),
        dict(padding="longest"),
        dict(padding="max_length", max_length=24),
        dict(padding="max_length", max_length=24, truncation=True),
        dict(padding=True, truncation=True, max_length=10),
        dict(padding=True, pad_to_multiple_of=8),
        dict(padding=True, padding_side="left"),
        dict(padding="max_length", max_length=30, padding_side="left", truncation="longest_first"),
        dict(padding=True, return_attention_mask=False),
        dict(padding=True, return_token_type_ids=True),
        dict(padding=False),
    ],
    ids=lambda kwargs: ",".join(f"{k}={v}" for k, v in kwargs.items()),
)
def test_padding_modes(ours, ref, lines, pairs, kwargs):
    batch = lines[100:160]
    assert same_or_both_fail(ref, ours, batch, **kwargs, **FULL)
    first, second = [a for a, _ in pairs[:40]], [b for _, b in pairs[:40]]
    assert same_or_both_fail(ref, ours, first, second, **kwargs, **FULL)


def test_padding_a_single_text(ours, ref):
    for kwargs in (dict(padding=True), dict(padding="max_length", max_length=12)):
        assert same_or_both_fail(ref, ours, "Hi <mask> there", **kwargs, **FULL)


@pytest.mark.parametrize("pair", [False, True])
def test_numpy_tensors(ours, ref, pairs, pair):
    first, second = [a for a, _ in pairs[200:260]], [b for _, b in pairs[200:260]]
    args = (first, second) if pair else (first,)
    kwargs = dict(padding=True, return_tensors="np", return_offsets_mapping=True, truncation=True, max_length=20)
    expected, actual = ref(*args, **kwargs), ours(*args, **kwargs)
    assert list(actual) == list(expected)
    for key in expected:
        assert isinstance(actual[key], np.ndarray)
        assert actual[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)
    assert actual.input_ids.shape == (60, 20)
    assert actual.offset_mapping.shape == (60, 20, 2)


def test_single_text_tensors_keep_a_batch_dimension(ours, ref):
    expected = ref("Bonjour à tous", return_tensors="np")
    actual = ours("Bonjour à tous", return_tensors="np")
    np.testing.assert_array_equal(actual["input_ids"], expected["input_ids"])
    assert actual["input_ids"].ndim == 2


def test_jax_tensors(ours, ref, lines):
    expected = ref(lines[:50], padding=True, return_tensors="np")
    actual = ours(lines[:50], padding=True, return_tensors="jax")
    assert isinstance(actual["input_ids"], jax.Array) and isinstance(actual.attention_mask, jax.Array)
    np.testing.assert_array_equal(np.asarray(actual["input_ids"]), expected["input_ids"])
    np.testing.assert_array_equal(np.asarray(actual["attention_mask"]), expected["attention_mask"])


def test_ragged_tensors_are_refused(ours, lines):
    with pytest.raises(ValueError, match="padding=True"):
        ours(lines[:10], return_tensors="np")
    with pytest.raises(ValueError, match="return_tensors"):
        ours(lines[:10], padding=True, return_tensors="pt")


def test_empty_text_pair_counts_as_no_pair_for_one_text(ours, ref):
    assert_same_encoding(ref("hello", ""), ours("hello", ""))
    assert_same_encoding(ref(["hello"], [""]), ours(["hello"], [""]))
    assert ours(["hello"], [""])["input_ids"][0].count(ours.eos_token_id) == 3


def test_empty_batch(ours):
    out = ours([], padding=True, return_offsets_mapping=True)
    assert out["input_ids"] == [] and out["attention_mask"] == [] and out["offset_mapping"] == []


def test_bad_arguments_are_named(ours):
    with pytest.raises(ValueError, match="text has 2 items but text_pair has 1"):
        ours(["a", "b"], ["c"])
    with pytest.raises(TypeError, match=r"text\[1\] must be a str"):
        ours(["a", 3])
    with pytest.raises(TypeError, match="text_pair must be a list"):
        ours(["a"], "b")
    with pytest.raises(ValueError, match="padding must be"):
        ours("a", padding="shortest")
    with pytest.raises(ValueError, match="truncation must be"):
        ours("a", truncation="only_third")
    with pytest.raises(ValueError, match="max_length must be"):
        ours("a", max_length=-1)

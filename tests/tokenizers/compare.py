"""Comparing our BatchEncoding with the reference's, with a message that shows the first differing row."""

from __future__ import annotations

import pytest


def assert_same_encoding(expected, actual, context: str = "") -> None:
    assert list(actual.keys()) == list(expected.keys()), context
    for key in expected:
        want, got = expected[key], actual[key]
        if want != got:
            rows = [i for i, (w, g) in enumerate(zip(want, got)) if w != g] if isinstance(want, list) else []
            first = rows[0] if rows else None
            detail = f"row {first}: want {want[first]!r}\n got {got[first]!r}" if rows else f"{want!r} != {got!r}"
            pytest.fail(f"{context} key {key!r} differs ({len(rows)} rows); {detail}")

"""decode / batch_decode equal transformers' (with and without special tokens, with the hub's clean-up)."""

from __future__ import annotations

import random

import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture(params=[("ours", "ref"), ("ours_hub", "ref_hub")], ids=["plain", "hub_config"])
def both(request):
    return tuple(request.getfixturevalue(name) for name in request.param)


@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_decode_encoded_corpus(both, lines, pairs, skip_special_tokens):
    ours, ref = both
    encoded = ref(lines)["input_ids"] + ref([a for a, _ in pairs], [b for _, b in pairs])["input_ids"]
    for ids in encoded:
        expected = ref.decode(ids, skip_special_tokens=skip_special_tokens)
        assert ours.decode(ids, skip_special_tokens=skip_special_tokens) == expected, ids


def test_batch_decode(both, lines):
    ours, ref = both
    encoded = ref(lines[:120], padding=True)["input_ids"]
    for skip in (False, True):
        expected = ref.batch_decode(encoded, skip_special_tokens=skip)
        assert ours.batch_decode(encoded, skip_special_tokens=skip) == expected


def test_decode_random_ids(both):
    """Arbitrary id sequences, special ids anywhere (including first, where "▁" handling differs)."""
    ours, ref = both
    rng = random.Random(7)
    special = [0, 1, 2, 3, len(ref) - 1]
    for _ in range(1500):
        ids = [rng.choice(special) if rng.random() < 0.2 else rng.randrange(len(ref)) for _ in range(rng.randint(0, 9))]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), ids


def test_clean_up_tokenization_spaces(ours_hub, ref_hub, ours, ref):
    ids = ref("Hello , world . It ' s n't ok ? Yes ! I 'm , you 're , we 've")["input_ids"]
    assert ours_hub.clean_up_tokenization_spaces and not ours.clean_up_tokenization_spaces
    assert ours_hub.decode(ids) == ref_hub.decode(ids) != ref.decode(ids) == ours.decode(ids)
    for flag in (True, False):
        assert ours.decode(ids, clean_up_tokenization_spaces=flag) == ref.decode(ids, clean_up_tokenization_spaces=flag)


def test_decode_accepts_arrays_and_ints(ours, ref):
    ids = ref("Grüße aus München")["input_ids"]
    expected = ref.decode(ids)
    assert ours.decode(np.array(ids)) == expected
    assert ours.decode(jnp.array(ids)) == expected
    assert ours.decode(ids[1]) == ref.decode(ids[1])
    assert ours.batch_decode(np.array([ids, ids])) == [expected, expected]
    with pytest.raises(ValueError, match="batch_decode"):
        ours.decode(np.array([ids, ids]))


def test_convert_tokens_to_string(both, lines):
    """Pieces joined back into text as transformers joins them, for whole texts and for single words' pieces."""
    ours, ref = both
    for line in lines[:200]:
        tokens = ref.tokenize(line)
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens), line
        for start in range(0, len(tokens), 3):
            piece = tokens[start : start + 2]
            assert ours.convert_tokens_to_string(piece) == ref.convert_tokens_to_string(piece), piece

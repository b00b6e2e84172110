"""FlaubertTokenizer against transformers' FlaubertTokenizer on the same vocab.json + merges.txt.

Two folders: a cased one, and an uncased one (do_lowercase) whose vocab.json lacks two special tokens (the
tokenizer appends them). Texts: tests/data/french.txt (elisions, both apostrophes, hyphenation, guillemets with
(narrow) no-break spaces, numbers, URLs, accents, control characters, special tokens written in text) and the
multilingual corpus.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from tests.tokenizers.compare import assert_same_encoding
from tests.tokenizers.flaubert_fixture import (
    build_flaubert_tokenizer_folder,
    read_lines,
)
from textbatch.tokenizers import FlaubertTokenizer
from textbatch.tokenizers.flaubert import python_truncated_lengths
from textbatch.tokenizers.moses_bpe import BytePairEncoder, read_merges

VARIANTS = {
    "cased": dict(),
    "uncased_missing_specials": dict(do_lowercase=True, missing_specials=("<special1>", "<special7>")),
}


def _reference(folder):
    from transformers import FlaubertTokenizer as ReferenceTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def both(request, tmp_path_factory):
    folder = build_flaubert_tokenizer_folder(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])
    return FlaubertTokenizer.from_pretrained(folder), _reference(folder)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return read_lines("french.txt") + read_lines("multilingual.txt")


def sorted_keys(encoding) -> dict:
    # The reference's Python tokenizer orders keys differently (special_tokens_mask before attention_mask).
    return {key: encoding[key] for key in sorted(encoding)}


def assert_same(expected, actual, context=""):
    assert_same_encoding(sorted_keys(expected), sorted_keys(actual), context)


def test_french_text_covers_what_it_promises():
    text = "\n".join(read_lines("french.txt"))
    probes = ["l'", "L’", "qu’", "qu'", "aujourd'hui", "Aujourd’hui", "-t-il", "arc-en-ciel", "«\u00a0", "\u202f»", "‹", "“"]
    probes += ["1 234,56 €", "1\u00a0234,56", "%", "°C", "https://", "@exemple.fr", "é", "È", "Œ", "æ", "ç", "Ÿ"]
    probes += ["e\u0301", "\u00ad", "\u200b", "\t", "\x07", "\ufeff", "\x85", "…", "—", "``", "''", "：", "（"]
    probes += ["<s>", "</s>", "<special1>", "<pad>", "<unk>", "<special10>", "😀"]
    for probe in probes:
        assert probe in text, probe
    lines = read_lines("french.txt")
    assert "" in lines and any(line.strip() == "" and line for line in lines)
    assert any(line != line.strip() for line in lines if line.strip())


def test_tokens_equal_the_reference(both, texts):
    ours, ref = both
    for text in texts:
        assert ours.tokenize(text) == ref.tokenize(text), repr(text)


@pytest.mark.parametrize("split_special_tokens", [None, True])
def test_batch_ids_masks_and_lengths(both, texts, split_special_tokens):
    ours, ref = both
    kwargs = dict(
        return_special_tokens_mask=True,
        return_token_type_ids=True,
        return_length=True,
        split_special_tokens=split_special_tokens,
    )
    assert_same(ref(texts, **kwargs), ours(texts, **kwargs), f"split_special_tokens={split_special_tokens}")
    assert ours(texts, add_special_tokens=False)["input_ids"] == ref(texts, add_special_tokens=False)["input_ids"]


def test_unknown_pieces_and_appended_specials_occur(both, texts):
    """The fixture is meant to exercise <unk> and (uncased) special tokens appended after vocab.json."""
    ours, _ = both
    ids = [i for row in ours(texts)["input_ids"] for i in row]
    assert ids.count(ours.unk_token_id) > 20
    if ours.do_lowercase:
        assert ours.mask_token_id >= ours.vocab_size and len(ours) == ours.vocab_size + 2
        assert ours.mask_token_id in ids  # "<special1>" is written in french.txt


def test_single_texts_one_by_one(both, texts):
    ours, ref = both
    for text in texts[::7]:
        kwargs = dict(return_special_tokens_mask=True, return_length=True, return_token_type_ids=True)
        assert_same(ref(text, **kwargs), ours(text, **kwargs), repr(text))


def test_pairs_with_token_types_and_special_masks(both, texts):
    ours, ref = both
    firsts = texts[::3]
    seconds = [texts[(7 * i + 3) % len(texts)] for i in range(len(firsts))]
    kwargs = dict(return_token_type_ids=True, return_special_tokens_mask=True, return_length=True)
    assert_same(ref(firsts, seconds, **kwargs), ours(firsts, seconds, **kwargs), "pairs")


@pytest.mark.parametrize("truncation", ["longest_first", "only_first", "only_second"])
@pytest.mark.parametrize("max_length", [9, 16, 33])
def test_truncating_pairs_as_the_python_reference(both, texts, truncation, max_length):
    """The reference is a Python tokenizer: its pair arithmetic differs from the Rust one XLM-R matches."""
    ours, ref = both
    firsts = [text for text in texts[::4] if text.strip()]
    seconds = [texts[(5 * i + 1) % len(texts)] for i in range(len(firsts))]
    kwargs = dict(truncation=truncation, max_length=max_length, return_token_type_ids=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref(firsts, seconds, **kwargs)
    assert_same(expected, ours(firsts, seconds, **kwargs), f"{truncation} {max_length}")


def test_truncation_arithmetic_equals_the_reference_on_a_grid(both):
    _, ref = both
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    for len_a in range(9):
        for len_b in [None] + list(range(9)):
            for budget in range(12):
                for strategy in ("longest_first", "only_first", "only_second"):
                    a, b = list(range(len_a)), None if len_b is None else list(range(100, 100 + len_b))
                    remove = len_a + (len_b or 0) - budget
                    want_a, want_b, _ = ref.truncate_sequences(a, b, num_tokens_to_remove=remove,
                                                               truncation_strategy=strategy)
                    got = python_truncated_lengths(len_a, len_b, budget, strategy)
                    assert got == (len(want_a), None if want_b is None else len(want_b)), (len_a, len_b, budget)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=True),
        dict(padding="max_length", max_length=40, truncation=True),
        dict(padding=True, pad_to_multiple_of=8, padding_side="left"),
        dict(truncation=True, max_length=7),
        dict(padding="longest", truncation=True, max_length=12, return_tensors="np"),
    ],
)
def test_padding_and_truncation_of_batches(both, texts, kwargs):
    ours, ref = both
    batch = texts[10:40]
    expected, actual = ref(batch, **kwargs), ours(batch, **kwargs)
    if kwargs.get("return_tensors") == "np":
        assert sorted(expected) == sorted(actual)
        for key in expected:
            np.testing.assert_array_equal(expected[key], actual[key])
    else:
        assert_same(expected, actual, str(kwargs))


def test_truncation_side_left(both, texts):
    """Known difference, not copied: with truncation_side="left" the reference drops the last separator of a
    pair whose second text is empty (`pair_ids[n:] if pair_ids else None` turns [] into "no pair"), so the
    comparison leaves those pairs out; ours keeps `<s> A </s> </s>` as for right-side truncation."""
    ours, ref = both
    ours_left = pickle.loads(pickle.dumps(ours))
    ours_left.truncation_side = ref.truncation_side = "left"
    firsts, seconds = texts[:80], [text for text in texts[80:200] if text][:80]
    try:
        for max_length in (6, 10, 17):
            kwargs = dict(truncation=True, max_length=max_length)
            assert_same(ref(firsts, seconds, **kwargs), ours_left(firsts, seconds, **kwargs), str(max_length))
            assert_same(ref(firsts, **kwargs), ours_left(firsts, **kwargs), str(max_length))
    finally:
        ref.truncation_side = "right"
    encoded = ours_left(["Le chat dort sur le canapé"], [""], truncation=True, max_length=5)["input_ids"][0]
    assert encoded[-2:] == [ours.sep_token_id] * 2 and len(encoded) == 5


def test_single_text_details_of_the_python_reference(both):
    ours, ref = both
    for pair in ("", " ", "Et le chien ?", None):
        kwargs = dict(return_length=True, return_token_type_ids=True, return_special_tokens_mask=True)
        assert_same(ref("Le chat dort.", pair, **kwargs), ours("Le chat dort.", pair, **kwargs), repr(pair))
    assert isinstance(ours("Le chat", return_length=True)["length"], int)


@pytest.mark.parametrize("skip_special_tokens", [False, True])
@pytest.mark.parametrize("clean_up", [False, True])
def test_decode_equals_the_reference(both, texts, skip_special_tokens, clean_up):
    ours, ref = both
    encoded = ref(texts[:120], texts[120:240])["input_ids"]
    encoded.append([0, 5, 999_999, 3, 1, 13])  # ids outside the vocabulary decode to <unk>
    kwargs = dict(skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up)
    assert ours.batch_decode(encoded, **kwargs) == ref.batch_decode(encoded, **kwargs)
    assert ours.decode(np.array(encoded[3]), **kwargs) == ref.decode(encoded[3], **kwargs)


def test_vocabulary_and_special_tokens(both):
    ours, ref = both
    assert ours.get_vocab() == ref.get_vocab()
    assert (ours.vocab_size, len(ours)) == (ref.vocab_size, len(ref))
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(ref, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(ref, f"{name}_token_id"), name
    tokens = ["<s>", "le</w>", "not-a-piece", "<special1>", "<special7>", "</s>"]
    assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    ids = list(range(40)) + [len(ours) - 1, len(ours) + 5]
    assert ours.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == ref.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    pieces = ref.tokenize("L'arc-en-ciel « brillait » aujourd'hui.")
    assert ours.convert_tokens_to_string(pieces) == ref.convert_tokens_to_string(pieces)
    ids = ours("Le chat.", "Le chien.")["input_ids"]
    assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == ref.get_special_tokens_mask(
        ids, already_has_special_tokens=True
    )
    assert ours.build_inputs_with_special_tokens([7, 8], [9]) == ref.build_inputs_with_special_tokens([7, 8], [9])
    assert ours.create_token_type_ids_from_sequences([7, 8], [9]) == ref.create_token_type_ids_from_sequences(
        [7, 8], [9]
    )


def test_lowercasing_keeps_accents(both):
    """Uncased checkpoints are lower-cased, accents kept, as the reference does (not XLM's accent stripping)."""
    ours, ref = both
    text = "ÉCOLE Élève À Ça"
    assert ours.tokenize(text) == ref.tokenize(text)
    if ours.do_lowercase:
        assert ours.convert_tokens_to_string(ours.tokenize(text)) == "école élève à ça"
    assert ours.do_lower_case is False


def test_offsets_are_refused_with_a_reason(both):
    ours, _ = both
    with pytest.raises(NotImplementedError, match="offsets"):
        ours("Bonjour", return_offsets_mapping=True)


def test_save_pretrained_round_trips_through_transformers(both, tmp_path, texts):
    ours, ref = both
    ours.save_pretrained(tmp_path)
    reloaded_ref = _reference(tmp_path)
    reloaded = FlaubertTokenizer.from_pretrained(tmp_path)
    assert reloaded_ref.do_lowercase == ours.do_lowercase == reloaded.do_lowercase
    assert reloaded(texts)["input_ids"] == reloaded_ref(texts)["input_ids"] == ref(texts)["input_ids"]


def test_pickles_for_ray_workers(both, texts):
    ours, _ = both
    clone = pickle.loads(pickle.dumps(ours))
    assert clone(texts[:30])["input_ids"] == ours(texts[:30])["input_ids"]


def test_bpe_ranks_and_bounded_cache():
    ranks = read_merges("#version: 0.2\na b 10\nab c</w> 3\na b\nsingle\n\nx y")  # text after the last \n is dropped
    assert ranks == {("#version:", "0.2"): 0, ("a", "b"): 3, ("ab", "c</w>"): 2}
    bpe = BytePairEncoder(ranks, cache_size=2)
    assert bpe("abc") == ("abc</w>",)
    assert bpe("abd") == ("ab", "d</w>")
    assert bpe("x") == ("x</w>",)
    assert len(bpe._cache) <= 2


def test_constructor_checks_its_inputs(tmp_path):
    folder = build_flaubert_tokenizer_folder(tmp_path / "ok", n_merges=20)
    with pytest.raises(ValueError, match="lang2id has 2 languages but id2lang has 1"):
        FlaubertTokenizer(folder / "vocab.json", folder / "merges.txt", lang2id={"fr": 0, "en": 1}, id2lang={0: "fr"})
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must map token strings to integer ids"):
        FlaubertTokenizer(tmp_path / "bad.json", folder / "merges.txt")
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        (folder / "merges.txt").unlink()
        FlaubertTokenizer.from_pretrained(folder)

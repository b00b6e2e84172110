"""Ids, offsets, special-token masks and token strings equal transformers' on the multilingual corpus."""

from __future__ import annotations

import pytest

from tests.tokenizers.compare import assert_same_encoding

CONFIGS = [("ours", "ref"), ("ours_hub", "ref_hub")]  # plain folder; hub-like config ("<mask>" lstrip=True)


@pytest.fixture(params=CONFIGS, ids=["plain", "hub_config"])
def both(request):
    ours_name, ref_name = request.param
    return request.getfixturevalue(ours_name), request.getfixturevalue(ref_name)


def test_corpus_is_the_promised_mix(lines):
    text = "\n".join(lines)
    assert len(lines) >= 500
    assert sum(1 for line in lines if line == "") >= 5
    probes = ("é", "Ж", "λ", "ع", "ש", "न", "中", "日本", "한", "ไทย", "😀")
    probes += ("\t", "  ", "\u00a0", "</s>", "<mask>")
    for probe in probes:
        assert probe in text, probe
    assert any(line != line.strip() for line in lines), "lines with leading/trailing whitespace"


@pytest.mark.parametrize("split_special_tokens", [None, False, True])
def test_single_texts_batch(both, lines, split_special_tokens):
    ours, ref = both
    kwargs = dict(
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_length=True,
        split_special_tokens=split_special_tokens,
    )
    assert_same_encoding(ref(lines, **kwargs), ours(lines, **kwargs), f"split={split_special_tokens}")


def test_single_texts_one_by_one(both, lines):
    """Unbatched calls: plain lists without the batch dimension, exactly as the reference returns them."""
    ours, ref = both
    for line in lines[::5]:
        kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)
        assert_same_encoding(ref(line, **kwargs), ours(line, **kwargs), repr(line))


def test_without_special_tokens_as_the_pipeline_calls_it(both, lines):
    ours, ref = both
    expected = ref(lines, add_special_tokens=False)["input_ids"]
    assert ours(lines, add_special_tokens=False)["input_ids"] == expected
    # ... and framing those ids afterwards gives the reference's full encoding.
    full = ref(lines)["input_ids"]
    assert [ours.build_inputs_with_special_tokens(ids) for ids in expected] == full
    assert all(len(f) - len(e) == ours.num_special_tokens_to_add() for e, f in zip(expected, full))


def test_pairs_batch(both, pairs):
    ours, ref = both
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_token_type_ids=True)
    assert_same_encoding(ref(first, second, **kwargs), ours(first, second, **kwargs), "pairs")


def test_pairs_without_special_tokens(ours, ref, pairs):
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    kwargs = dict(add_special_tokens=False, return_offsets_mapping=True, return_token_type_ids=True, padding=True)
    kwargs.update(return_special_tokens_mask=True)
    assert_same_encoding(ref(first, second, **kwargs), ours(first, second, **kwargs), "pairs, no special tokens")


def test_pairs_one_by_one(both, pairs):
    ours, ref = both
    for a, b in pairs[::9]:
        kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
        assert_same_encoding(ref(a, b, **kwargs), ours(a, b, **kwargs), repr((a, b)))


def test_encode(ours, ref, pairs):
    for a, b in pairs[::17]:
        assert ours.encode(a) == ref.encode(a)
        assert ours.encode(a, b) == ref.encode(a, b)
        assert ours.encode(a, add_special_tokens=False) == ref.encode(a, add_special_tokens=False)


def test_pair_framing_helpers(ours, ref, pairs):
    for a, b in pairs[::4]:
        ids_a = ours(a, add_special_tokens=False)["input_ids"]
        ids_b = ours(b, add_special_tokens=False)["input_ids"]
        expected = ref(a, b, return_special_tokens_mask=True, return_token_type_ids=True) if b else None
        if expected is None:
            continue
        assert ours.build_inputs_with_special_tokens(ids_a, ids_b) == expected["input_ids"]
        assert ours.get_special_tokens_mask(ids_a, ids_b) == expected["special_tokens_mask"]
        assert ours.create_token_type_ids_from_sequences(ids_a, ids_b) == expected["token_type_ids"]
    assert ours.num_special_tokens_to_add(pair=True) == ref.num_special_tokens_to_add(pair=True) == 4
    assert ours.num_special_tokens_to_add() == ref.num_special_tokens_to_add() == 2


def test_special_tokens_mask_of_formatted_ids(ours, ref, lines):
    for line in lines[::11]:
        ids = ref(line)["input_ids"]
        assert ours.get_special_tokens_mask(ids, already_has_special_tokens=True) == ref.get_special_tokens_mask(
            ids, already_has_special_tokens=True
        )


@pytest.mark.parametrize("split_special_tokens", [False, True])
def test_tokenize(both, lines, split_special_tokens):
    ours, ref = both
    for line in lines:
        expected = ref.tokenize(line, split_special_tokens=split_special_tokens)
        assert ours.tokenize(line, split_special_tokens=split_special_tokens) == expected, repr(line)


def test_tokenize_with_special_tokens(ours, ref, pairs):
    for a, b in pairs[::13]:
        assert ours.tokenize(a, b, add_special_tokens=True) == ref.tokenize(a, b, add_special_tokens=True)


def test_split_special_tokens_set_on_the_tokenizer(xlmr_folder, reference_loader, lines):
    from textbatch.tokenizers import XLMRobertaTokenizer

    ours = XLMRobertaTokenizer.from_pretrained(xlmr_folder, split_special_tokens=True)
    ref = reference_loader(xlmr_folder)
    special_lines = [line for line in lines if "<" in line]
    assert len(special_lines) > 20
    expected = ref(special_lines, split_special_tokens=True)["input_ids"]
    assert ours(special_lines)["input_ids"] == expected
    assert ours(special_lines, split_special_tokens=False)["input_ids"] == ref(special_lines)["input_ids"]
    assert expected != ref(special_lines)["input_ids"], "the option must change something on this corpus"


def test_vocabulary_and_special_tokens(ours, ref):
    assert len(ours) == len(ref) == ours.vocab_size == ref.vocab_size
    assert ours.get_vocab() == ref.get_vocab()
    assert ours.convert_ids_to_tokens(list(range(len(ref)))) == ref.convert_ids_to_tokens(list(range(len(ref))))
    for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(ref, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(ref, f"{name}_token_id"), name
    assert (ours.bos_token_id, ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.mask_token_id == len(ours) - 1
    assert ours.all_special_tokens == ref.all_special_tokens
    assert ours.all_special_ids == ref.all_special_ids
    assert ours.special_tokens_map == ref.special_tokens_map


def test_convert_tokens_to_ids(ours, ref):
    tokens = ["<s>", "\u2581", "not-a-piece", "<mask>", "</s>", ""]
    assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("<pad>") == ref.convert_tokens_to_ids("<pad>") == 1
    assert ours.convert_ids_to_tokens(5) == ref.convert_ids_to_tokens(5)
    ids = [0, 5, 2, 1, 3, len(ours) - 1, 7]
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == ref.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )

"""T5Tokenizer against transformers' T5Tokenizer on the same spiece.model: ids, offsets, sentinels, decoding, files."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.tokenizers.compare import assert_same_encoding
from tests.tokenizers.test_t5_spm import (
    SENTINELS,
    build_t5_tokenizer_folder,
    load_reference_tokenizer,
)
from textbatch.tokenizers import T5Tokenizer

FULL = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {
        "bare": build_t5_tokenizer_folder(tmp_path_factory.mktemp("t5_bare")),
        "hub": build_t5_tokenizer_folder(tmp_path_factory.mktemp("t5_hub"), hub_like_config=True),
    }


@pytest.fixture(scope="module", params=["bare", "hub"])
def both(request, folders):
    """(ours, reference): spiece.model alone, and with the hub's tokenizer_config.json / special_tokens_map.json."""
    folder = folders[request.param]
    return T5Tokenizer.from_pretrained(folder), load_reference_tokenizer(folder)


def test_vocabulary_layout_and_special_tokens(both):
    ours, ref = both
    assert len(ours) == len(ref) == ours.vocab_size
    assert ours.get_vocab() == ref.get_vocab()
    assert (ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (0, 1, 2)
    assert (ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (ref.pad_token_id, ref.eos_token_id,
                                                                        ref.unk_token_id)
    assert ours.bos_token_id is None and ours.bos_token is None
    assert ours.convert_tokens_to_ids(SENTINELS) == ref.convert_tokens_to_ids(SENTINELS)
    assert ours.convert_tokens_to_ids("<extra_id_0>") == len(ours) - 1
    assert ours.convert_tokens_to_ids("<extra_id_99>") == len(ours) - 100
    assert ours.get_sentinel_tokens() == SENTINELS
    assert ours.get_sentinel_token_ids() == ref.convert_tokens_to_ids(SENTINELS)
    assert ours.all_special_tokens[:3] == ["</s>", "<unk>", "<pad>"]
    assert set(ours.all_special_tokens) <= set(ref.all_special_tokens)
    assert set(SENTINELS) <= set(ours.all_special_tokens)
    assert ours.model_max_length == ref.model_max_length


@pytest.mark.parametrize("split_special_tokens", [False, True])
def test_corpus_ids_offsets_masks(both, lines, split_special_tokens):
    ours, ref = both
    kwargs = dict(FULL, split_special_tokens=split_special_tokens)
    expected = ref(lines, **kwargs)
    assert_same_encoding(expected, ours(lines, **kwargs), f"split={split_special_tokens}")
    assert all(ids[-1] == 1 for ids in expected["input_ids"])  # "</s>" appended to every text


def test_pairs_and_single_texts(both, lines, pairs):
    ours, ref = both
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    assert_same_encoding(ref(first, second, **FULL), ours(first, second, **FULL), "pairs")
    for line in lines[::9]:
        assert_same_encoding(ref(line, **FULL), ours(line, **FULL), repr(line))
        assert ours.tokenize(line) == ref.tokenize(line), line
    assert ref(first[:50], add_special_tokens=False)["input_ids"] == ours(first[:50], add_special_tokens=False)["input_ids"]


def test_sentinels_and_special_tokens_written_in_text(both):
    ours, ref = both
    texts = [
        "The <extra_id_0> walks in <extra_id_1> park",
        "<extra_id_99>x<extra_id_0> </s>y<pad> <unk>",
        "Wir <extra_id_3>gehen</s>",
        "<extra_id_100> is not a sentinel, <extra_id_7 neither",
    ]
    for split in (False, True):
        assert_same_encoding(ref(texts, split_special_tokens=split, **FULL), ours(texts, split_special_tokens=split,
                                                                                  **FULL), f"split={split}")
    for text in texts:
        assert ours.tokenize(text) == ref.tokenize(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=True),
        dict(padding="max_length", max_length=40, truncation=True),
        dict(truncation=True, max_length=7, padding=True),
        dict(padding=True, pad_to_multiple_of=8, padding_side="left"),
    ],
)
def test_padding_truncation_and_arrays(both, lines, kwargs):
    ours, ref = both
    expected = ref(lines[:80], return_tensors="np", **kwargs)
    got = ours(lines[:80], return_tensors="np", **kwargs)
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("skip_special_tokens", [False, True])
def test_decode_the_encoded_corpus(both, lines, pairs, skip_special_tokens):
    ours, ref = both
    encoded = ref(lines)["input_ids"] + ref([a for a, _ in pairs[:100]], [b for _, b in pairs[:100]])["input_ids"]
    for ids in encoded:
        assert ours.decode(ids, skip_special_tokens=skip_special_tokens) == ref.decode(
            ids, skip_special_tokens=skip_special_tokens
        ), ids


def test_decode_random_ids_with_sentinels(both):
    ours, ref = both
    rng = random.Random(5)
    special = [0, 1, 2, len(ref) - 1, len(ref) - 100, len(ref) - 37]
    for _ in range(800):
        ids = [rng.choice(special) if rng.random() < 0.25 else rng.randrange(len(ref)) for _ in range(rng.randint(0, 9))]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), ids


def test_batch_decode_of_generated_arrays(both, lines):
    """What generate returns: [rows, length] int arrays starting with the decoder start (pad) token and padded."""
    ours, ref = both
    encoded = ref(lines[:40], padding=True, return_tensors="np")["input_ids"]
    generated = np.concatenate([np.zeros((len(encoded), 1), dtype=np.int32), encoded.astype(np.int32)], axis=1)
    for skip in (False, True):
        expected = ref.batch_decode(generated.tolist(), skip_special_tokens=skip)
        assert ours.batch_decode(generated, skip_special_tokens=skip) == expected
    assert all("<pad>" not in text and "</s>" not in text for text in ours.batch_decode(generated, True))


def test_transformers_loads_what_we_save(both, lines, tmp_path):
    ours, _ = both
    ours.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "special_tokens_map.json", "spiece.model", "tokenizer_config.json"
    ]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["additional_special_tokens"] == SENTINELS
    ref = load_reference_tokenizer(tmp_path)
    again = T5Tokenizer.from_pretrained(tmp_path)
    expected = ref(lines, **FULL)
    assert_same_encoding(expected, ours(lines, **FULL), "saved, reference")
    assert_same_encoding(expected, again(lines, **FULL), "saved, reloaded")
    assert again.model_max_length == ref.model_max_length == ours.model_max_length


def test_overrides_and_errors(folders, tmp_path):
    folder = folders["bare"]
    few = T5Tokenizer.from_pretrained(folder, extra_ids=3, model_max_length=16)
    assert few.get_sentinel_tokens() == SENTINELS[:3] and few.model_max_length == 16
    assert few.convert_tokens_to_ids("<extra_id_0>") == len(few) - 1
    assert few.tokenize("a <extra_id_5>") != ["\u2581a", "<extra_id_5>"]  # not a sentinel any more
    with pytest.raises(ValueError, match="lists 2 <extra_id_N> sentinels but extra_ids=3"):
        T5Tokenizer(folder / "spiece.model", extra_ids=3, additional_special_tokens=SENTINELS[:2])
    with pytest.raises(FileNotFoundError, match="spiece.model"):
        T5Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "spiece.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        T5Tokenizer.from_pretrained(tmp_path)


def test_convert_tokens_to_string(both, lines):
    ours, ref = both
    for line in lines[:200]:
        tokens = ref.tokenize(line)
        assert ours.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens), line

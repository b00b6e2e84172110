"""Loading and saving: folders, URLs, configs; transformers loads what we save, with the same ids."""

from __future__ import annotations

import json
import pickle

import pytest

from tests.tokenizers.spm_fixture import build_tie_model_folder
from textbatch.tokenizers import AddedToken, XLMRobertaTokenizer


def _ids(tokenizer, lines):
    return tokenizer(lines, return_offsets_mapping=True)


@pytest.mark.parametrize("source", ["ours", "ours_hub"])
def test_transformers_loads_what_we_save(request, source, lines, tmp_path, reference_loader):
    ours = request.getfixturevalue(source)
    ours.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "sentencepiece.bpe.model",
        "special_tokens_map.json",
        "tokenizer_config.json",
    ]
    ref = reference_loader(tmp_path / "saved")
    assert ref.model_max_length == ours.model_max_length
    assert ref.clean_up_tokenization_spaces == ours.clean_up_tokenization_spaces
    expected = _ids(ref, lines)
    assert _ids(ours, lines) == expected
    reloaded = XLMRobertaTokenizer.from_pretrained(tmp_path / "saved")
    assert _ids(reloaded, lines) == expected
    assert reloaded.mask_token == "<mask>"
    assert reloaded._special_tokens["mask_token"].lstrip == ours._special_tokens["mask_token"].lstrip


def test_lstrip_mask_survives_a_save(ours_hub, tmp_path, reference_loader):
    ours_hub.save_pretrained(tmp_path)
    ref = reference_loader(tmp_path)
    text = "Paris is the   <mask> of France."
    expected = ref(text, return_offsets_mapping=True)
    position = expected["input_ids"].index(ref.mask_token_id)
    assert expected["offset_mapping"][position] == (12, 21)  # the spaces before "<mask>" are swallowed
    assert ours_hub(text, return_offsets_mapping=True) == ref(text, return_offsets_mapping=True)


def test_fsspec_url_round_trip(ours, lines):
    ours.save_pretrained("memory://textbatch-tests/xlmr-tokenizer")
    loaded = XLMRobertaTokenizer.from_pretrained("memory://textbatch-tests/xlmr-tokenizer")
    assert loaded(lines)["input_ids"] == ours(lines)["input_ids"]


def test_special_tokens_map_wins_over_config(xlmr_folder, tmp_path, lines, reference_loader):
    folder = tmp_path / "with_map"
    folder.mkdir()
    (folder / "sentencepiece.bpe.model").write_bytes((xlmr_folder / "sentencepiece.bpe.model").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "mask_token": "<mask>"}))
    mask = {"content": "<mask>", "lstrip": True, "rstrip": True, "normalized": False, "single_word": False}
    (folder / "special_tokens_map.json").write_text(json.dumps({"mask_token": mask}))
    ours = XLMRobertaTokenizer.from_pretrained(folder)
    ref = reference_loader(folder)
    assert ours.model_max_length == ref.model_max_length == 77
    special = [line for line in lines if "<mask>" in line]
    kwargs = dict(return_offsets_mapping=True)
    assert ours(special, **kwargs) == ref(special, **kwargs)
    assert ours("a <mask> b", **kwargs)["offset_mapping"][2] == (1, 9)


def test_overrides_and_constructor_forms(xlmr_folder, ours, lines):
    model_path = xlmr_folder / "sentencepiece.bpe.model"
    from_path = XLMRobertaTokenizer(model_path)
    from_bytes = XLMRobertaTokenizer(model_path.read_bytes(), mask_token=AddedToken("<mask>", lstrip=True))
    assert from_path(lines)["input_ids"] == ours(lines)["input_ids"]
    assert from_bytes("x <mask>", return_offsets_mapping=True)["offset_mapping"][2] == (1, 8)
    assert XLMRobertaTokenizer.from_pretrained(xlmr_folder, model_max_length=128).model_max_length == 128
    assert XLMRobertaTokenizer(model_path).model_max_length == 512


def test_pickle_round_trip(ours, lines):
    ours(lines)  # fill the caches; they are not shipped
    clone = pickle.loads(pickle.dumps(ours))
    assert clone(lines, return_offsets_mapping=True) == ours(lines, return_offsets_mapping=True)
    assert len(pickle.dumps(ours)) < 3 * len(ours._model_bytes) + 500_000


def test_missing_and_wrong_files_are_named(tmp_path, xlmr_folder):
    with pytest.raises(FileNotFoundError, match="sentencepiece.bpe.model"):
        XLMRobertaTokenizer.from_pretrained(tmp_path)
    (tmp_path / "sentencepiece.bpe.model").write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        XLMRobertaTokenizer.from_pretrained(tmp_path)
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((xlmr_folder / "sentencepiece.bpe.model").read_bytes())
    proto.trainer_spec.model_type = 2  # BPE
    (tmp_path / "sentencepiece.bpe.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match="unigram"):
        XLMRobertaTokenizer.from_pretrained(tmp_path)
    proto.trainer_spec.model_type = 1
    proto.pieces[1].type = 1  # "<s>" no longer a control piece: not XLM-R's layout
    (tmp_path / "sentencepiece.bpe.model").write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match="fairseq id layout"):
        XLMRobertaTokenizer.from_pretrained(tmp_path)


def test_special_token_outside_the_vocabulary_is_refused(xlmr_folder):
    with pytest.raises(ValueError, match="sep_token='\\[SEP\\]' is not in the vocabulary"):
        XLMRobertaTokenizer(xlmr_folder / "sentencepiece.bpe.model", sep_token="[SEP]")


def test_model_without_charsmap(tmp_path, reference_loader):
    """A model with no normaliser table (the tie model): words with a literal "▁" exercise the Metaspace split."""
    folder = build_tie_model_folder(tmp_path)
    ours, ref = XLMRobertaTokenizer.from_pretrained(folder), reference_loader(folder)
    texts = ["ab", "a b", "▁ab", "ab▁", "a▁▁b ▁", "ba\u00a0ab", "\u2581", "x<mask>y", "  ", "abc d"]
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
    assert ours(texts, **kwargs) == ref(texts, **kwargs)
    assert [ours.tokenize(t) for t in texts] == [ref.tokenize(t) for t in texts]

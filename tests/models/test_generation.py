"""`generate` against transformers' `generate` on the same checkpoint and prompts: the same ids, option by option.

The tiny model's lm_head is scaled up (x3) so that its logits are spread out: greedy and beam decisions are then not
decided by float noise, and the searches produce varied, non-degenerate sequences (checked below, so that the
parity tests can fail). Its own eos (id 1) is rare, so most tests pass two frequent tokens as `eos_token_id`:
then some prompts finish early and others run to the length limit, in the same batch.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
import torch

from tests.models.test_t5_reference import (
    build_checkpoint,
    load_reference,
    padded_batch,
)
from textbatch.models.generation import GenerationConfig
from textbatch.models.t5 import FlaxT5ForConditionalGeneration

EOS = [58, 92]  # tokens this seeded model emits after a few steps for some prompts only
PROMPT_LENGTHS = (11, 7, 3, 9)

# One compiled program per distinct set of options, so the cases combine options rather than test each alone.
GREEDY = {
    "plain": dict(max_new_tokens=20),
    "min_new_tokens_and_no_repeat_ngram_size": dict(max_new_tokens=14, min_new_tokens=9, no_repeat_ngram_size=2),
    "repetition_penalty_and_max_length": dict(max_length=16, repetition_penalty=1.6),
}
BEAM = {
    "length_penalty_and_return_sequences": dict(max_new_tokens=16, num_beams=3, length_penalty=0.7,
                                                num_return_sequences=2),
    "early_stopping_all_beams_returned": dict(max_new_tokens=12, num_beams=4, num_return_sequences=4,
                                              early_stopping=True, length_penalty=1.3),
    "early_stopping_never_with_processors": dict(max_new_tokens=14, num_beams=3, num_return_sequences=3,
                                                 early_stopping="never", length_penalty=2.0, no_repeat_ngram_size=3,
                                                 repetition_penalty=1.3, min_new_tokens=5),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = build_checkpoint(tmp_path_factory.mktemp("generation"), "generation", lm_head_scale=3.0)
    return load_reference(folder), FlaxT5ForConditionalGeneration.from_pretrained(folder)


@pytest.fixture(scope="module")
def prompts():
    return padded_batch(99, seed=1, lengths=PROMPT_LENGTHS)


def reference_generate(reference, input_ids, mask, **options) -> np.ndarray:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        out = reference.generate(
            input_ids=torch.tensor(input_ids), attention_mask=torch.tensor(mask), do_sample=False, **options
        )
    return out.numpy()


def assert_same_ids(expected: np.ndarray, got: np.ndarray) -> None:
    assert got.shape == expected.shape, (got.shape, expected.shape)
    rows = [i for i in range(len(expected)) if not np.array_equal(expected[i], got[i])]
    assert not rows, f"rows {rows} differ:\nexpected {expected[rows[0]]}\n     got {got[rows[0]]}"


@pytest.mark.parametrize("case", sorted(GREEDY))
def test_greedy_equals_transformers(models, prompts, case):
    reference, model = models
    options = dict(GREEDY[case], eos_token_id=EOS)
    expected = reference_generate(reference, *prompts, **options)
    got = model.generate(*prompts, **options)
    assert isinstance(got, np.ndarray) and got.dtype == np.int32
    assert_same_ids(expected, got)
    if case == "plain":  # the batch mixes early finishers (then padded with 0) and rows that hit the limit
        finished = [bool(np.isin(row[1:-1], EOS).any()) for row in got]
        assert any(finished) and not all(finished)
        assert len({row.tobytes() for row in got}) == len(got) and max(len(set(row.tolist())) for row in got) > 5
        assert (got[:, 0] == 0).all()


@pytest.mark.parametrize("case", sorted(BEAM))
def test_beam_search_equals_transformers(models, prompts, case):
    reference, model = models
    options = dict(BEAM[case], eos_token_id=EOS)
    expected = reference_generate(reference, *prompts, **options)
    got = model.generate(*prompts, **options)
    assert_same_ids(expected, got)
    returned = options.get("num_return_sequences", 1)
    assert got.shape[0] == len(PROMPT_LENGTHS) * returned
    if returned > 1:  # the hypotheses of a prompt differ
        for prompt in range(len(PROMPT_LENGTHS)):
            group = got[prompt * returned : (prompt + 1) * returned]
            assert len({row.tobytes() for row in group}) == returned


def test_tied_v1_0_model(tmp_path):
    """The v1.0 path: tied lm_head with the decoder output scaled by d_model**-0.5; the model's own eos."""
    folder = build_checkpoint(tmp_path, "v1_0", seed=3)
    reference, model = load_reference(folder), FlaxT5ForConditionalGeneration.from_pretrained(folder)
    input_ids, mask = padded_batch(99, seed=4, lengths=(6, 12, 9))
    options = dict(max_new_tokens=10, num_beams=2)
    assert_same_ids(reference_generate(reference, input_ids, mask, **options), model.generate(input_ids, mask,
                                                                                               **options))


def test_without_attention_mask_padding_is_inferred(models, prompts):
    """As in transformers: no mask given, the pad id (0, not an eos) marks padding."""
    _, model = models
    input_ids, mask = prompts
    options = dict(GREEDY["plain"], eos_token_id=EOS)  # the options of a test above: no new compilation
    np.testing.assert_array_equal(
        model.generate(input_ids, **options), model.generate(input_ids, attention_mask=mask, **options)
    )


# -- sampling ---------------------------------------------------------------------------------------------------------


def teacher_forced_logits(model, prompts, sequences: np.ndarray, copies: int, width: int) -> np.ndarray:
    """The model's next-token logits along each sampled sequence (padded to `width`, so one compiled shape)."""
    input_ids, mask = (np.repeat(array, copies, axis=0) for array in prompts)
    decoder = np.zeros((len(sequences), width), dtype=np.int32)
    decoder[:, : sequences.shape[1]] = sequences
    return np.asarray(model(input_ids, attention_mask=mask, decoder_input_ids=decoder).logits, dtype=np.float64)


def sampled_steps(sequences: np.ndarray):
    """(row, position) of every sampled token, up to and including each row's eos."""
    for row, sequence in enumerate(sequences):
        for position in range(1, len(sequence)):
            yield row, position
            if sequence[position] in EOS:
                break


def test_sampling_is_reproducible_for_a_seed(models, prompts):
    _, model = models
    options = dict(do_sample=True, max_new_tokens=12, num_return_sequences=2, top_k=0, eos_token_id=EOS)
    first = model.generate(*prompts, seed=11, **options)
    assert first.shape[0] == 2 * len(PROMPT_LENGTHS)
    np.testing.assert_array_equal(first, model.generate(*prompts, seed=11, **options))
    np.testing.assert_array_equal(first, model.generate(*prompts, prng_key=jax.random.PRNGKey(11), **options))
    assert not np.array_equal(first, model.generate(*prompts, seed=12, **options))
    greedy = model.generate(*prompts, **GREEDY["plain"], eos_token_id=EOS)
    assert not np.array_equal(first[::2, : greedy.shape[1]], greedy[:, : first.shape[1]])


def test_top_k_and_top_p_never_sample_outside_the_allowed_set(models, prompts):
    """top-k keeps the k best logits; top-p then keeps the smallest set of those whose probability (renormalised
    over the k) exceeds p. Every sampled token must lie in both sets, and each filter must bind somewhere."""
    _, model = models
    k, top_p, temperature, copies, width = 6, 0.6, 2.5, 3, 13
    sequences = model.generate(*prompts, do_sample=True, top_k=k, top_p=top_p, temperature=temperature,
                               max_new_tokens=width - 1, num_return_sequences=copies, eos_token_id=EOS, seed=5)
    logits = teacher_forced_logits(model, prompts, sequences, copies, width)
    nucleus_sizes, not_best = [], 0
    for row, position in sampled_steps(sequences):
        token = sequences[row, position]
        scores = logits[row, position - 1] / temperature
        best = np.argsort(scores)[-k:]  # ascending: the k best, best last
        assert token in best, (row, position)
        probs = np.exp(scores[best] - scores[best].max())
        cumulative = np.cumsum(probs / probs.sum())
        nucleus = best[cumulative > 1 - top_p - 1e-6]  # the reference drops tokens whose ascending cumsum <= 1 - p
        nucleus_sizes.append(len(nucleus))
        assert token in nucleus, (row, position, len(nucleus))
        not_best += int(token != best[-1])
    assert not_best >= 5  # it did sample, not just take the best token
    assert min(nucleus_sizes) < k and max(nucleus_sizes) > 1  # top-p cut inside the top k, yet left a choice


def test_beam_sampling_is_reproducible(models, prompts):
    _, model = models
    options = dict(do_sample=True, num_beams=2, num_return_sequences=2, max_new_tokens=10, eos_token_id=EOS)
    first = model.generate(*prompts, seed=1, **options)
    assert first.shape[0] == 2 * len(PROMPT_LENGTHS)
    np.testing.assert_array_equal(first, model.generate(*prompts, seed=1, **options))


# -- options ------------------------------------------------------------------------------------------------------


def test_defaults_come_from_the_model_config_and_options_are_checked(models, prompts):
    _, model = models
    config = model.generation_config
    assert (config.eos_token_id, config.pad_token_id, config.decoder_start_token_id) == (1, 0, 0)
    assert (config.max_length, config.top_k, config.num_beams) == (20, 50, 1)  # transformers' defaults
    bad = [
        (dict(num_beams=2, num_return_sequences=3), ValueError, "cannot exceed num_beams"),
        (dict(num_return_sequences=2), ValueError, "greedy search returns one sequence"),
        (dict(early_stopping="sometimes"), ValueError, "early_stopping"),
        (dict(max_new_tokens=0), ValueError, "max_new_tokens must be >= 1"),
        (dict(do_sample=True, temperature=0.0), ValueError, "temperature"),
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(beams=2), TypeError, "unexpected keyword argument"),
    ]
    for options, error, message in bad:
        with pytest.raises(error, match=message):
            model.generate(*prompts, **options)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(4, 3\)"):
        model.generate(prompts[0], attention_mask=prompts[1][:, :3])
    assert GenerationConfig(eos_token_id=[3, 4], decoder_start_token_id=0).eos_token_ids == (3, 4)


def test_generation_config_json_sets_the_defaults(tmp_path):
    import json

    folder = build_checkpoint(tmp_path, "ul2_silu")
    (folder / "generation_config.json").write_text(
        json.dumps({"decoder_start_token_id": 0, "eos_token_id": [1, 5], "max_length": 7, "unknown_key": 1})
    )
    model = FlaxT5ForConditionalGeneration.from_pretrained(folder)
    assert model.generation_config.eos_token_ids == (1, 5) and model.generation_config.total_length == 7
    model.save_pretrained(tmp_path / "saved")
    again = FlaxT5ForConditionalGeneration.from_pretrained(tmp_path / "saved")
    assert again.generation_config == model.generation_config
    # a config of one's own takes the model's special token ids where it leaves them unset
    mine = GenerationConfig(max_new_tokens=3, pad_token_id=7)
    resolved = model.resolve_generation_config(mine, num_beams=2)
    assert (resolved.eos_token_ids, resolved.pad_token_id, resolved.decoder_start_token_id) == ((1, 5), 7, 0)
    assert (resolved.total_length, resolved.num_beams) == (4, 2)


def test_the_seed_usage_with_the_tokenizer(tmp_path):
    """inputs = tokenizer(prompts, return_tensors="np", padding=True); out = model.generate(**inputs, ...);
    tokenizer.batch_decode(out, skip_special_tokens=True): the same text as transformers gives with torch."""
    from tests.tokenizers.test_t5_spm import (
        build_t5_tokenizer_folder,
        load_reference_tokenizer,
    )
    from textbatch.tokenizers import T5Tokenizer

    tokenizer_folder = build_t5_tokenizer_folder(tmp_path / "tokenizer", vocab_size=1300)
    tokenizer, reference_tokenizer = T5Tokenizer.from_pretrained(tokenizer_folder), load_reference_tokenizer(
        tokenizer_folder
    )
    folder = build_checkpoint(tmp_path / "model", "generation", lm_head_scale=3.0, vocab_size=len(tokenizer))
    model, reference = FlaxT5ForConditionalGeneration.from_pretrained(folder), load_reference(folder)
    prompts = ["summarize: Grüße aus München, wo es heute regnet.", "translate English to German: Hello!",
               "question: 日本の首都は? context: 東京"]

    inputs = tokenizer(prompts, return_tensors="np", padding=True)
    out = model.generate(**inputs, max_new_tokens=12, num_beams=2)
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)

    with torch.no_grad():
        expected = reference.generate(**reference_tokenizer(prompts, return_tensors="pt", padding=True),
                                      max_new_tokens=12, num_beams=2).numpy()
    assert_same_ids(expected, out)
    assert texts == reference_tokenizer.batch_decode(expected, skip_special_tokens=True)
    assert all(text.strip() for text in texts) and len(set(texts)) == len(texts)

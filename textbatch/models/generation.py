"""`generate` for encoder-decoder models: the encoder once, then the decoder one token at a time in a compiled loop.

Decoding is pure functions over a `tokens_to_logits(tokens [rows, 1], cache) -> (logits [rows, vocab], cache)`
callable and a state dataclass, run in `lax.while_loop` with a static-shape KV cache (the layout of flax's
examples/wmt). Greedy search and sampling live here, beam search in `generation_beam.py`, the logits processors in
`generation_logits.py`. The options and their defaults are transformers' (`max_length=20`, `top_k=50` when sampling,
...), and so are the results: the same logits give the same ids as transformers' `generate`.

A model gets `generate` from `Seq2SeqGenerationMixin` by providing two traceable pieces: `_encode_for_generation`
and `_decoder_for_generation` (see t5.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from textbatch.models.generation_beam import beam_search
from textbatch.models.generation_logits import process_logits
from textbatch.models.matmuls import dense_matmuls

logger = logging.getLogger(__name__)

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
GENERATION_CONFIG_FILE = "generation_config.json"
_PROMPT_LENGTH = 1  # the decoder prompt: the start token


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """What `generate` does. Frozen and hashable: one compiled program per distinct configuration (and shape).

    Lengths count decoder tokens with the start token, as transformers counts them: `max_new_tokens=N` means
    `max_length=N + 1` and wins over `max_length`.
    """

    max_length: int = 20
    max_new_tokens: int | None = None
    min_length: int = 0
    min_new_tokens: int | None = None
    do_sample: bool = False
    num_beams: int = 1
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    decoder_start_token_id: int | None = None

    def __post_init__(self):
        eos = self.eos_token_id
        if isinstance(eos, (list, tuple)):
            object.__setattr__(self, "eos_token_id", tuple(int(i) for i in eos) or None)
        elif eos is not None:
            object.__setattr__(self, "eos_token_id", int(eos))
        if self.early_stopping in (0, 1) and not isinstance(self.early_stopping, str):
            object.__setattr__(self, "early_stopping", bool(self.early_stopping))  # beam search tests `is True`
        self._validate()

    def _validate(self) -> None:
        def fail(message: str):
            raise ValueError(f"generate: {message}")

        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            fail(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_new_tokens is None and self.max_length < 2:
            fail(f"max_length counts the decoder start token and must be >= 2, got {self.max_length}")
        if self.num_beams < 1:
            fail(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_return_sequences < 1:
            fail(f"num_return_sequences must be >= 1, got {self.num_return_sequences}")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            fail(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams ({self.num_beams})")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            fail("greedy search returns one sequence per prompt: use num_beams > 1 or do_sample=True")
        if self.early_stopping not in (True, False, "never"):
            fail(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if self.do_sample and not self.temperature > 0:
            fail(f"temperature must be > 0 when sampling, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            fail(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            fail(f"top_p must be in [0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            fail(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.no_repeat_ngram_size < 0:
            fail(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")

    @property
    def total_length(self) -> int:
        """Decoder tokens in the output, start token included."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens + _PROMPT_LENGTH
        return self.max_length

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        eos = self.eos_token_id
        return () if eos is None else eos if isinstance(eos, tuple) else (eos,)

    @property
    def filler(self) -> int:
        """What finished sequences continue with: pad, else (as the reference) the first eos id."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_token_ids[0] if self.eos_token_ids else 0

    @property
    def beam_filler(self) -> int:
        """Beam search's filler is the reference's `pad_token_id or eos_token_id[0]`: eos when pad is 0 (T5)."""
        if self.pad_token_id:
            return self.pad_token_id
        return self.eos_token_ids[0] if self.eos_token_ids else -1

    def replace(self, **changes: Any) -> GenerationConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(
                f"generate() got unexpected keyword argument(s) {unknown}; "
                f"it accepts {sorted(f.name for f in dataclasses.fields(self))}, params, prng_key and seed"
            )
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GenerationConfig:
        """From a config.json or generation_config.json: known keys are taken, the rest ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names and value is not None})

    @classmethod
    def from_model_config(cls, config: Any) -> GenerationConfig:
        keys = ("eos_token_id", "pad_token_id", "decoder_start_token_id")
        values = {key: getattr(config, key, None) for key in keys}
        if values["decoder_start_token_id"] is None:
            values["decoder_start_token_id"] = getattr(config, "pad_token_id", None)
        return cls.from_dict(values)


# ---------------------------------------------------------------------------------------------------------------------
# Greedy search and sampling
# ---------------------------------------------------------------------------------------------------------------------


@flax.struct.dataclass
class SamplingState:
    cur_len: jax.Array  # scalar: positions filled, start token included
    sequences: jax.Array  # [rows, max_length]
    is_finished: jax.Array  # [rows]
    cache: Any
    rng: jax.Array


def greedy_or_sample(
    tokens_to_logits: TokensToLogits, cache: Any, rows: int, config: GenerationConfig, rng: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Pick the best token (or sample one) per row and step until every row has emitted eos or max_length.

    Returns (sequences [rows, max_length], the used length): finished rows continue with the pad id; positions from
    the used length on were never written.
    """
    max_length = config.total_length
    eos = config.eos_token_ids
    sequences = jnp.full((rows, max_length), config.filler, dtype=jnp.int32)
    sequences = sequences.at[:, 0].set(config.decoder_start_token_id)
    initial = SamplingState(jnp.array(_PROMPT_LENGTH, jnp.int32), sequences, jnp.zeros((rows,), bool), cache, rng)

    def condition(state: SamplingState):
        return (state.cur_len < max_length) & ~jnp.all(state.is_finished)

    def step(state: SamplingState) -> SamplingState:
        tokens = jax.lax.dynamic_slice_in_dim(state.sequences, state.cur_len - 1, 1, axis=1)  # [rows, 1]
        logits, cache = tokens_to_logits(tokens, state.cache)
        scores = process_logits(logits.astype(jnp.float32), state.sequences, state.cur_len, config)
        rng, sample_rng = jax.random.split(state.rng)
        if config.do_sample:
            chosen = jax.random.categorical(sample_rng, scores, axis=-1)
        else:
            chosen = _argmax(scores)
        chosen = chosen.astype(jnp.int32)
        is_finished = state.is_finished
        if eos:
            chosen = jnp.where(is_finished, config.filler, chosen)
            is_finished = is_finished | jnp.isin(chosen, jnp.asarray(eos))
        sequences = jax.lax.dynamic_update_slice_in_dim(state.sequences, chosen[:, None], state.cur_len, axis=1)
        return SamplingState(state.cur_len + 1, sequences, is_finished, cache, rng)

    final = jax.lax.while_loop(condition, step, initial)
    return final.sequences, final.cur_len


def _argmax(scores: jax.Array) -> jax.Array:
    """`jnp.argmax(scores, axis=-1)` (the first best index; a NaN counts as best) as two plain reductions, which XLA's
    CPU code vectorises: its index-carrying argmax reduction took 5 ms over 64 x 32128 logits, this about 1 ms."""
    best = jnp.max(scores, axis=-1, keepdims=True)
    positions = jnp.arange(scores.shape[-1], dtype=jnp.int32)
    hits = (scores == best) | jnp.isnan(scores)
    return jnp.min(jnp.where(hits, positions, scores.shape[-1]), axis=-1)


def search(
    tokens_to_logits: TokensToLogits, cache: Any, rows: int, config: GenerationConfig, rng: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Greedy, sampling or beam search as `config` says. `rows` counts the expanded batch (prompts x beams, or
    prompts x num_return_sequences when sampling). Returns (sequences, used length)."""
    if config.num_beams > 1:
        sequences, _, length = beam_search(tokens_to_logits, cache, rows // config.num_beams, config, rng)
        return sequences, length
    return greedy_or_sample(tokens_to_logits, cache, rows, config, rng)


# ---------------------------------------------------------------------------------------------------------------------
# The model-facing entry point
# ---------------------------------------------------------------------------------------------------------------------


class Seq2SeqGenerationMixin:
    """`generate` for a FlaxPreTrainedModel subclass that implements:

      _encode_for_generation(params, input_ids, attention_mask) -> encoder hidden states
      _decoder_for_generation(params, encoder_hidden, encoder_mask, max_length, rows) -> (tokens_to_logits, cache)
        for `rows` decoder rows, consecutive groups of them over one encoder row each

    Both are traced inside one compiled function (encoder, cache set-up and the decoding loop together).
    """

    _generation_config: GenerationConfig | None = None

    @property
    def generation_config(self) -> GenerationConfig:
        if self._generation_config is None:
            self._generation_config = GenerationConfig.from_model_config(self.config)
        return self._generation_config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        self._generation_config = value

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        """As the base class; `generation_config.json`, when the folder has one, sets the generation defaults."""
        from textbatch.storage import Folder

        loaded = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        folder = Folder.open(
            pretrained_model_name_or_path, revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir")
        )
        if folder.exists(GENERATION_CONFIG_FILE):
            values = dataclasses.asdict(GenerationConfig.from_model_config(model.config))
            names = set(values)
            written = folder.read_json(GENERATION_CONFIG_FILE)
            values.update({key: value for key, value in written.items() if key in names and value is not None})
            model.generation_config = GenerationConfig(**values)
        return loaded

    def save_pretrained(self, save_directory, params: dict | None = None) -> None:
        """As the base class, plus `generation_config.json` (transformers reads it too)."""
        from textbatch.storage import Folder

        super().save_pretrained(save_directory, params=params)
        values = {key: value for key, value in dataclasses.asdict(self.generation_config).items() if value is not None}
        text = json.dumps(values, indent=2, sort_keys=True) + "\n"
        Folder.open(save_directory, create=True).write_bytes(GENERATION_CONFIG_FILE, text.encode())

    def generate(
        self,
        input_ids,
        attention_mask=None,
        *,
        generation_config: GenerationConfig | None = None,
        params: dict | None = None,
        prng_key: jax.Array | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> np.ndarray:
        """Generate token ids for a batch of prompts; the result is a numpy int32 array
        [batch * num_return_sequences, length] starting with the decoder start token (like transformers' output),
        cut to the longest sequence generated. Decode it with `tokenizer.batch_decode(out, skip_special_tokens=True)`.

        `options` are GenerationConfig fields (max_new_tokens, num_beams, do_sample, top_p, ...), overriding
        `generation_config` (default: `model.generation_config`). Sampling draws from `prng_key`, else from
        `jax.random.PRNGKey(seed)` (seed 0 when neither is given). Without `attention_mask`, positions holding the
        pad id are masked (when pad differs from eos), as transformers does.
        """
        config = self.resolve_generation_config(generation_config, **options)
        input_ids = jnp.asarray(input_ids, dtype=jnp.int32)
        if input_ids.ndim != 2:
            raise ValueError(f"generate: input_ids must be [batch, length], got shape {input_ids.shape}")
        if attention_mask is None:
            attention_mask = _infer_attention_mask(input_ids, config)
        attention_mask = jnp.asarray(attention_mask, dtype=jnp.int32)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"generate: attention_mask has shape {attention_mask.shape} but input_ids {input_ids.shape}"
            )
        if prng_key is None:
            prng_key = jax.random.PRNGKey(0 if seed is None else seed)
        placed = self.place_inputs({"input_ids": input_ids, "attention_mask": attention_mask})  # rows over a mesh
        sequences, length = self._compiled_generate(config)(
            self.params if params is None else params, placed["input_ids"], placed["attention_mask"], prng_key
        )
        return np.asarray(sequences)[:, : int(length)]

    def resolve_generation_config(self, generation_config: GenerationConfig | None = None, **options: Any):
        """`generation_config` (default: the model's) with `options` applied; special token ids it leaves unset
        come from the model's."""
        config = self.generation_config
        if generation_config is not None:
            tokens = ("eos_token_id", "pad_token_id", "decoder_start_token_id")
            config = generation_config.replace(
                **{name: getattr(config, name) for name in tokens if getattr(generation_config, name) is None}
            )
        config = config.replace(**options)
        if config.decoder_start_token_id is None:
            raise ValueError("generate: decoder_start_token_id is not set (T5 uses its pad id, 0); pass it")
        return config

    def _compiled_generate(self, config: GenerationConfig):
        cache = self.__dict__.setdefault("_generate_programs", {})
        if config not in cache:
            cache[config] = jax.jit(functools.partial(self._generate_program, config=config))
        return cache[config]

    def generation_function(self, config: GenerationConfig):
        """The jitted `(params, input_ids, attention_mask, prng_key) -> (sequences, used length)` behind `generate`,
        for a resolved config (`resolve_generation_config`): for callers that compile it ahead of time and time it
        (the generate job's model step). Inputs go through `place_inputs` first; `generate` returns
        `sequences[:, :used length]`."""
        return self._compiled_generate(config)

    def _generate_program(self, params, input_ids, attention_mask, rng, *, config: GenerationConfig):
        with dense_matmuls():  # int8 kernels as stored, half precision accumulated in float32, in the loop body too
            return self._generate_traced(params, input_ids, attention_mask, rng, config)

    def _generate_traced(self, params, input_ids, attention_mask, rng, config: GenerationConfig):
        encoder_hidden = self._encode_for_generation(params, input_ids, attention_mask)
        copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences
        # Each prompt's copies (beams) are decoder rows side by side; they share its encoder output, which is not
        # repeated: the cross-attention reads it once per prompt (attention.attend).
        rows = encoder_hidden.shape[0] * copies
        tokens_to_logits, cache = self._decoder_for_generation(
            params, encoder_hidden, attention_mask, config.total_length, rows
        )
        return search(tokens_to_logits, cache, rows, config, rng)


def _infer_attention_mask(input_ids: jax.Array, config: GenerationConfig) -> jax.Array:
    pad = config.pad_token_id
    if pad is None or pad in config.eos_token_ids:
        return jnp.ones_like(input_ids)
    return (input_ids != pad).astype(jnp.int32)

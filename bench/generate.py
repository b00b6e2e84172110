"""Generation benchmark: this project's `generate` vs transformers' (PyTorch) and CTranslate2, same weights, same
prompts, greedy and beam 4, in one run, one table.

Protocol (../shared/ARCHITECTURE.md): flan-t5-small sizes (d_model 512, d_ff 1024, 8 + 8 layers, 6 heads of 64,
vocabulary 32128, gated-gelu, untied lm_head) with seeded random weights written by transformers, batches of 16
prompts of 64 tokens, 32 new tokens. Every system is made to generate exactly 32 tokens per sequence
(min = max new tokens), so the figures count the same work; tokens/s counts generated tokens of the returned
sequences (beam search does 4x the decoder work for the same count).

    python bench/generate.py                                   # 4 batches of 16 per system and mode
    python bench/generate.py --batches 8 --ours float32,bfloat16,int8

`--ours` lists this project's modes: float32, bfloat16 (compute and weights), int8 (int8 kernels, float32 compute),
bfloat16-int8. Each system runs one untimed batch first (ours compiles there: its compile seconds are timed apart,
ahead of the call, as the generate job's model step does); then the systems take turns batch by batch, so that other
work on the machine slows them alike. CTranslate2 (fp32 and int8, through its own TransformersConverter from the same
folder) runs when it is importable. Columns: generated tokens/s; ours (fp32) / this; compile seconds; seconds;
generated tokens per CPU-second of the process while the system ran (other work lengthens wall time, not CPU time);
peak RSS of a process that loads the system and generates one batch; MFU = matrix-multiply FLOPs / seconds / the
fp32 matmul peak JAX measures in the same run. The greedy and beam outputs are compared with transformers' ids: with
random weights and fp32 they should match exactly; a mismatch points at a bug (or, rarely, a float tie).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from measure import gb, load_average, markdown_table, matmul_peaks, run_isolated

ROOT = Path(__file__).resolve().parents[1]
SMALL_SIZES = dict(
    vocab_size=32128,
    d_model=512,
    d_kv=64,
    d_ff=1024,
    num_layers=8,
    num_decoder_layers=8,
    num_heads=6,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
)
SPIECE_PIECES = 32000  # + 100 sentinels = 32100 tokens, as flan-t5's tokenizer; the model's 28 extra ids stay unused


def make_tokenizer(folder: Path) -> None:
    """A T5 spiece.model of 32000 pieces: the bundled tiny model's pieces, then filler pieces `▁wN` (never produced
    by the text it was trained on). Only CTranslate2 needs it, to name the 32128 ids it is given as tokens."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((ROOT / "textbatch" / "assets" / "flan-t5-tiny" / "spiece.model").read_bytes())
    lowest = min(piece.score for piece in proto.pieces)
    for index in range(SPIECE_PIECES - len(proto.pieces)):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"▁w{index}", lowest - 1.0 - index * 1e-3, 1  # NORMAL
    (folder / "spiece.model").write_bytes(proto.SerializeToString())
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 100, "eos_token": "</s>", "pad_token": "<pad>",
              "unk_token": "<unk>", "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def make_checkpoint(folder: Path) -> Path:
    """flan-t5-small sizes, seeded random weights from transformers' own initialisation, written the way the hub's
    FLAN-T5 files are: a distinct lm_head.weight and tie_word_embeddings false (transformers 5 itself would save a
    T5 tied)."""
    if (folder / "model.safetensors").exists() and (folder / "spiece.model").exists():
        return folder
    import torch
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = transformers.T5Config(**SMALL_SIZES)
    model = transformers.T5ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    state = {key: value.contiguous() for key, value in model.state_dict().items() if "embed_tokens" not in key}
    state["lm_head.weight"] = torch.randn(config.vocab_size, config.d_model) * config.d_model**-0.5
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    values = json.loads((folder / "config.json").read_text())
    values["tie_word_embeddings"] = False
    values.pop("scale_decoder_outputs", None)
    (folder / "config.json").write_text(json.dumps(values, indent=2))
    make_tokenizer(folder)
    return folder


def make_prompts(count: int, length: int, seed: int = 0) -> np.ndarray:
    """[count, length] ids: random pieces (ids 3 .. 31999, no specials), then </s>."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, SPIECE_PIECES, size=(count, length), dtype=np.int32)
    ids[:, -1] = 1
    return ids


# -- the systems: each returns generate(batch ids [16, 64], beams) -> sequences (or token lists) ------------------


OUR_MODES = {  # --ours: (compute dtype, from_pretrained storage options)
    "float32": ("float32", {}),
    "bfloat16": ("bfloat16", {"param_dtype": "bfloat16"}),
    "int8": ("float32", {"load_in_8bit": True}),
    "bfloat16-int8": ("bfloat16", {"load_in_8bit": True}),
}


def textbatch_generate(checkpoint: Path, mode: str, new_tokens: int):
    """Ours as the generate job's model step runs it: the program compiled ahead of its first call (and timed)."""
    import jax
    import jax.numpy as jnp

    from textbatch.models import FlaxT5ForConditionalGeneration

    dtype, storage = OUR_MODES[mode]
    storage = {key: getattr(jnp, value) if key == "param_dtype" else value for key, value in storage.items()}
    model = FlaxT5ForConditionalGeneration.from_pretrained(str(checkpoint), dtype=getattr(jnp, dtype), **storage)
    programs = {}

    def generate(ids: np.ndarray, beams: int) -> np.ndarray:
        arguments = (model.params, ids, np.ones_like(ids), jax.random.PRNGKey(0))
        key = (beams, ids.shape)
        if key not in programs:
            config = model.resolve_generation_config(
                max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=beams
            )
            started = time.perf_counter()
            programs[key] = model.generation_function(config).lower(*arguments).compile()
            generate.compile_seconds += time.perf_counter() - started
        sequences, used = programs[key](*arguments)
        return np.asarray(sequences)[:, 1 : int(used)]  # without the decoder start token

    generate.compile_seconds = 0.0
    return generate


def transformers_generate(checkpoint: Path, new_tokens: int):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    transformers.logging.set_verbosity_error()
    model = transformers.T5ForConditionalGeneration.from_pretrained(str(checkpoint)).eval()

    def generate(ids: np.ndarray, beams: int) -> np.ndarray:
        with torch.inference_mode():
            out = model.generate(
                input_ids=torch.from_numpy(ids).long(),
                attention_mask=torch.ones(ids.shape, dtype=torch.long),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                num_beams=beams,
                do_sample=False,
            )
        return out[:, 1:].numpy()

    return generate


def ctranslate2_generate(checkpoint: Path, workdir: Path, quantization: str, new_tokens: int):
    """CTranslate2's own converter on the same folder; None when ctranslate2 is not importable."""
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        return None
    converted = workdir / f"ct2-flan-t5-small-{quantization}"
    if not (converted / "model.bin").exists():
        TransformersConverter(str(checkpoint)).convert(str(converted), quantization=quantization, force=True)
    translator = ctranslate2.Translator(
        str(converted), device="cpu", compute_type=quantization, intra_threads=os.cpu_count()
    )
    vocabulary = json.loads((converted / "shared_vocabulary.json").read_text())

    def generate(ids: np.ndarray, beams: int) -> list[list[str]]:
        tokens = [[vocabulary[i] for i in row] for row in ids.tolist()]
        results = translator.translate_batch(
            tokens, beam_size=beams, max_decoding_length=new_tokens, min_decoding_length=new_tokens
        )
        return [result.hypotheses[0] for result in results]

    return generate


def measure(systems: dict, batches: list[np.ndarray], beams: int, new_tokens: int) -> dict[str, dict]:
    """Per system: one untimed batch (compilation, caches), then every batch timed. The systems take turns batch by
    batch, so that a change in the machine's load hits them alike. Counts the tokens really generated."""
    results = {}
    for name, generate in systems.items():
        compiled = getattr(generate, "compile_seconds", None)
        started = time.perf_counter()
        generate(batches[0], beams)
        results[name] = {
            "warmup": time.perf_counter() - started,
            "compile_seconds": None if compiled is None else generate.compile_seconds - compiled,
            "seconds": 0.0,
            "cpu_seconds": 0.0,
            "generated": 0,
            "outputs": [],
        }
    for ids in batches:
        for name, generate in systems.items():
            started, cpu = time.perf_counter(), time.process_time()
            out = generate(ids, beams)
            results[name]["seconds"] += time.perf_counter() - started
            results[name]["cpu_seconds"] += time.process_time() - cpu
            results[name]["outputs"].append(out)
            results[name]["generated"] += sum(len(row) for row in out)
    expected = sum(len(ids) for ids in batches) * new_tokens
    for name, result in results.items():
        if result["generated"] != expected:
            raise RuntimeError(f"{name} generated {result['generated']} tokens, not {expected}: length not forced")
        result["tokens_per_second"] = result["generated"] / result["seconds"]
    return results


def agreement(ours: list[np.ndarray], theirs: list[np.ndarray]) -> str:
    rows = sum(len(batch) for batch in ours)
    same = sum(int(np.array_equal(a, b)) for x, y in zip(ours, theirs) for a, b in zip(x, y))
    return f"{same}/{rows} sequences identical"


def generation_flops(batch: int, source: int, new: int, beams: int) -> float:
    """Matrix-multiply FLOPs of one batch: the encoder over the prompts; per decoder row (prompts x beams) the
    cross-attention keys and values once, then per step the decoder layers, attention over the tokens so far and the
    source, and the lm_head."""
    d, inner, ff, layers, vocab = 512, 384, 1024, 8, 32128
    encoder = batch * source * layers * (2 * (4 * d * inner + 3 * d * ff) + 4 * source * inner)
    rows = batch * beams
    cross = rows * layers * 2 * source * 2 * d * inner
    steps = sum(
        layers * (2 * (6 * d * inner + 3 * d * ff) + 4 * (t + 1) * inner + 4 * source * inner) + 2 * d * vocab
        for t in range(new)
    )
    return encoder + cross + rows * steps


def peak_rss_probe(kind: str, option: str, checkpoint: str, workdir: str, new_tokens: int, prompts: np.ndarray) -> dict:
    """Load one system and generate one batch greedily and with beam 4, in a process of its own."""
    if kind == "textbatch":
        generate = textbatch_generate(Path(checkpoint), option, new_tokens)
    elif kind == "transformers":
        generate = transformers_generate(Path(checkpoint), new_tokens)
    else:
        generate = ctranslate2_generate(Path(checkpoint), Path(workdir), option, new_tokens)
    generate(prompts, 1)
    generate(prompts, 4)
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per system and mode")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--source-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--ours", default="float32,bfloat16", help=f"this project's modes, of {list(OUR_MODES)}")
    parser.add_argument("--workdir", default="/tmp/textbatch-bench")
    args = parser.parse_args()
    ours_modes = args.ours.split(",")
    unknown = [mode for mode in ours_modes if mode not in OUR_MODES]
    if unknown or "float32" not in ours_modes:
        parser.error(f"--ours takes modes of {list(OUR_MODES)}, float32 included; got {args.ours}")

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(workdir / "flan-t5-small-random")
    prompts = make_prompts(args.batches * args.batch_size, args.source_tokens)
    batches = np.split(prompts, args.batches)
    peaks = run_isolated(matmul_peaks)
    print(
        f"flan-t5-small sizes, random weights; {args.batches} batches of {args.batch_size} prompts x "
        f"{args.source_tokens} tokens; {args.new_tokens} new tokens each; {os.cpu_count()} CPUs; JAX matmul peak "
        f"{peaks['float32'] / 1e9:.0f} GFLOP/s fp32, {peaks['bfloat16'] / 1e9:.0f} bf16; "
        f"load average {load_average():.1f}",
        flush=True,
    )

    specs = {f"textbatch {mode}": ("textbatch", mode) for mode in ours_modes}
    specs["transformers (torch fp32)"] = ("transformers", "fp32")
    try:
        import ctranslate2  # noqa: F401

        specs.update({f"CTranslate2 {q}": ("CTranslate2", q) for q in ("float32", "int8")})
    except ImportError:
        print("(ctranslate2 is not importable: skipped)")
    rss = {}
    for name, (kind, option) in specs.items():
        probe = run_isolated(
            peak_rss_probe, kind, option, str(checkpoint), str(workdir), args.new_tokens, batches[0]
        )
        rss[name] = probe["peak_rss"]

    systems = {}
    for name, (kind, option) in specs.items():
        if kind == "textbatch":
            systems[name] = textbatch_generate(checkpoint, option, args.new_tokens)
        elif kind == "transformers":
            systems[name] = transformers_generate(checkpoint, args.new_tokens)
        else:
            systems[name] = ctranslate2_generate(checkpoint, workdir, option, args.new_tokens)

    results = {}
    for beams, mode in ((1, "greedy"), (4, "beam 4")):
        load_before = load_average()
        for name, result in measure(systems, batches, beams, args.new_tokens).items():
            result["load"] = f"{load_before:.1f} / {load_average():.1f}"
            results[(mode, name)] = result
            print(f"  {mode:7} {name:28} {result['tokens_per_second']:8,.0f} generated tok/s", flush=True)

    ours_name = "textbatch float32"
    rows = []
    for (mode, name), result in results.items():
        ours = results[(mode, ours_name)]["tokens_per_second"]
        beams = 1 if mode == "greedy" else 4
        flops = args.batches * generation_flops(args.batch_size, args.source_tokens, args.new_tokens, beams)
        compiled = result["compile_seconds"]
        rows.append([
            mode,
            name,
            f"{result['tokens_per_second']:,.0f}",
            f"{ours / result['tokens_per_second']:.2f}x",
            "-" if compiled is None else f"{compiled:.1f}",
            f"{result['seconds']:.1f}",
            f"{result['generated'] / result['cpu_seconds']:,.0f}",
            gb(rss[name]),
            f"{flops / result['seconds'] / peaks['float32']:.0%}",
            result["load"],
        ])
    headers = ["mode", "system", "generated tok/s", f"{ours_name} / this", "compile s", "seconds", "tok / CPU-s",
               "peak RSS GB", "MFU (fp32 peak)", "load before / after"]
    print()
    print(markdown_table(headers, rows))
    for mode in ("greedy", "beam 4"):
        theirs = results[(mode, "transformers (torch fp32)")]["outputs"]
        for name in systems:
            if name.startswith("textbatch"):
                print(f"{mode}: {name} vs transformers: {agreement(results[(mode, name)]['outputs'], theirs)}")


if __name__ == "__main__":
    main()

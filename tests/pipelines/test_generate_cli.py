"""The command line of pipelines/generate.py (parsing only; the run itself is in test_generate_job.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from textbatch.jobs.generate import DEFAULT_OUTPUT, SAMPLE_CORPUS, TINY_MODEL, GenerateOptions, GenerateSummary

SCRIPT = Path(__file__).resolve().parents[2] / "pipelines" / "generate.py"


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("generate_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_arguments_mean_the_bundled_sample(cli):
    options = cli.parse_args([])
    assert options == GenerateOptions()
    assert (options.input, options.model, options.output) == (str(SAMPLE_CORPUS), str(TINY_MODEL), DEFAULT_OUTPUT)
    assert (options.batch_tokens, options.batch_size, options.template) == (2048, None, None)
    assert options.generation() == {"max_new_tokens": 64}  # the rest: the checkpoint's generation_config.json


def test_every_option_reaches_the_job(cli):
    options = cli.parse_args(
        "--input s3://bucket/articles/ --output gs://bucket/out/ --model google/flan-t5-base --prompt-column body "
        "--id-column doc_id --max-length 384 --batch-size 16 --model-actors 3 --tokenizer-actors 5 --dtype bfloat16 "
        "--max-new-tokens 48 --min-new-tokens 4 --num-beams 4 --length-penalty 0.8 --early-stopping never "
        "--num-return-sequences 2 --no-do-sample --temperature 0.7 --top-k 0 --top-p 0.9 --seed 11 "
        "--repetition-penalty 1.3 --no-repeat-ngram-size 3".split()
        + ["--template", "summarize: {text}"]
    )
    assert options == GenerateOptions(
        input="s3://bucket/articles/",
        output="gs://bucket/out/",
        model="google/flan-t5-base",
        text_column="body",
        id_column="doc_id",
        max_length=384,
        batch_tokens=None,  # --batch-size alone: no token budget
        batch_size=16,
        model_actors=3,
        tokenizer_actors=5,
        dtype="bfloat16",
        template="summarize: {text}",
        max_new_tokens=48,
        min_new_tokens=4,
        num_beams=4,
        length_penalty=0.8,
        early_stopping="never",
        num_return_sequences=2,
        do_sample=False,
        temperature=0.7,
        top_k=0,
        top_p=0.9,
        seed=11,
        repetition_penalty=1.3,
        no_repeat_ngram_size=3,
    )
    assert options.returns == 2 and options.generation()["early_stopping"] == "never"
    both = cli.parse_args(["--batch-size", "8", "--batch-tokens", "1024", "--early-stopping", "TRUE", "--do-sample"])
    assert (both.batch_size, both.batch_tokens, both.early_stopping, both.do_sample) == (8, 1024, True, True)
    assert cli.parse_args(["--text-column", "body"]).text_column == "body"


def test_help_lists_every_flag_and_bad_values_exit_with_a_message(cli, capsys):
    with pytest.raises(SystemExit) as done:
        cli.parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    flags = (
        "--input --output --model --text-column --prompt-column --id-column --template --max-length --batch-tokens "
        "--batch-size --model-actors --tokenizer-actors --dtype --max-new-tokens --min-new-tokens --num-beams "
        "--length-penalty --early-stopping --num-return-sequences --do-sample --no-do-sample --temperature --top-k "
        "--top-p --seed --repetition-penalty --no-repeat-ngram-size"
    )
    for flag in flags.split():
        assert flag in text, flag
    for argv, message in (
        (["--template", "summarize: {txt}"], r"has the field {txt}; the only field is {text}"),
        (["--num-return-sequences", "2"], "greedy search returns one sequence per prompt"),
        (["--num-beams", "2", "--num-return-sequences", "3"], r"num_return_sequences \(3\) cannot exceed num_beams"),
        (["--top-p", "1.5"], r"top_p must be in \[0, 1\]"),
        (["--batch-size", "0"], "batch_size must be at least 1"),
        (["--early-stopping", "sometimes"], "expected true, false or never"),
    ):
        with pytest.raises(SystemExit) as done:
            cli.parse_args(argv)
        assert done.value.code == 2
        assert message.replace("\\", "") in capsys.readouterr().err, argv


def test_summary_reports_prompt_and_generated_tokens():
    summary = GenerateSummary(
        output="/out", rows=3, tokens=30, tokens_per_second=15.0, padding_efficiency=0.75, errors=1,
        error_kinds={"text is null": 1}, truncated=0, files=2, wall_seconds=2.0, generated_tokens=128,
        generated_tokens_per_second=64.0, load_seconds=0.5, model_seconds=1.5, compile_seconds=0.3,
        compiled_shapes=2, tokenize_seconds=0.2, write_seconds=0.1,
    )
    assert summary.format().splitlines() == [
        "output:             /out (2 files)",
        "rows:               3",
        "prompt tokens:      30",
        "prompt tokens/s:    15",
        "generated tokens:   128",
        "generated tokens/s: 64",
        "padding efficiency: 75.0%",
        "truncated:          0",
        "errors:             1",
        "  1 x text is null",
        "model load:         0.5 s (25% of wall)",
        "model calls:        1.5 s (75% of wall)",
        "  compiling:        0.3 s (2 shapes)",
        "tokenizing:         0.20 s",
        "writing:            0.10 s",
        "wall time:          2.0 s",
    ]

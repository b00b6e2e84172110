"""The command line of pipelines/embed.py (parsing only; the run itself is in test_embed_job.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from textbatch.jobs.embed import DEFAULT_OUTPUT, SAMPLE_CORPUS, TINY_MODEL, EmbedOptions

SCRIPT = Path(__file__).resolve().parents[2] / "pipelines" / "embed.py"


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("embed_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_arguments_mean_the_bundled_sample(cli):
    options = cli.parse_args([])
    assert options == EmbedOptions()
    assert (options.input, options.model, options.output) == (str(SAMPLE_CORPUS), str(TINY_MODEL), DEFAULT_OUTPUT)


def test_every_option_reaches_the_job(cli):
    options = cli.parse_args(
        [
            "--input",
            "s3://bucket/texts/",
            "--output",
            "gs://bucket/out/",
            "--model",
            "FacebookAI/xlm-roberta-base",
            "--text-column",
            "body",
            "--id-column",
            "doc_id",
            "--pooling",
            "cls",
            "--no-normalize",
            "--max-length",
            "128",
            "--batch-tokens",
            "2048",
            "--model-actors",
            "3",
            "--tokenizer-actors",
            "5",
            "--dtype",
            "bfloat16",
        ]
    )
    assert options == EmbedOptions(
        input="s3://bucket/texts/",
        output="gs://bucket/out/",
        model="FacebookAI/xlm-roberta-base",
        text_column="body",
        id_column="doc_id",
        pooling="cls",
        normalize=False,
        max_length=128,
        batch_tokens=2048,
        model_actors=3,
        tokenizer_actors=5,
        dtype="bfloat16",
    )


def test_help_and_bad_values(cli, capsys):
    with pytest.raises(SystemExit) as done:
        cli.parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--input",
        "--output",
        "--model",
        "--text-column",
        "--id-column",
        "--pooling",
        "--normalize",
        "--no-normalize",
        "--max-length",
        "--batch-tokens",
        "--model-actors",
        "--tokenizer-actors",
        "--dtype",
        "--incremental",
        "--commit-bytes",
        "--rows-per-model-call",
    ):
        assert option in text
    with pytest.raises(SystemExit) as done:
        cli.parse_args(["--batch-tokens", "0"])
    assert done.value.code == 2
    assert "batch_tokens must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_args(["--pooling", "max"])


def test_commit_options(cli, capsys):
    options = cli.parse_args(["--incremental", "--commit-bytes", "1000", "--rows-per-model-call", "64"])
    assert options == EmbedOptions(incremental=True, commit_bytes=1000, rows_per_model_call=64)
    with pytest.raises(SystemExit) as done:
        cli.parse_args(["--commit-bytes", "0"])
    assert done.value.code == 2 and "commit_bytes must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "name", "traceback"),
    [("--input", "corpus.parquet", False), ("--model", "model", True)],  # a bad input is its message alone
)
def test_credentials_never_reach_the_error_report(cli, capsys, tmp_path, ray_session, flag, name, traceback):
    """A run that fails on a location carrying a password and a token reports the error with both redacted: a bad
    input as a one-line error, any other failure (here a checkpoint that cannot be read) as its traceback."""
    location = f"http://reader:hunter2@127.0.0.1:9/{name}?token=t0ps3cret"
    assert cli.main([flag, location, "--output", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    report = captured.out + captured.err
    assert ("Traceback" in report) == traceback and "hunter2" not in report and "t0ps3cret" not in report
    assert "reader:***@127.0.0.1:9" in report
    if not traceback:
        assert report.startswith("embed.py: error: --input 'http://reader:***@127.0.0.1:9/")

"""Bad files fail fast and clearly: each job's command line, given an input with one file of every bad kind, stops
before any model loads with a message naming each file and its problem (exit status 1, no traceback). Skipping
them is tested through a real run in test_bad_rows.py, and kind by kind in tests/operators/test_preflight.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
JOBS = ("embed", "label", "classify", "generate")


def cli(job: str):
    spec = importlib.util.spec_from_file_location(f"{job}_pipeline", PIPELINES / f"{job}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder of one good file and one file of each bad kind, with the problem each must be reported with."""
    folder = tmp_path_factory.mktemp("bad_files")
    good = pa.table({"id": [1, 2], "text": ["ein Satz", "noch einer"]})
    files = {
        "good.parquet": (good, None),
        "no_text.parquet": (pa.table({"id": [3], "body": ["x"]}), "no column 'text' (--text-column)"),
        "no_id.parquet": (pa.table({"key": [4], "text": ["x"]}), "no column 'id' (--id-column)"),
        "numbers.parquet": (pa.table({"id": [5], "text": [7]}), "column 'text' (--text-column) has type int64, not"),
        "twice.parquet": (pa.table({"id": [6, 6], "text": ["x", "y"]}), "id 6 appears 2 times"),
        "later.parquet": (pa.table({"id": [2], "text": ["x"]}), f"id 2 is also in {folder}/good.parquet"),
    }
    for name, (table, _) in files.items():
        pq.write_table(table, folder / name)
    whole = (folder / "good.parquet").read_bytes()
    (folder / "cut.parquet").write_bytes(whole[: len(whole) - 100])  # a copy that lost its end
    problems = {name: problem for name, (_, problem) in files.items() if problem}
    problems["cut.parquet"] = "not a readable Parquet file"
    return folder, problems


@pytest.mark.parametrize("job", JOBS)
def test_each_bad_file_is_named_and_nothing_runs(ray_session, bad_input, tmp_path, capsys, job):
    folder, problems = bad_input
    status = cli(job).main(["--input", str(folder), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"{job}.py: error: {len(problems)} bad input files (--on-bad-file skip goes on")
    for name, problem in problems.items():
        assert f"  {folder / name}: {problem}" in err, name
    assert "good.parquet:" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_an_input_without_rows_is_an_error(ray_session, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}),
                   tmp_path / "empty" / "part-0.parquet")
    assert cli("embed").main(["--input", str(tmp_path / "empty"), "--on-bad-file", "skip"]) == 1
    assert capsys.readouterr().err == f"embed.py: error: --input {tmp_path / 'empty'} has no rows: nothing to do\n"


@pytest.mark.parametrize("job", JOBS)
def test_the_options_reach_every_job_and_are_documented(job, capsys):
    module = cli(job)
    options = module.parse_args(["--max-chars", "500", "--on-bad-file", "skip", "--batch-retries", "0"])
    assert (options.max_chars, options.on_bad_file, options.batch_retries) == (500, "skip", 0)
    defaults = module.parse_args([])
    assert (defaults.max_chars, defaults.on_bad_file, defaults.batch_retries) == (1_000_000, "fail", 1)
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert all(flag in help_text for flag in ("--max-chars", "--on-bad-file {fail,skip}", "--batch-retries"))
    for bad in (["--max-chars", "0"], ["--on-bad-file", "ignore"], ["--batch-retries", "-1"]):
        with pytest.raises(SystemExit) as done:
            module.parse_args(bad)
        assert done.value.code == 2

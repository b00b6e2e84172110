"""Nightly increments and failed runs, on the session's Ray: --incremental processes only the new input file and
keeps the committed parts as they are; a run that fails (a checkpoint that cannot be loaded, which no retry fixes)
commits nothing, so an earlier output stays readable and a first output stays absent."""

from __future__ import annotations

import collections
import dataclasses
import shutil

import pyarrow.parquet as pq
import pytest

from textbatch.jobs.embed import SAMPLE_CORPUS, TINY_MODEL, EmbedOptions, run_embed
from textbatch.outputs import read_output

ROWS = 15


@pytest.fixture
def corpus(tmp_path):
    table = pq.read_table(SAMPLE_CORPUS, columns=["id", "text"])
    folder = tmp_path / "corpus"
    folder.mkdir()
    for day in range(3):
        pq.write_table(table.slice(day * ROWS, ROWS), folder / f"day-{day}.parquet")
    return folder, table


@pytest.fixture
def broken_model(tmp_path):
    """The tiny checkpoint with its weights cut in half: config and tokenizer load, the model actors cannot."""
    folder = tmp_path / "broken-model"
    shutil.copytree(TINY_MODEL, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def ids_of(location):
    return collections.Counter(read_output(str(location)).to_arrow(columns=["id"]).column("id").to_pylist())


def test_incremental_runs_and_failed_runs(ray_session, corpus, broken_model, tmp_path):
    folder, table = corpus
    out = tmp_path / "out"
    options = EmbedOptions(
        input=str(folder), output=str(out), max_length=64, padded_lengths=(32, 64), commit_bytes=1,
        rows_per_model_call=16,
    )  # fmt: skip
    first = run_embed(options)
    assert (first.rows, first.files) == (3 * ROWS, 3)
    committed = {path: (out / path.rsplit("/", 1)[1]).stat().st_mtime_ns for path in read_output(str(out)).files}

    # The next night brings one more file.
    pq.write_table(table.slice(3 * ROWS, ROWS), folder / "day-3.parquet")
    night = run_embed(dataclasses.replace(options, incremental=True))
    assert (night.rows, night.input_files, night.committed_files, night.files) == (ROWS, 4, 3, 4)
    output = read_output(str(out))
    assert set(committed) < set(output.files)  # old parts + the new one
    assert all((out / path.rsplit("/", 1)[1]).stat().st_mtime_ns == when for path, when in committed.items())
    assert ids_of(out) == collections.Counter(table.slice(0, 4 * ROWS).column("id").to_pylist())

    # A replacement that fails leaves the committed output as it was.
    manifest = (out / "_SUCCESS").read_bytes()
    with pytest.raises(Exception, match="truncated or not a safetensors file"):
        run_embed(dataclasses.replace(options, model=str(broken_model)))
    assert (out / "_SUCCESS").read_bytes() == manifest and read_output(str(out)).files == output.files

    # A first run that fails leaves nothing a reader takes for output.
    fresh = tmp_path / "fresh"
    with pytest.raises(Exception, match="truncated or not a safetensors file"):
        run_embed(dataclasses.replace(options, model=str(broken_model), output=str(fresh)))
    assert not (fresh / "_SUCCESS").exists() and not list(fresh.glob("*.parquet"))
    with pytest.raises(FileNotFoundError, match="never committed"):
        read_output(str(fresh))

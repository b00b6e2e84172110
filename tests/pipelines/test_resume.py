"""Kill a job's driver with SIGKILL after some input groups are committed, rerun the same command: the rerun keeps
the committed groups (same part files, not recomputed), processes the rest, and every id comes out exactly once."""

from __future__ import annotations

import collections
import glob
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.pipelines.killed_driver import end_session, kill_after_a_commit, start_job
from textbatch.jobs.embed import SAMPLE_CORPUS
from textbatch.outputs import read_output

FILES, ROWS = 12, 20


@pytest.fixture
def corpus(tmp_path):
    table = pq.read_table(SAMPLE_CORPUS, columns=["id", "text"])
    folder = tmp_path / "corpus"
    folder.mkdir()
    for index in range(FILES):
        pq.write_table(table.slice(index * ROWS, ROWS), folder / f"day-{index:02d}.parquet")
    return folder, table.slice(0, FILES * ROWS).column("id").to_pylist()


def test_a_killed_run_resumes_where_it_stopped(corpus, tmp_path):
    folder, ids = corpus
    out = tmp_path / "out"
    job = start_job(folder, out, tmp_path / "killed.log")
    kill_after_a_commit(job, out, tmp_path / "killed.log")
    assert not (out / "_SUCCESS").exists(), "the job finished before it could be killed"
    with pytest.raises(FileNotFoundError, match="never committed"):
        read_output(str(out))

    # What the killed run left complete: its markers, and the part files' times.
    markers = [json.loads(Path(path).read_text()) for path in glob.glob(f"{out}/_temporary/*/part-*.json")]
    staged = {Path(path).name: Path(path).stat().st_mtime_ns for path in glob.glob(f"{out}/_temporary/*/*.parquet")}
    kept_rows = sum(marker["rows"] for marker in markers)
    assert markers and kept_rows % ROWS == 0  # one part per input file here, so every marked part is a whole group

    job = start_job(folder, out, tmp_path / "rerun.log")
    try:
        assert job.wait(timeout=300) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    finally:
        end_session(job.pid)
    report = (tmp_path / "rerun.log").read_text()
    assert f"inputs:             {FILES} files, {kept_rows // ROWS} already committed" in report
    assert f"rows:               {FILES * ROWS - kept_rows}\n" in report  # only the rest was computed

    output = read_output(str(out))
    assert collections.Counter(output.to_arrow(columns=["id"]).column("id").to_pylist()) == collections.Counter(ids)
    names = {Path(path).name for path in output.files}
    for marker in markers:  # the killed run's parts are in the output, the same files, not rewritten
        assert marker["part"] in names
        assert (out / marker["part"]).stat().st_mtime_ns == staged[marker["part"]]
    assert not (out / "_temporary").exists()

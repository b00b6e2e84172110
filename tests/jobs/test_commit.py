"""The commit protocol without Ray: a run's plan (what is done, what to do), resume after a kill, --incremental,
and the order of a commit (publish, manifest, then clean up). Write tasks are stood in for by `write_part`."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbatch.jobs.commit import MARKER_SUFFIX, PART_SUFFIX, marker_bytes, plan_commit
from textbatch.jobs.input_groups import InputFile
from textbatch.outputs import read_output

METADATA = {"job": "embed", "model": "/models/tiny", "textbatch_version": "1", "batch_tokens": 256}


def inputs(*specs):
    """InputFiles from (name, rows[, version]); each file is its own group with commit_bytes=1."""
    return [InputFile(f"/corpus/{spec[0]}.parquet", 10 * spec[1], spec[2] if len(spec) > 2 else "v1", spec[1])
            for spec in specs]


def plan(out, files, commit_bytes=1, **options):
    return plan_commit(str(out), files, job="embed", metadata={**METADATA, **options.pop("metadata", {})},
                       commit_bytes=commit_bytes, **options)


def write_part(commit, group_index, ids, task, marker=True):
    """What a write task does: the part file, then its marker."""
    label, key = commit.groups()[group_index]
    name = f"{label}-{task:06d}"
    table = pa.table({"id": pa.array(ids, pa.int64())}).replace_schema_metadata({"textbatch.embed": "{}"})
    pq.write_table(table, f"{commit.staging_path}/{name}{PART_SUFFIX}")
    if marker:
        with open(f"{commit.staging_path}/{name}{MARKER_SUFFIX}", "wb") as handle:
            handle.write(marker_bytes(name + PART_SUFFIX, key, len(ids)))
    return name + PART_SUFFIX


def run_fully(commit, first_id=0):
    """Write every todo group's rows in one part each, and commit."""
    for index, group in enumerate(commit.todo):
        write_part(commit, index, list(range(first_id, first_id + group.rows)), task=index)
        first_id += group.rows
    return commit.finish()


def ids(out):
    return sorted(read_output(str(out)).to_arrow().column("id").to_pylist())


def test_a_fresh_run_processes_everything_and_commits_with_a_manifest(tmp_path):
    out = tmp_path / "out"
    commit = plan(out, inputs(("a", 3), ("b", 2), ("c", 4)), commit_bytes=50)  # a+b reach 50 bytes; c alone
    assert [[file.path for file in group.files] for group in commit.todo] == [
        ["/corpus/a.parquet", "/corpus/b.parquet"], ["/corpus/c.parquet"]
    ]
    assert commit.sources() == {"/corpus/a.parquet": 0, "/corpus/b.parquet": 0, "/corpus/c.parquet": 1}
    commit.start()
    report = run_fully(commit)
    assert (report.files, report.rows, report.processed_files, report.committed_files) == (2, 9, 3, 0)
    assert sorted(path.name for path in out.iterdir()) == ["_SUCCESS", *sorted(json.loads(
        (out / "_SUCCESS").read_text())["files"])]  # staging gone
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert [file["path"] for file in manifest["groups"][0]["files"]] == ["/corpus/a.parquet", "/corpus/b.parquet"]
    assert manifest["groups"][0]["parts"][0]["rows"] == 5 and ids(out) == list(range(9))


def test_a_killed_run_is_resumed_without_recomputing_or_duplicating(tmp_path):
    out = tmp_path / "out"
    files = inputs(("a", 3), ("b", 2), ("c", 4))
    first = plan(out, files)
    first.start()
    done_part = write_part(first, 0, [0, 1, 2], task=0)  # a: complete
    write_part(first, 1, [3], task=1)  # b: one row of two written when the run was killed
    write_part(first, 2, [5, 6, 7, 8], task=2, marker=False)  # c: written, but its marker never was
    with pytest.raises(FileNotFoundError, match="never committed"):
        read_output(str(out))
    staged = out / "_temporary" / first.attempt / done_part
    written_at = staged.stat().st_mtime_ns

    rerun = plan(out, files, metadata={"batch_tokens": 512})  # a run-only option may change
    assert [group.group.files[0].path for group in rerun.done] == ["/corpus/a.parquet"]
    assert [group.files[0].path for group in rerun.todo] == ["/corpus/b.parquet", "/corpus/c.parquet"]
    rerun.start()
    report = run_fully(rerun, first_id=3)
    assert (report.processed_files, report.committed_files, report.rows) == (2, 1, 9)
    assert ids(out) == list(range(9))  # every id once: the half-written b and the unmarked c are not output
    assert (out / done_part).stat().st_mtime_ns == written_at  # moved, not rewritten
    assert not (out / "_temporary").exists()


def test_other_options_start_afresh_and_the_stale_attempt_is_removed_by_the_commit(tmp_path):
    out = tmp_path / "out"
    files = inputs(("a", 3))
    stale = plan(out, files, metadata={"model": "/models/other"})
    stale.start()
    write_part(stale, 0, [0, 1, 2], task=0)
    fresh = plan(out, files)
    assert fresh.done == [] and len(fresh.todo) == 1
    fresh.start()
    run_fully(fresh)
    assert min(path.name for path in out.iterdir()) == "_SUCCESS" and not (out / "_temporary").exists()


def test_incremental_runs_add_new_files_redo_changed_ones_and_keep_gone_ones(tmp_path):
    out = tmp_path / "out"
    first = plan(out, inputs(("a", 3), ("b", 2), ("c", 1)), incremental=True)
    first.start()
    run_fully(first)
    old = json.loads((out / "_SUCCESS").read_text())["files"]

    # Next night: d is new, b was rewritten (new version), c was deleted from the corpus.
    night = plan(out, inputs(("a", 3), ("b", 2, "v2"), ("d", 5)), incremental=True)
    assert sorted(group.group.files[0].path for group in night.done) == ["/corpus/a.parquet", "/corpus/c.parquet"]
    assert [group.files[0].path for group in night.todo] == ["/corpus/b.parquet", "/corpus/d.parquet"]
    night.start()
    report = run_fully(night, first_id=100)
    assert (report.processed_files, report.committed_files, report.rows) == (2, 1, 3 + 1 + 2 + 5)
    files = json.loads((out / "_SUCCESS").read_text())["files"]
    assert old[0] in files and old[2] in files and old[1] not in files  # a and c kept, the old b replaced
    assert not (out / old[1]).exists()  # deleted only after the new manifest was written
    assert len(ids(out)) == 11

    # Nothing new: nothing to do, and the output stays as it is.
    idle = plan(out, inputs(("a", 3), ("b", 2, "v2"), ("d", 5)), incremental=True)
    assert idle.todo == [] and idle.finish().files == len(files)


def test_incremental_drops_the_rows_of_a_file_now_left_out_as_bad(tmp_path):
    out = tmp_path / "out"
    first = plan(out, inputs(("a", 3), ("b", 2)), incremental=True, commit_bytes=50)  # one group: a and b
    first.start()
    run_fully(first)
    # b is still in the corpus but preflight now leaves it out (--on-bad-file skip): it is not gone, its rows go,
    # and a, which shared its group, is processed again. Which files are skipped is no option of the rows.
    skipping = {"on_bad_file": "skip", "skipped_files": [{"path": "/corpus/b.parquet", "problem": "null ids"}]}
    night = plan(out, inputs(("a", 3)), incremental=True, commit_bytes=50, left_out=["/corpus/b.parquet"],
                 metadata=skipping)
    assert night.done == [] and [group.files[0].path for group in night.todo] == ["/corpus/a.parquet"]
    night.start()
    run_fully(night, first_id=100)
    assert ids(out) == [100, 101, 102]


def test_incremental_refuses_other_options_and_unknown_outputs(tmp_path):
    out = tmp_path / "out"
    first = plan(out, inputs(("a", 3)))
    first.start()
    run_fully(first)
    with pytest.raises(ValueError, match=r"other options \(model: '/models/tiny' -> '/models/big'\)"):
        plan(out, inputs(("a", 3)), incremental=True, metadata={"model": "/models/big"})
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    pq.write_table(pa.table({"id": [1]}), legacy / "part-0.parquet")
    with pytest.raises(ValueError, match="no textbatch manifest"):
        plan(legacy, inputs(("a", 3)), incremental=True)


def test_replacing_an_output_deletes_it_only_after_the_new_one_is_committed(tmp_path):
    out = tmp_path / "out"
    first = plan(out, inputs(("a", 3)))
    first.start()
    run_fully(first)
    before = (out / "_SUCCESS").read_text()
    second = plan(out, inputs(("a", 3)))
    second.start()
    write_part(second, 0, [0, 1, 2], task=0)
    assert (out / "_SUCCESS").read_text() == before and ids(out) == [0, 1, 2]  # the old output, untouched
    second.finish()
    assert (out / "_SUCCESS").read_text() != before and ids(out) == [0, 1, 2]
    assert len(list(out.glob("*.parquet"))) == 1
    with pytest.raises(FileExistsError, match="overwrite is off"):
        plan(out, inputs(("a", 3)), overwrite=False)


def test_a_folder_with_other_files_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds other files, e.g. notes.txt"):
        plan(out, inputs(("a", 3)))
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", ".hidden", "_SUCCESS", "a b/c?x=1", "ünï cödé"])
def test_part_names_cannot_leave_the_output_folder(tmp_path, name):
    commit = plan(tmp_path / "out", [InputFile(f"bucket/{name}", 1, "v", 1)])
    label, _ = commit.groups()[0]
    assert label.startswith("part-") and "/" not in label and ".." not in label
    assert all(char.isascii() and (char.isalnum() or char in "-_") for char in label)

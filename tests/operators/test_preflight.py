"""The input files checked before a job starts (operators/preflight.py), without Ray: each kind of bad file is named
with its problem; with "skip" the good files go on and the bad ones are listed."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from textbatch.jobs import common
from textbatch.operators.preflight import ON_BAD_FILE, BadInputError, check_input

# file name -> (table, the problem preflight must report for it, or None when the file is good)
FILES = {
    "a.parquet": (pa.table({"id": [1, 2, 3], "text": ["a", "b", None]}), None),
    "b.parquet": (pa.table({"id": [4, 5, 5], "text": ["c", "d", "e"]}), "id 5 appears 2 times"),
    "c.parquet": (pa.table({"id": [6, 3], "text": ["f", "g"]}), "id 3 is also in {folder}/a.parquet"),
    "d.parquet": (pa.table({"id": [7], "body": ["h"]}), "no column 'text' (--text-column); its columns are ['id',"),
    "e.parquet": (pa.table({"id": [8], "text": [1.5]}), "column 'text' (--text-column) has type double, not text"),
    "f.parquet": (pa.table({"id": ["9"], "text": ["i"]}), "column 'id' (--id-column) has type string, but int64 in"),
    "g.parquet": (pa.table({"id": [10, None], "text": ["j", "k"]}), "1 null id in column 'id' (--id-column)"),
    "h.parquet": (pa.table({"id": [11, 12], "text": pa.array([None, None], pa.null())}), None),  # all null: rows
    "i.parquet": (pa.table({"id": [13, 6], "text": pa.array([b"l", b"m"])}), None),  # 6 is only in skipped c
    "j.parquet": (pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}), None),  # no rows
}
TRUNCATED = "k.parquet"  # a's bytes cut in half: no footer


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, (table, _) in FILES.items():
        pq.write_table(table, folder / name)
    whole = (folder / "a.parquet").read_bytes()
    (folder / TRUNCATED).write_bytes(whole[: len(whole) // 2])
    return folder


def expected_problems(folder) -> dict[str, str]:
    problems = {name: problem.format(folder=folder) for name, (_, problem) in FILES.items() if problem}
    problems[TRUNCATED] = "not a readable Parquet file (ArrowInvalid: Parquet magic bytes not found"
    return problems


def test_every_bad_file_is_named_with_its_problem(corpus):
    with pytest.raises(BadInputError) as raised:
        check_input(corpus)
    message = str(raised.value)
    assert message.startswith("7 bad input files (--on-bad-file skip goes on without them):")
    for name, problem in expected_problems(corpus).items():
        assert f"{corpus / name}: {problem}" in message, name
    assert "a.parquet:" not in message and "h.parquet" not in message and "i.parquet" not in message


def test_skip_goes_on_with_the_good_files_and_lists_the_others(corpus):
    checked = check_input(corpus, on_bad_file="skip")
    assert [os.path.basename(path) for path in checked.files.paths] == ["a.parquet", "h.parquet", "i.parquet",
                                                                        "j.parquet"]
    assert checked.rows == 3 + 2 + 2
    skipped = {os.path.basename(file.path): file.problem for file in checked.skipped}
    assert skipped.keys() == expected_problems(corpus).keys()
    for name, problem in expected_problems(corpus).items():
        assert skipped[name].startswith(problem), name


def test_one_bad_file_and_inputs_with_nothing_to_do(tmp_path, corpus):
    with pytest.raises(BadInputError, match=r"d.parquet: no column 'text'.*\n\(--on-bad-file skip goes on without"):
        check_input(corpus / "d.parquet")
    with pytest.raises(BadInputError, match="every file of --input .* is bad:\n  .*d.parquet: no column"):
        check_input(corpus / "d.parquet", on_bad_file="skip")
    with pytest.raises(BadInputError, match="j.parquet has no rows: nothing to do"):
        check_input(corpus / "j.parquet")
    with pytest.raises(BadInputError, match="no such file or folder"):
        check_input(tmp_path / "missing")
    with pytest.raises(ValueError, match="on_bad_file must be one of"):
        check_input(corpus, on_bad_file="ignore")
    assert ON_BAD_FILE == common.ON_BAD_FILE  # the jobs' option names the same choices


def test_pair_column_and_a_datasets_folder(tmp_path):
    pq.write_table(pa.table({"id": [1], "premise": ["p"]}), tmp_path / "pairs.parquet")
    with pytest.raises(BadInputError, match=r"no column 'hypothesis' \(--text-pair-column\)"):
        check_input(tmp_path / "pairs.parquet", text_column="premise", pair_column="hypothesis")
    folder = tmp_path / "saved"  # a datasets save_to_disk folder whose two shards share an id
    folder.mkdir()
    for index, ids in enumerate([[1, 2], [2, 3]]):
        shard = pa.table({"text": ["x", "y"], "id": ids})
        with pa.OSFile(str(folder / f"data-{index}.arrow"), "wb") as sink, pa.ipc.new_stream(sink, shard.schema) as w:
            w.write_table(shard)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": f"data-{i}.arrow"} for i in (0, 1)]}))
    with pytest.raises(BadInputError, match=r"data-1.arrow: id 2 is also in .*data-0.arrow"):
        check_input(folder)

"""bench/chaos.py: its counts come from the output (a duplicate, a lost row and errors are counted as such), and two of
its scenarios, run on the session's Ray, lose nothing and duplicate nothing."""

from __future__ import annotations

import pytest

from tests.bench.scripts import bench_script


@pytest.fixture(scope="module")
def chaos():
    with bench_script("chaos") as module:
        yield module


def test_the_counts_come_from_the_ids_and_errors(chaos):
    outcome = chaos.Outcome(
        "s", "f", input_ids=[1, 2, 3, 4], output_ids=[1, 1, 2, 4, 4, 4],
        errors=[None, None, "text is null", "model failed: ValueError: x", None, "model failed: OSError: y"],
    )  # fmt: skip
    assert (outcome.duplicates, outcome.lost) == (2, 1)
    assert outcome.row() == ["s", "f", 4, 6, 2, 1, "model failed: 2; text is null: 1"]


def test_bad_rows_and_a_killed_model_actor_lose_nothing(chaos, ray_session, tmp_path):
    corpora = chaos.write_corpora(tmp_path / "corpora", good=40)
    for scenario in (chaos.bad_rows, chaos.model_actor_killed):
        work = tmp_path / scenario.__name__
        work.mkdir()
        outcome = scenario(corpora, work)
        assert "did not happen" not in outcome.faults
        assert len(outcome.input_ids) == len(outcome.output_ids) == 48, scenario.__name__
        assert (outcome.duplicates, outcome.lost) == (0, 0), scenario.__name__
        assert outcome.errors_by_reason() == {"text is null": 1, "text is not valid UTF-8": 2}, scenario.__name__
    assert (tmp_path / "model_actor_killed" / "died").exists()
    assert "| model actor killed | " in chaos.markdown_table(chaos.HEADERS, [outcome.row()])

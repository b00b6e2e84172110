"""The shared steps as the generation job uses them (no Ray): the tokenizer picked from the checkpoint folder, the
prompt template, batches with a row limit, and the Parquet sink with the job's own columns."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray.data.block import BlockAccessor

from textbatch.jobs.generate import OUTPUT_COLUMNS, TINY_MODEL
from textbatch.operators.batching import plan_batches
from textbatch.operators.columns import MissingColumnError
from textbatch.operators.template import PromptTemplate
from textbatch.operators.tokenize import Tokenize
from textbatch.operators.write import ResultParquetDatasink, WrittenCounts, read_run_metadata
from textbatch.tokenizers import T5Tokenizer


def test_tokenize_picks_t5_from_the_folder_and_applies_the_template():
    # Prompt lengths with the template: 14, -, 8, 68, 24 tokens (the tiny vocabulary has little English).
    step = Tokenize(str(TINY_MODEL), max_length=20, template="summarize: {text}")
    reference = T5Tokenizer.from_pretrained(TINY_MODEL)
    assert isinstance(step.tokenizer, T5Tokenizer)
    texts = ["Der Zug.", None, "", "дождь " * 20, "{text} stays {as is}"]
    result = step(pa.table({"id": [3, 1, 4, 1, 5], "text": texts}))
    ids = result.column("input_ids").to_pylist()
    for index in (0, 2, 3, 4):
        prompt = "summarize: " + texts[index]
        assert ids[index] == reference(prompt, truncation=True, max_length=20)["input_ids"], prompt
    assert ids[0][-1] == 1 and ids[0][0] != 0  # "... </s>": T5 has no <s>
    assert ids[1] == [] and result.column("error").to_pylist() == [None, "text is null", None, None, None]
    assert result.column("truncated").to_pylist() == [False, False, False, True, True]
    assert len(ids[3]) == 20 and ids[3][-1] == 1


def test_templates_are_checked_when_made():
    assert PromptTemplate("Q: {text}\nA:")("2+2?") == "Q: 2+2?\nA:"
    assert PromptTemplate("{{literal}} {text} {text}")("x") == "{literal} x x"
    for template, message in (
        ("summarize: {txt}", r"has the field \{txt\}; the only field is \{text\}"),
        ("{text!r}", r"has the field \{text!r\}"),
        ("{text:>9}", r"has the field \{text:>9\}"),
        ("a } b {text}", "is malformed"),
        ("no field", r"has no \{text\} field"),
    ):
        with pytest.raises(ValueError, match=message):
            PromptTemplate(template)
    with pytest.raises(ValueError, match="has the field"):
        Tokenize(str(TINY_MODEL), max_length=8, template="{prompt}")


def test_row_limit_and_token_budget_together():
    lengths = [5, 9, 30, 31, 7, 2, 16, 17, 3]
    by_rows = plan_batches(lengths, None, (16, 32), batch_size=3)
    assert [(batch.length, batch.size, len(batch.rows)) for batch in by_rows] == [(32, 3, 3), (16, 3, 3), (16, 3, 3)]
    both = plan_batches(lengths, 64, (16, 32), batch_size=3)  # 64 tokens hold 2 rows of 32, 4 rows of 16 (limit 3)
    assert [(batch.length, batch.size, len(batch.rows)) for batch in both] == [
        (32, 2, 2), (32, 2, 2), (16, 3, 3), (16, 2, 2)
    ]
    for plan in (by_rows, both):
        assert sorted(int(row) for batch in plan for row in batch.rows) == list(range(len(lengths)))
    with pytest.raises(ValueError, match="needs batch_tokens, batch_size or both"):
        plan_batches(lengths, None, (32,))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        plan_batches(lengths, None, (32,), batch_size=0)


def generated_table(returns: int) -> pa.Table:
    texts = [["a", "b"], None, ["c", "d"]] if returns > 1 else ["a", None, "c"]
    counts = [[3, 5], None, [1, 64]] if returns > 1 else [3, 0, 64]
    kind = pa.list_(pa.string()) if returns > 1 else pa.string()
    count_kind = pa.list_(pa.int32()) if returns > 1 else pa.int32()
    return pa.table(
        {
            "id": pa.array(["x", "y", "z"]),
            "n_input_tokens": pa.array([7, 0, 20], pa.int32()),
            "truncated": pa.array([False, False, True]),
            "generated_text": pa.array(texts, kind),
            "n_generated_tokens": pa.array(counts, count_kind),
            "error": pa.array([None, "text is null", None], pa.string()),
            "_padded_tokens": pa.array([16.0, 0.0, 32.0]),
        }
    )


def sink(path, **overrides):
    options = dict(
        columns=OUTPUT_COLUMNS, job="generate", metadata={"template": "summarize: {text}"},
        tokens_column="n_input_tokens", sum_columns=("n_generated_tokens",),
    )
    return ResultParquetDatasink(str(path), **{**options, **overrides})


@pytest.mark.parametrize("returns", [1, 2])
def test_the_sink_writes_the_jobs_columns_and_counts_them(tmp_path, returns):
    table = generated_table(returns)
    with pa.OSFile(str(tmp_path / "one.parquet"), "wb") as file:
        sink(tmp_path / "out").write_block_to_file(BlockAccessor.for_block(table), file)
    written = pq.read_table(tmp_path / "one.parquet")
    assert written.column_names == list(OUTPUT_COLUMNS)
    assert written.column("generated_text").to_pylist() == table.column("generated_text").to_pylist()
    metadata = read_run_metadata(str(tmp_path / "one.parquet"))
    assert metadata == {"template": "summarize: {text}", "file_counts": metadata["file_counts"]}
    assert metadata["file_counts"] == {"rows": 3, "errors": {"text is null": 1}, "truncated": 1}
    assert list(pq.read_schema(tmp_path / "one.parquet").metadata) == [b"textbatch.generate"]

    counts = WrittenCounts.of_table(table, "n_input_tokens", ("n_generated_tokens",))
    generated = 73 if returns > 1 else 67
    assert (counts.rows, counts.tokens, counts.processed_tokens, counts.padded_tokens) == (3, 27, 27, 48.0)
    assert (counts.errors, counts.truncated, dict(counts.sums)) == (1, 1, {"n_generated_tokens": generated})
    assert dict((counts + counts).sums) == {"n_generated_tokens": 2 * generated}


def test_the_sink_names_a_missing_column_and_a_job_without_truncation_counts_none(tmp_path):
    table = generated_table(1)
    with pytest.raises(MissingColumnError, match="write needs a column 'n_generated_tokens'"):
        sink(tmp_path).write([table.drop_columns(["n_generated_tokens"])], ctx=None)
    counts = WrittenCounts.of_table(table.drop_columns(["truncated"]), "n_input_tokens")
    assert (counts.truncated, dict(counts.sums)) == (0, {})

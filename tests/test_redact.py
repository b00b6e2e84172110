"""Credentials in locations never reach logs, errors, reports or output metadata."""

from __future__ import annotations

import logging

import pytest

from textbatch.redact import RedactingFilter, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://me:hunter2@host/a.parquet", "https://me:***@host/a.parquet"),
        ("s3://bucket/x?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1&page=2",
         "s3://bucket/x?X-Amz-Signature=***&X-Amz-Credential=***&page=2"),
        ("gs://b/o?token=t0k&alt=media", "gs://b/o?token=***&alt=media"),
        ("https://acct.blob.core.windows.net/c/f?sv=2022&sig=s1g%3D",
         "https://acct.blob.core.windows.net/c/f?sv=2022&sig=***"),
        ("error reading 'ftp://u:p4ss@h:21/f' (timed out)", "error reading 'ftp://u:***@h:21/f' (timed out)"),
        ("s3://bucket/path/file.parquet", "s3://bucket/path/file.parquet"),
        ("http://host:8080/a@b", "http://host:8080/a@b"),
        ("/local/path/with=equals", "/local/path/with=equals"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_the_log_filter_redacts_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("textbatch.test_redact")
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise OSError("cannot open https://me:hunter2@host/x")
    except OSError:
        logger.exception("reading %s failed", "s3://b/k?AWSAccessKeyId=AKIA&Signature=s3cr3t")
    text = caplog.text
    assert "hunter2" not in text and "s3cr3t" not in text and "AKIA" not in text
    assert "Signature=***" in text and "me:***@host" in text


def test_run_metadata_and_reports_record_locations_redacted():
    from textbatch.jobs.common import JobSummary, base_metadata
    from textbatch.jobs.embed import EmbedOptions

    options = EmbedOptions(input="https://u:pw1@host/corpus/?sig=abc", model="s3://b/m?X-Amz-Security-Token=tok")
    metadata = base_metadata(options, "embed", 8)
    assert metadata["input"] == "https://u:***@host/corpus/?sig=***"
    assert metadata["model"] == "s3://b/m?X-Amz-Security-Token=***"
    summary = JobSummary("s3://k:pw2@b/out", 0, 0, 0.0, 1.0, 0, {}, 0, 0, 0.0)
    assert "pw2" not in summary.format() and "s3://k:***@b/out" in summary.format()

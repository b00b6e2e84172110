"""Keep credentials out of logs, errors, reports and output metadata.

A location may carry a secret: `https://user:password@host/corpus.parquet`, a pre-signed URL
(`...?X-Amz-Signature=...&X-Amz-Credential=...`), `?token=...` or `?sig=...`. Anything textbatch echoes about a location
goes through `redact` first, which blanks the password of a URL's `user:password@` and the value of every query
parameter whose name looks like a secret, and leaves the rest readable:

    redact("https://me:hunter2@host/a.parquet?token=abc&page=2")  ->  "https://me:***@host/a.parquet?token=***&page=2"

`redact` works on any text, not only on a bare URL, so it can clean a whole error message or traceback. The driver's
log records are cleaned by `RedactingFilter` (installed by `textbatch.jobs.cli.prepare_driver`).
"""

from __future__ import annotations

import logging
import re

__all__ = ["MASK", "RedactingFilter", "redact"]

MASK = "***"

# scheme://user:password@  (the user name stays: it is rarely secret and helps to tell accounts apart)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@?#]*:)(?P<secret>[^\s/@?#]+)(?=@)")
# ?name=value or &name=value where the name says it is a secret
_SECRET_NAMES = (
    r"[a-z0-9_\-]*(?:key|token|secret|passw(?:or)?d|pwd|signature|sig|credential|auth|session)[a-z0-9_\-]*"
)
_QUERY_SECRET = re.compile(rf"(?P<head>[?&;](?:{_SECRET_NAMES})=)(?P<secret>[^\s&;#'\"]+)", re.IGNORECASE)


def redact(text: object) -> str:
    """`text` (a location, a message, a traceback) with URL passwords and secret query values replaced by ***."""
    text = str(text)
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda match: match["head"] + MASK, text)
    return _QUERY_SECRET.sub(lambda match: match["head"] + MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's formatted message (and its exception text) in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True

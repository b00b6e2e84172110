"""The reasons a row comes out with `error` set, and how the run report groups them.

An error message is a short, fixed reason, optionally followed by ": " and the row's own detail
("text is not valid UTF-8: invalid start byte at byte 3", "model failed: ValueError: ..."). The run report counts
rows by the reason alone, so that a thousand different details still make one line.
"""

from __future__ import annotations

NULL_TEXT = "text is null"
NULL_PAIR = "text_pair is null"
NOT_UTF8 = "text is not valid UTF-8"
NOT_A_STRING = "text is not a string"
TOKENIZER_FAILED = "tokenizer failed"
MODEL_FAILED = "model failed"

_MAX_DETAIL = 300  # characters of detail kept: a reason, not a traceback


def error_message(reason: str, detail: object = None) -> str:
    """`reason`, or "reason: detail" with the detail's first line, cut short."""
    if detail is None:
        return reason
    text = str(detail).strip().splitlines()[0] if str(detail).strip() else ""
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 1] + "…"
    return f"{reason}: {text}" if text else reason


def exception_message(reason: str, error: BaseException) -> str:
    """"reason: ExceptionType: message" for an exception a step caught."""
    return error_message(reason, f"{type(error).__name__}: {error}")


def error_reason(message: str) -> str:
    """The reason part of an error message (everything before the first ": ")."""
    return message.split(": ", 1)[0]

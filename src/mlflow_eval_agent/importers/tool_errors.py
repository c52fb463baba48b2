"""The rule that decides whether a tool's result reports an error.

Transcripts keep a failed tool call as text ("Error: order not found", "exitcode: 1 (execution
failed)", a JSON object with an "error" field). Such a result keeps its full text as the TOOL
span's output, and the span's status becomes ERROR with the first line of the text as the status
description, so the profile counts it like any failing span. The root span stays OK: the agent
saw the error and carried on (the "hidden failure" shape of real traces). No exception event is
added, because no exception was raised.
"""

from __future__ import annotations

import json
import re

# "Error: ...", "error - ...", "Exception: ...", "Traceback (most recent call last):",
# "KeyError: 'x'", "ValueError: ...", "Failed: ..." at the start of the result.
_ERROR_PREFIX = re.compile(
    r"^\s*(?:error\b|exception\b|traceback \(most recent call last\)|failed\s*:|\w*(?:error|exception)\s*:)",
    re.IGNORECASE,
)
# A code executor's report ("exitcode: 1 (execution failed)"); exit code 0 is success.
_EXIT_CODE = re.compile(r"^\s*exit\s*code\s*:\s*(-?\d+)", re.IGNORECASE)
_DESCRIPTION_LIMIT = 300


def error_description(result: str | None) -> str | None:
    """The status description for a result that reports an error, or None for a normal result."""
    if not result or not result.strip():
        return None
    text = result.strip()
    exit_code = _EXIT_CODE.match(text)
    if exit_code:
        return _first_line(text) if int(exit_code.group(1)) != 0 else None
    if _ERROR_PREFIX.match(text):
        return _first_line(text)
    return _json_error(text)


def _json_error(text: str) -> str | None:
    if not text.startswith("{") or len(text) > 100_000:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict) and value.get("error"):
        return _first_line(f"error: {value['error']}")
    return None


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0].strip()
    return line if len(line) <= _DESCRIPTION_LIMIT else line[: _DESCRIPTION_LIMIT - 3] + "..."

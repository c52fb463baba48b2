"""The rule that decides whether a tool's result reports an error.

Transcripts keep a failed tool call as text ("Error: order not found", "exitcode: 1 (execution
failed)", "The script ran, then exited with an error (POSIX exit code: 1)", a JSON object with an
"error" field or a non-zero "exit_code"). Such a result keeps its full text as the TOOL
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

# A code executor's exit-code report; exit code 0 is success, and a report decides the result
# whatever the output below it says. Executors print it as a line of its own at the top or the
# bottom of the result, so only short lines among the first and last few are read: a long web page
# or document that merely mentions exit codes in its prose is not a failed run.
_EXIT_NOUN = r"(?:exit[\s_-]*code|exit[\s_-]*status|return[\s_-]*code|returncode)"
_EXIT_REPORTS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # The line starts with it: "exitcode: 1 (execution failed)", "Exit code: 1", "[exit status = 2]".
        rf"^\W{{0,3}}{_EXIT_NOUN}\s*[:=]\s*(-?\d+)\b",
        # The whole line is it: "Exit code 1", "(exit status 127)".
        rf"^\W{{0,3}}{_EXIT_NOUN}\s+(-?\d+)\W{{0,3}}$",
        # After a past-tense verb: "The script ran, then exited with an error (POSIX exit code: 1)",
        # "Process finished with exit code 1", "returned non-zero exit status 2".
        rf"\b(?:exited|failed|returned|terminated|finished|completed|ended|stopped)\b[^\n.]{{0,40}}?{_EXIT_NOUN}\s*[:=]?\s*\(?(-?\d+)\b",
        # "Process exited with code 1", "exited with status 2".
        r"\bexited\s+with\s+(?:code|status)\s*[:=]?\s*(-?\d+)\b",
        # "The POSIX exit code was: 1."
        rf"\b{_EXIT_NOUN}\s+was\s*:\s*(-?\d+)\b",
    )
)
_REPORT_LINES = 3
_REPORT_LINE_CHARS = 200
_EXIT_FIELDS = ("exit_code", "exitCode", "exitcode", "returncode", "return_code")
_DESCRIPTION_LIMIT = 300


def error_description(result: str | None) -> str | None:
    """The status description for a result that reports an error, or None for a normal result."""
    if not result or not result.strip():
        return None
    text = result.strip()
    report = exit_report(text)
    if report is not None:
        line, code = report
        return _shorten(line) if code != 0 else None
    if _ERROR_PREFIX.match(text):
        return _first_line(text)
    return _json_error(text)


def exit_report(text: str) -> tuple[str, int] | None:
    """(the report's line, the exit code) of the first exit-code report at the top or bottom of `text`."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = lines[:_REPORT_LINES]
    tail = lines[max(_REPORT_LINES, len(lines) - _REPORT_LINES) :]
    for line in head + tail:
        if len(line) > _REPORT_LINE_CHARS:
            continue
        for pattern in _EXIT_REPORTS:
            found = pattern.search(line)
            if found:
                return line, int(found.group(1))
    return None


def _json_error(text: str) -> str | None:
    if not text.startswith("{") or len(text) > 100_000:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    if value.get("error"):
        return _first_line(f"error: {value['error']}")
    code = next((value[k] for k in _EXIT_FIELDS if isinstance(value.get(k), int) and not isinstance(value.get(k), bool)), 0)
    return f"exit code {code}" if code != 0 else None


def _first_line(text: str) -> str:
    return _shorten(text.strip().splitlines()[0].strip())


def _shorten(line: str) -> str:
    return line if len(line) <= _DESCRIPTION_LIMIT else line[: _DESCRIPTION_LIMIT - 3] + "..."

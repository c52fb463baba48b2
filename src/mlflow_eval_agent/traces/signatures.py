"""Error signatures: errors that differ only by ids, numbers, paths, quoted values or addresses
are the same failure.

"timed out after 30s for order 12345" and "timed out after 45s for order 98765" both become
"timed out after <N>s for order <N>". A signature is (exception type, span name, normalised
message); its id is a short stable hash of those three so tools can refer to it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

MAX_SIGNATURE_CHARS = 240
NO_MESSAGE = "(no error message)"

# Order matters: specific shapes first, so a UUID is not eaten as numbers, a URL not as a path.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<TIME>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<DATE>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]]+"), "<URL>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<EMAIL>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<ADDR>"),
    # Quoted values: 'x', "x", `x` (short ones; a quote inside a long sentence is left alone).
    (re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|`[^`\n]{0,200}`"), "<STR>"),
    # POSIX and Windows paths with at least two segments.
    (re.compile(r"(?:[A-Za-z]:\\|~?/)?(?:[\w.-]+[/\\]){1,}[\w.-]+\.\w{1,5}\b|(?<![\w<])/(?:[\w.-]+/)+[\w.-]*"), "<PATH>"),
    # Long hex runs (hashes, trace ids) and mixed letter+digit tokens (ord_8fz2k1, tr-ab12cd34).
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<HEX>"),
    # Ids mixing letters and at least three digits (ord_8fz2k1, order-12345); "gpt-4o" is kept.
    (re.compile(r"\b(?=[\w-]*[A-Za-z])(?=(?:[A-Za-z_-]*\d){3})[A-Za-z0-9][\w-]{3,}\b"), "<ID>"),
]
# HTTP status codes tell different failures apart (429 vs 500): keep them before numbers go.
_STATUS_BEFORE = re.compile(r"(?:status|code|HTTP)[:= ]{1,3}$", re.IGNORECASE)
# A number not inside a word ("v2", "gpt-4o" stay), with an optional sign, separators and exponent.
_NUMBER = re.compile(r"(?<![<\w])(?<![A-Za-z]-)[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")
_SPACES = re.compile(r"\s+")
_TYPE_PREFIX = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*:\s*(.*)$", re.DOTALL)


def normalize_error_message(text: str | None) -> str:
    """The message with ids, numbers, paths, quoted values and addresses replaced by placeholders.

    Only the first non-empty line is kept (tracebacks and validation details vary per call), and
    the result is capped at MAX_SIGNATURE_CHARS.
    """
    line = _first_line(text or "")
    if not line:
        return NO_MESSAGE
    for pattern, placeholder in _RULES:
        line = pattern.sub(placeholder, line)
    line = _NUMBER.sub(lambda m: _number(m, line), line)
    line = _SPACES.sub(" ", line).strip()
    return line[:MAX_SIGNATURE_CHARS]


def _number(match: re.Match[str], line: str) -> str:
    """Numbers become <N>, except HTTP status codes, which tell failures apart (429 vs 500)."""
    text = match.group(0)
    if len(text) == 3 and text[0] in "12345" and _STATUS_BEFORE.search(line[: match.start()]):
        return text
    return "<N>"


def split_type_prefix(description: str) -> tuple[str | None, str]:
    """'KeyError: \\'x\\'' -> ('KeyError', "'x'"); text without such a prefix -> (None, text)."""
    match = _TYPE_PREFIX.match(description or "")
    if match and _looks_like_type(match.group(1)):
        return match.group(1), match.group(2)
    return None, description or ""


def _looks_like_type(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper() or last.endswith(("Error", "Exception"))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What failed in one span: the exception type (when known) and the raw message."""

    exception_type: str | None
    message: str

    @property
    def normalized(self) -> str:
        return normalize_error_message(self.message)

    def signature_text(self) -> str:
        prefix = f"{self.exception_type}: " if self.exception_type else ""
        return f"{prefix}{self.normalized}"


def signature_id(exception_type: str | None, span_name: str, normalized: str) -> str:
    """A short stable id for one signature."""
    digest = hashlib.sha1(f"{exception_type or ''}\x1f{span_name}\x1f{normalized}".encode()).hexdigest()
    return f"sig-{digest[:10]}"


def error_from_span(span: dict[str, Any], status_message: str | None) -> ErrorInfo:
    """The error a span records: its last `exception` event, else its status message."""
    for event in reversed(span.get("events") or []):
        if not isinstance(event, dict) or event.get("name") != "exception":
            continue
        attrs = event.get("attributes") or {}
        exc_type = _plain(attrs.get("exception.type"))
        message = _plain(attrs.get("exception.message"))
        if exc_type or message:
            if not message and status_message:
                _, message = split_type_prefix(status_message)
            return ErrorInfo(exc_type or None, message or "")
    exc_type, message = split_type_prefix(status_message or "")
    return ErrorInfo(exc_type, message)


def _plain(value: Any) -> str:
    """Event attributes are plain strings from MLflow, sometimes JSON-quoted from OTLP."""
    if value is None:
        return ""
    text = str(value)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text

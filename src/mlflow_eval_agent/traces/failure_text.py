"""Words of failure in span content: one place for the patterns the profile counts and the checks test.

Every pattern works unchanged in Python's `re` (the profile) and in RE2 (the check engine), so
the count a planner reads and the check it proposes mean the same thing. All are case-insensitive
and deliberately narrow: phrases that report a failure, not words that merely occur in one.
"""

from __future__ import annotations

import re

# Error text in a span's output although the span did not fail: what web agents, terminals and
# content filters return as data.
ERROR_TEXT = {
    "http_error": r"\b(?:HTTP(?: Error)? [45]\d\d|[45]\d\d (?:Client|Server) Error|Error [45]\d\d|status(?: code)?:? [45]\d\d)\b",
    "traceback": r"Traceback \(most recent call last\)",
    "refusal": r"ResponsibleAIPolicyViolation|content[_ ]filter(?:ing)? (?:policy|triggered|result)|content management policy",
    "access_denied": r"\b(?:access denied|permission denied|403 forbidden)\b",
    "captcha": r"\b(?:captcha|are you a robot|verify you are (?:a )?human|unusual traffic from your)\b",
    "exit_code": r"\bexit ?code:? ?[1-9]\d*\b|\bexited with (?:an error|code [1-9])",
    "not_found": r"\bnot found\b|\bno results(?: found)?\b|\bdoes(?: not|n't) exist\b",
}
# The agent saying, in its own words, that it invented what it reports.
MADE_UP_DATA = (
    r"\b(?:hypothetical(?:ly)?|simulated?|simulating|placeholder|mock(?:ed)? (?:data|values|results?)|dummy (?:data|values)|"
    r"let'?s assume|assuming (?:that )?(?:the|a)|for (?:the sake of|illustration)|example data|sample data|made[- ]up)\b"
)
# A run stopped by its own limits, or a framework reporting that it is going round in circles.
LIMIT_REACHED = (
    r"\b(?:max(?:imum)? (?:time|turns?|rounds?|iterations?|steps?) (?:reached|exceeded)|"
    r"(?:time|turn|round|iteration|step|token) limit (?:reached|exceeded)|budget (?:reached|exceeded|exhausted)|ran out of (?:time|turns))\b"
)
LOOP_REPORT = r"\b(?:stuck in a loop|loop detected|repeating (?:myself|the same (?:action|step|call)s?)|stall(?:ed|ing)? detected)\b"
# Tool names that change something (orders, accounts, messages): the actions to confirm first.
CONSEQUENTIAL_TOOL = (
    r"^(?:cancel|modify|update|delete|remove|exchange|return|refund|transfer|create|send|book|pay|submit|place|charge|"
    r"change|set|add|post|write|approve|issue|close|reset|grant|revoke|purchase|schedule|reserve)(?:_|-|[A-Z]|$)"
)


def error_text_pattern(kinds: list[str] | None = None) -> str:
    """One alternation over the chosen error-text kinds (all when None)."""
    return "|".join(f"(?:{ERROR_TEXT[k]})" for k in (kinds or list(ERROR_TEXT)))


_ERROR_TEXT = {kind: re.compile(p, re.IGNORECASE) for kind, p in ERROR_TEXT.items()}
_MADE_UP = re.compile(MADE_UP_DATA, re.IGNORECASE)
_LIMIT = re.compile(LIMIT_REACHED, re.IGNORECASE)
_LOOP = re.compile(LOOP_REPORT, re.IGNORECASE)
_CONSEQUENTIAL = re.compile(CONSEQUENTIAL_TOOL)


def error_kinds(text: str) -> list[str]:
    return [kind for kind, pattern in _ERROR_TEXT.items() if pattern.search(text)]


def admits_made_up_data(text: str) -> bool:
    return _MADE_UP.search(text) is not None


def reports_limit(text: str) -> bool:
    return _LIMIT.search(text) is not None


def reports_loop(text: str) -> bool:
    return _LOOP.search(text) is not None


def is_consequential(tool_name: str) -> bool:
    return _CONSEQUENTIAL.search(tool_name or "") is not None

"""Secrets out of everything that leaves the process: by value and by shape.

Two kinds of knowledge:
- **by value**: the exact strings of every secret setting, every environment variable whose name
  looks like a credential (`*_TOKEN`, `*_KEY`, `*_SECRET`, `*PASSWORD*`, `*CREDENTIALS*`, Databricks
  credentials) and values loaded from `.env`;
- **by shape**: strings that look like keys whatever their origin (Anthropic/OpenAI-style keys,
  Databricks `dapi...` tokens, `Bearer ...` headers, AWS/GitHub/Google/Slack keys, JWTs, passwords
  in URLs).

Standard library only: the rendered `scorers.py` of a suite carries a copy of this module's
patterns and `scrub`, so verdict rationales in a CI job are scrubbed the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

REDACTED = "[REDACTED]"
# Shorter values are too likely to occur in ordinary text ("true", "1234") to be replaced.
MIN_SECRET_LENGTH = 8

SECRET_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"sk-ant-[A-Za-z0-9_\-]{16,}",  # Anthropic
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",  # OpenAI-style
        r"\bdapi[0-9a-f]{32}(?:-\d+)?\b",  # Databricks personal access token
        r"\bdose[0-9a-f]{32}\b",  # Databricks OAuth secret
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",  # GitHub tokens
        r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
        r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google API key
        r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
        r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
        r"(?<=[Bb][Ee][Aa][Rr][Ee][Rr] )[A-Za-z0-9._~+/=\-]{12,}",  # Authorization: Bearer <token>
        r"(?<=://)[^/\s:@\"]+:[^/\s@\"]+(?=@)",  # user:password@host in URLs (never across a JSON quote)
    )
)
# One pass to tell whether any pattern occurs: most text holds none, and scrub runs on every string.
_ANY_PATTERN = re.compile("|".join(f"(?:{p.pattern})" for p in SECRET_PATTERNS))

# Names of variables that hold credentials; matched on the upper-cased name.
_CREDENTIAL_NAME = re.compile(r"(?:_TOKEN|_KEY|_SECRET|_PAT)$|PASSWORD|PASSWD|SECRET_|CREDENTIALS?$|^DATABRICKS_(?:TOKEN|CLIENT_SECRET|PASSWORD)$")
# Names that match the shape above but hold no secret: the name of a key in a secret scope, say.
NOT_CREDENTIALS = frozenset({"EVAL_AGENT_SECRET_KEY", "EVAL_AGENT_SECRET_SCOPE", "AWS_ACCESS_KEY_ID", "PUBLIC_KEY", "SSH_AUTH_SOCK"})


def credential_name(name: str) -> bool:
    """True for environment variable names that look like they hold a credential."""
    upper = name.upper()
    return upper not in NOT_CREDENTIALS and bool(_CREDENTIAL_NAME.search(upper))


def credential_values(env: Mapping[str, str]) -> list[str]:
    """Values of every credential-looking variable in `env` that are long enough to redact."""
    return [v for k, v in env.items() if credential_name(k) and isinstance(v, str) and len(v.strip()) >= MIN_SECRET_LENGTH]


def _variants(value: str) -> list[str]:
    """The value as written, and as it appears inside JSON text (quotes and backslashes escaped)."""
    escaped = json.dumps(value)[1:-1]
    return [value] if escaped == value else [value, escaped]


def _forms(values: Iterable[str]) -> tuple[str, ...]:
    """Every long-enough value as written and as escaped inside JSON, longest first."""
    kept = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
    return tuple(sorted({form for v in kept for form in _variants(v)}, key=len, reverse=True))


# Secrets that only appear during a run (a short-lived Databricks token derived for a child
# process): once remembered, every Redactor and `scrub` in this process replaces them too.
_remembered: set[str] = set()
_remembered_forms: tuple[str, ...] = ()


def remember(*values: str) -> None:
    """Redact these values everywhere in this process from now on, whatever a Redactor was built with."""
    global _remembered_forms
    _remembered.update(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH)
    _remembered_forms = _forms(_remembered)


def _scrub(text: str, forms: tuple[str, ...]) -> str:
    for form in (*forms, *_remembered_forms) if _remembered_forms else forms:
        if form in text:
            text = text.replace(form, REDACTED)
    if _ANY_PATTERN.search(text):
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
    return text


def scrub(text: str, values: Iterable[str] = ()) -> str:
    """`text` with every known secret value and every secret-shaped string replaced by [REDACTED]."""
    return _scrub(text, _forms(values)) if text else text


class Redactor:
    """Scrubs text and nested data (dicts, lists, strings) with one fixed set of secret values."""

    def __init__(self, values: Iterable[str] = ()):
        self.values = tuple(sorted({v for v in values if v and len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True))
        self._forms = _forms(self.values)

    def text(self, text: str) -> str:
        return _scrub(text, self._forms) if isinstance(text, str) and text else text

    def data(self, value: object) -> object:
        """A copy of `value` with every string in it (keys included) scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def __call__(self, text: str) -> str:
        return self.text(text)


NO_REDACTION = Redactor()

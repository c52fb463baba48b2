"""Code checks as data: the check language, its one trusted engine, and the library of presets.

- `engine.py`   evaluates a check document (`{"version": 1, "fail_when": ...}`) on a trace; stdlib
                (+ RE2) only; copied verbatim into every generated suite. The grammar lives here.
- `presets.py`  the library: typed factories (`@check`) that return check documents.
- `_registry.py` the `@check` decorator: parameter models and documentation from the signatures.

No check is code: the agent and the offline planner write documents (or choose a preset), the
engine validates and evaluates them.
"""

from __future__ import annotations

from . import presets
from ._registry import CHECKS, Check, CheckInfo, Verdict, parse_args_section
from .engine import LANGUAGE_VERSION, RuleError, compile_check

PRESET_MODULES = (presets,)


def get_check(name: str) -> CheckInfo:
    """The registered preset `name`; KeyError with the known names otherwise."""
    try:
        return CHECKS[name]
    except KeyError:
        raise KeyError(f"unknown check {name!r}; known checks: {', '.join(sorted(CHECKS))}") from None


def list_checks() -> list[CheckInfo]:
    return list(CHECKS.values())


def selector_names(rule: object) -> set[str]:
    """Every span name (or wildcard pattern) a check document selects by: name, parent, ancestor."""
    found: set[str] = set()
    if isinstance(rule, dict):
        for key, value in rule.items():
            if key in ("spans", "prior", "then") and isinstance(value, dict):
                for part in ("name", "parent", "ancestor"):
                    names = value.get(part)
                    found.update([names] if isinstance(names, str) else [n for n in names or [] if isinstance(n, str)])
            found |= selector_names(value)
    elif isinstance(rule, list):
        for item in rule:
            found |= selector_names(item)
    return found


__all__ = [
    "CHECKS", "LANGUAGE_VERSION", "PRESET_MODULES", "Check", "CheckInfo", "RuleError", "Verdict",
    "compile_check", "get_check", "list_checks", "parse_args_section", "selector_names",
]

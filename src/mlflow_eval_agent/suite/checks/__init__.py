"""The library of parameterised code checks.

Each check is a small factory with typed parameters and a docstring that defines every argument,
registered with `@check`; calling it returns `run(trace, outputs) -> (passed, rationale)`. The
renderer copies the checks a suite uses (and `_trace.py`) into the suite's `scorers.py`, so the
modules here import only the standard library, `._trace` and `._registry`.
"""

from __future__ import annotations

from . import _errors, _latency, _output, _retrieval, _tools
from ._registry import CHECKS, Check, CheckInfo, Verdict, parse_args_section

# The modules holding checks, in the order their checks are listed to the agent.
CHECK_MODULES = (_errors, _tools, _latency, _output, _retrieval)


def get_check(name: str) -> CheckInfo:
    """The registered check `name`; KeyError with the known names otherwise."""
    try:
        return CHECKS[name]
    except KeyError:
        raise KeyError(f"unknown check {name!r}; known checks: {', '.join(sorted(CHECKS))}") from None


def list_checks() -> list[CheckInfo]:
    return list(CHECKS.values())


__all__ = ["CHECKS", "CHECK_MODULES", "Check", "CheckInfo", "Verdict", "get_check", "list_checks", "parse_args_section"]

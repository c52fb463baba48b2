"""Turning expected failures into one clear sentence and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer

from ..errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError
from ..interrupts import exit_code_for, signal_name
from ..redaction import credential_values, scrub
from ..settings import ConfigError
from ..store import StoreError
from ..traces.source import TraceSourceError


# How traces/source.check_reachable words a tracking server that is not there: a wrong or stopped
# --tracking-uri is a configuration mistake (exit 2, as the README says), not a failed run.
UNREACHABLE = "Cannot reach the MLflow tracking server"


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    # Settings may not exist yet (they failed to resolve): secrets by shape and credential variables.
    print(f"Error: {scrub(message, credential_values(os.environ))}", file=sys.stderr)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Wrap a command body: known errors print one line and exit with their code."""
    try:
        yield
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except StoreError as exc:
        raise fail(str(exc), exc.code) from None
    except UserError as exc:
        raise fail(str(exc), exc.code) from None
    except TraceSourceError as exc:
        usage = exc.user_error or str(exc).startswith(UNREACHABLE)
        raise fail(str(exc), EXIT_USAGE if usage else EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise fail(f"Interrupted ({signal_name()}); what was saved so far is kept.", exit_code_for()) from None


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UNREACHABLE", "UserError", "fail", "user_errors"]

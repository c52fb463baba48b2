"""Turning expected failures into one clear sentence and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer

from ..errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError
from ..redaction import credential_values, scrub
from ..settings import ConfigError
from ..store import StoreError
from ..traces.source import TraceSourceError


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    # Settings may not exist yet (they failed to resolve): secrets by shape and credential variables.
    print(f"Error: {scrub(message, credential_values(os.environ))}", file=sys.stderr)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Wrap a command body: known errors print one line and exit with their code."""
    try:
        yield
    except (ConfigError, StoreError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except UserError as exc:
        raise fail(str(exc), exc.code) from None
    except TraceSourceError as exc:
        raise fail(str(exc), EXIT_USAGE if exc.user_error else EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise fail("Interrupted.", EXIT_FAILED) from None


__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UserError", "fail", "user_errors"]

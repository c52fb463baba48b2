"""Exit codes and the error for user mistakes, shared by every layer (the CLI turns them into output)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # tasks failed, the run stopped early on an error, or a server error
EXIT_USAGE = 2  # a usage or configuration mistake
EXIT_LIMIT = 3  # stopped at --max-iterations or --max-budget-usd, state saved (0 with --limit-stop-ok)


class UserError(Exception):
    """A mistake the user can fix, or a server problem; `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code

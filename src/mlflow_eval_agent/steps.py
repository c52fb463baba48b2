"""Progress of long steps (seeding, profiling, validating, importing), reported by the code doing the
work and shown by whoever listens: the console (`progress.ConsoleSteps`) or nobody (`NO_STEPS`).

A leaf module like errors.py, so traces/, suite/ and importers/ can report without knowing the console.
"""

from __future__ import annotations

from typing import Protocol


class Steps(Protocol):
    def start(self, label: str, total: int | None = None, unit: str = "") -> None:
        """A new step; `total` when known (None: a count without a bar), `unit` names what is counted."""

    def update(self, done: int, total: int | None = None) -> None:
        """How far the current step is (absolute), and its total when learned late."""

    def finish(self, note: str = "") -> None:
        """The current step is over; `note` is shown with it."""


class _Quiet:
    def start(self, label: str, total: int | None = None, unit: str = "") -> None:
        pass

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def finish(self, note: str = "") -> None:
        pass


NO_STEPS: Steps = _Quiet()

"""What a session has used of its limits, over its whole life: every run on it (a resume by hand, a
job task's retry) continues with what is left instead of starting fresh counters.

Kept in the session's state (`state/budget.json`, written atomically through the SessionStore and
pushed to the volume): agent sessions started (`--max-iterations` counts them), the cost the
finished ones reported (`--max-budget-usd`), and how many runs used the session. A session is
counted when it starts, so a run killed in the middle of one has still used that iteration; its
cost is known only when it reports one. A session from before this file existed (or a broken file,
moved aside) is rebuilt from `state/sessions.json`, the history of finished sessions.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from .store import CorruptStateError, SessionStore

BUDGET_FILE = "state/budget.json"


class SessionBudget(BaseModel):
    iterations: int = Field(0, ge=0, description="Agent sessions started on this session, over every run.")
    spent_usd: float = Field(0.0, ge=0, description="Cost reported by the agent sessions that finished.")
    runs: int = Field(0, ge=0, description="Runs (processes) that worked on this session.")
    last_stop: str | None = Field(None, description="Why the last run stopped.")

    def remaining_usd(self, limit: float | None) -> float | None:
        return None if limit is None else max(0.0, limit - self.spent_usd)

    @classmethod
    def from_history(cls, history: object) -> SessionBudget:
        """Totals from `state/sessions.json` (a list of finished sessions with `cost_usd`)."""
        rows = [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []
        spent = sum(float(r.get("cost_usd") or 0.0) for r in rows)
        return cls(iterations=len(rows), spent_usd=spent, runs=1 if rows else 0)


def load_budget(store: SessionStore, history_file: str, notice: Callable[[str], None]) -> SessionBudget:
    """The session's budget so far; rebuilt from the session history when absent or broken."""
    try:
        found = store.read_model(BUDGET_FILE, SessionBudget)
    except CorruptStateError as exc:
        notice(f"{exc} The budget is rebuilt from {history_file}.")
        found = None
    if found is not None:
        return found
    try:
        return SessionBudget.from_history(store.read_json(history_file))
    except CorruptStateError as exc:
        notice(f"{exc} The budget starts again from zero.")
        return SessionBudget()


def save_budget(store: SessionStore, budget: SessionBudget) -> None:
    store.write_model(BUDGET_FILE, budget)

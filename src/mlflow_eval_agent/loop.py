"""The autonomous loop: an initializer until a valid plan exists, then one fresh worker per task.

Every decision comes from the plan in the store, never from model text. Bounds: iterations,
attempts per task, initializer attempts, consecutive model-API failures, and budget. Iterations and
budget hold over the session's whole life (`budget.py`, `state/budget.json`): a resumed or retried
run continues with what is left. A stop at either limit exits 3 (EXIT_LIMIT), or 0 with
`--limit-stop-ok` (the bundle's jobs pass it, so Databricks does not retry a run that did what it
was allowed to do).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from .budget import SessionBudget, load_budget, save_budget
from .errors import EXIT_FAILED, EXIT_LIMIT, EXIT_OK
from .interrupts import exit_code_for
from .plan import Task, TaskPlan, TaskStatus, load_plan, save_plan
from .prompts import load_prompt
from .session import SessionObserver, SessionOutcome, SessionRequest, run_session
from .settings import Settings
from .store import CorruptStateError, SessionStore

SESSIONS_FILE = "state/sessions.json"
INITIALIZER_ATTEMPTS = 3
API_RETRIES = 3
STORE_RETRIES = 4  # consecutive tracking-store failures before the run stops (state saved, resumable)
LIMIT_STOPS = ("max_iterations", "budget")

StopReason = Literal["completed", "tasks_failed", "max_iterations", "budget", "api_errors", "store_unavailable", "no_plan", "interrupted"]

STOP_MESSAGES: dict[str, str] = {
    "completed": "All tasks completed.",
    "tasks_failed": "The plan finished, but some tasks failed (see the reasons above).",
    "max_iterations": "Stopped at --max-iterations before the plan was done (state saved; resume with a higher limit to go on).",
    "budget": "Stopped: the --max-budget-usd budget is used up (state saved; resume with a higher budget to go on).",
    "api_errors": "Stopped: the model API kept failing.",
    "store_unavailable": "Stopped: the tracking store kept failing; no task was charged for it (state saved; resume with the same --session-id once the store is back).",
    "no_plan": "Stopped: the initializer did not produce a valid plan.",
    "interrupted": "Interrupted.",
}


class RunReport(BaseModel):
    session_id: str
    plan: TaskPlan | None
    sessions: list[SessionOutcome] = Field(default_factory=list)
    stop_reason: StopReason
    detail: str | None = None
    budget: SessionBudget | None = Field(None, description="What the session used over all its runs.")
    limit_stop_ok: bool = False
    signal: int | None = Field(None, description="The signal that interrupted the run (exit 128 + its number).")

    @property
    def exit_code(self) -> int:
        if self.stop_reason == "completed":
            return EXIT_OK
        if self.stop_reason == "interrupted":
            return exit_code_for(self.signal)
        if self.stop_reason in LIMIT_STOPS:
            return EXIT_OK if self.limit_stop_ok else EXIT_LIMIT
        return EXIT_FAILED

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.sessions)

    @property
    def message(self) -> str:
        base = STOP_MESSAGES[self.stop_reason]
        return f"{base} {self.detail}" if self.detail else base


class LoopHooks:
    """Callbacks for progress and self-tracing. The default does nothing."""

    def session_observers(self, request: SessionRequest, index: int) -> list[SessionObserver]:
        return []

    def session_started(self, request: SessionRequest, index: int) -> None: ...
    def session_finished(self, request: SessionRequest, outcome: SessionOutcome) -> None: ...
    def notice(self, message: str) -> None: ...


SessionRunner = Callable[[Settings, SessionStore, SessionRequest, Path], Awaitable[SessionOutcome]]
StoreProbe = Callable[[], str | None]  # None when the tracking store answers, else why it does not


@dataclass
class AutonomousLoop:
    settings: Settings
    store: SessionStore
    config_dir: Path
    hooks: LoopHooks = field(default_factory=LoopHooks)
    runner: SessionRunner = run_session
    backoff_s: Callable[[int], float] = lambda attempt: min(60.0, 5.0 * 2 ** (attempt - 1))
    probe: StoreProbe = lambda: None
    sessions: list[SessionOutcome] = field(default_factory=list)  # this run's
    budget: SessionBudget | None = None  # the session's, over every run (loaded by run())

    # --- plan and history in the store ---------------------------------------------------------
    def load_plan(self) -> TaskPlan | None:
        return load_plan(self.store, self.hooks.notice)

    def save_plan(self, plan: TaskPlan) -> None:
        save_plan(self.store, plan)

    def record(self, outcome: SessionOutcome) -> None:
        self.sessions.append(outcome)
        try:
            history = self.store.read_json(SESSIONS_FILE) or []
        except CorruptStateError as exc:
            self.hooks.notice(str(exc))
            history = []
        history.append(json.loads(outcome.model_dump_json()))
        self.store.write_json(SESSIONS_FILE, history)

    def load_budget(self) -> SessionBudget:
        if self.budget is None:
            self.budget = load_budget(self.store, SESSIONS_FILE, self.hooks.notice)
        return self.budget

    def save_budget(self) -> None:
        save_budget(self.store, self.load_budget())

    @property
    def spent(self) -> float:
        """Spent by this session over every run (this run's sessions included)."""
        return self.load_budget().spent_usd

    def remaining_budget(self) -> float | None:
        return self.load_budget().remaining_usd(self.settings.max_budget_usd)

    # --- the loop --------------------------------------------------------------------------------
    async def run(self) -> RunReport:
        plan = self.load_plan()
        used = self.load_budget()
        used.runs += 1
        self.save_budget()
        init_failures = api_failures = store_failures = 0
        while True:
            if plan is not None and plan.done:
                reason: StopReason = "completed" if plan.counts()["failed"] == 0 else "tasks_failed"
                return self.report(plan, reason)
            if used.iterations >= self.settings.max_iterations:
                return self.report(plan, "max_iterations", f"({used.iterations} sessions over {used.runs} run(s) of this session)")
            budget = self.remaining_budget()
            if budget is not None and budget <= 0:
                return self.report(plan, "budget", f"(spent ${used.spent_usd:.2f} over {used.runs} run(s) of this session)")
            # A tracking-store outage (before a session, or the reason one failed) is never charged
            # to the initializer or a task: every path that finds one ends in the one block below.
            down = self.probe()
            if not down and plan is None:
                outcome = await self.initializer(budget)
                plan = self.load_plan()
                if plan is None and not outcome.retryable:
                    down = self.probe()  # the initializer could not read the traces: not its fault
                    if not down:
                        init_failures += 1
                        if init_failures >= INITIALIZER_ATTEMPTS:
                            why = outcome.error or "it ended without calling write_plan"
                            return self.report(None, "no_plan", f"{init_failures} initializer sessions failed; last: {why}")
            elif not down:
                task = plan.next_task()
                assert task is not None  # plan.done was checked above
                outcome, plan, down = await self.worker(plan, task, budget)
            if down:
                store_failures += 1
                if store_failures > STORE_RETRIES:
                    return self.report(plan, "store_unavailable", f"Last: {down}")
                await self.store_wait(down, store_failures)
                continue
            store_failures = 0
            if outcome.retryable:
                api_failures += 1
                if api_failures > API_RETRIES:
                    return self.report(plan, "api_errors", f"{api_failures} sessions in a row failed; last: {outcome.error}")
                wait = self.backoff_s(api_failures)
                self.hooks.notice(f"Model API error ({outcome.error}); retrying in {wait:.0f}s ({api_failures}/{API_RETRIES}).")
                await asyncio.sleep(wait)
            else:
                api_failures = 0

    async def store_wait(self, reason: str, failures: int) -> None:
        wait = self.backoff_s(failures)
        self.hooks.notice(f"Tracking store unavailable ({reason}); no task is charged for it. Retrying in {wait:.0f}s ({failures}/{STORE_RETRIES}).")
        await asyncio.sleep(wait)

    async def initializer(self, budget: float | None) -> SessionOutcome:
        request = SessionRequest(
            role="initializer",
            system_prompt=load_prompt("initializer"),
            prompt=initializer_prompt(self.settings),
            budget_usd=budget,
        )
        return await self.run_one(request)

    async def worker(self, plan: TaskPlan, task: Task, budget: float | None) -> tuple[SessionOutcome, TaskPlan, str | None]:
        """Run the task's session; the third value says why the tracking store failed, when it did
        (the task is then put back as it was before the session: no attempt charged)."""
        if task.status == TaskStatus.IN_PROGRESS:
            # The run was killed during this task: not the task's fault, so the attempt is given back.
            self.hooks.notice(f"Task '{task.id}' was interrupted in an earlier run; starting it again.")
            plan = plan.release(task.id)
        before = plan.get(task.id)
        plan = plan.start(task.id)
        self.save_plan(plan)
        request = SessionRequest(
            role="worker",
            system_prompt=load_prompt("worker"),
            prompt=worker_prompt(self.settings, plan, plan.get(task.id)),
            task_id=task.id,
            budget_usd=budget,
        )
        try:
            outcome = await self.run_one(request)
        except asyncio.CancelledError:
            current = self.load_plan() or plan
            if current.get(task.id).status != TaskStatus.COMPLETED:  # a completion before the stop stands
                self.save_plan(current.restore(before))
            raise
        settled = self.load_plan() or plan
        if settled.get(task.id).status != TaskStatus.COMPLETED and (down := self.probe()):
            settled = settled.restore(before)
            self.save_plan(settled)
            return outcome, settled, down
        return outcome, self.settle(task.id, outcome), None

    def settle(self, task_id: str, outcome: SessionOutcome) -> TaskPlan:
        """Decide the task's state from the store after its session ended."""
        plan = self.load_plan()
        if plan is None:
            raise RuntimeError("the plan disappeared during a worker session")  # only a bug or a hand edit does this
        task = plan.get(task_id)
        if task.status != TaskStatus.IN_PROGRESS:
            self.save_plan(plan)  # the worker called complete_task or fail_task; refresh the last-good copy
            return plan
        if outcome.retryable:
            plan = plan.release(task_id)  # the model API failed; not the task's fault
        else:
            reason = outcome.error or "the session ended without calling complete_task"
            plan = plan.record_failure(task_id, reason, self.settings.max_attempts)
        self.save_plan(plan)
        return plan

    async def run_one(self, request: SessionRequest) -> SessionOutcome:
        used = self.load_budget()
        used.iterations += 1  # counted before it runs: a run killed mid-session has used it
        self.save_budget()
        index = used.iterations
        request.observers = self.hooks.session_observers(request, index)
        self.hooks.session_started(request, index)
        outcome = await self.runner(self.settings, self.store, request, self.config_dir)
        used.spent_usd += max(0.0, outcome.cost_usd)
        self.save_budget()
        self.record(outcome)
        self.hooks.session_finished(request, outcome)
        return outcome

    def report(self, plan: TaskPlan | None, reason: StopReason, detail: str | None = None, signal: int | None = None) -> RunReport:
        used = self.load_budget()
        used.last_stop = reason
        self.save_budget()
        return RunReport(
            session_id=self.store.session_id, plan=plan, sessions=self.sessions, stop_reason=reason, detail=detail,
            budget=used.model_copy(), limit_stop_ok=self.settings.limit_stop_ok, signal=signal,
        )


def initializer_prompt(settings: Settings) -> str:
    return (
        f"Experiment to evaluate: {settings.experiment_id}.\n"
        "Start with the profile tool, drill into examples, save your analysis with save_analysis, "
        "then write the task plan with write_plan. End the session once the plan is saved."
    )


def worker_prompt(settings: Settings, plan: TaskPlan, task: Task) -> str:
    overview = "\n".join(f"- {t.id} [{t.status.value}] {t.type}: {t.name}" for t in plan.tasks)
    previous = f"\nThe previous attempt failed: {task.failure_reason}\n" if task.failure_reason else ""
    return (
        f"Experiment: {settings.experiment_id}.\n"
        f"Your task (attempt {task.attempts} of {settings.max_attempts}):\n"
        f"{task.model_dump_json(include={'id', 'name', 'type', 'details'}, indent=1)}\n"
        f"{previous}\nThe whole plan, for context (do only your task):\n{overview}\n\n"
        "Read state/analysis.json with read_state if you need the initializer's findings. When your task's "
        f"output exists and was checked, call complete_task with task_id '{task.id}'; if it cannot be done, "
        "call fail_task with the specific reason."
    )


class CombinedHooks(LoopHooks):
    """Several hooks as one (console progress and self-tracing, say)."""

    def __init__(self, *hooks: LoopHooks):
        self.hooks = hooks

    def session_observers(self, request: SessionRequest, index: int) -> list[SessionObserver]:
        return [o for h in self.hooks for o in h.session_observers(request, index)]

    def session_started(self, request: SessionRequest, index: int) -> None:
        for h in self.hooks:
            h.session_started(request, index)

    def session_finished(self, request: SessionRequest, outcome: SessionOutcome) -> None:
        for h in self.hooks:
            h.session_finished(request, outcome)

    def notice(self, message: str) -> None:
        for h in self.hooks:
            h.notice(message)

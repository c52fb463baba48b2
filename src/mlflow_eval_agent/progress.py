"""What the user sees while the loop runs, and the summary at the end (rich, plain when piped)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .loop import LoopHooks, RunReport
from .plan import TaskPlan
from .redaction import Redactor
from .session import SessionOutcome, SessionRequest
from .store import SessionStore
from .tools import ToolCallRecord

PIPED_WIDTH = 120


def make_console(stderr: bool = False) -> Console:
    """A console for our output; piped (CI, job logs) it is 120 columns wide rather than rich's 80."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


class _Rate(ProgressColumn):
    """Items per second of the step (e.g. traces/s), once a second has passed."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        unit = task.fields.get("unit") or ""
        if not elapsed or elapsed < 0.5 or not task.completed or not unit:
            return Text("")
        return Text(f"{task.completed / elapsed:,.1f} {unit}/s", style="dim")


class ConsoleSteps:
    """`steps.Steps` on a rich console: a bar (or a counter) per long step, one final line when piped."""

    def __init__(self, console: Console):
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, label: str, total: int | None = None, unit: str = "") -> None:
        self.finish()
        columns = [SpinnerColumn(finished_text="✓"), TextColumn("{task.description}")]
        columns += [BarColumn(bar_width=30), MofNCompleteColumn()] if total else [TextColumn("{task.completed:,} " + (unit or ""))]
        columns += [_Rate(), TimeElapsedColumn(), TextColumn("{task.fields[note]}", style="dim")]
        self._progress = Progress(*columns, console=self.console)
        self._task = self._progress.add_task(label, total=total, unit=unit, note="")
        self._progress.start()

    def update(self, done: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, **({"total": total} if total else {}))

    def finish(self, note: str = "") -> None:
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        self._progress.update(self._task, total=task.total if task.total else task.completed, note=note)
        self._progress.stop()
        self._progress = None


STATUS_STYLE = {"completed": "green", "failed": "red", "pending": "yellow", "in_progress": "cyan"}


def short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConsoleObserver:
    """One session's live lines: tool calls as they happen, model text when verbose. Redacted."""

    def __init__(self, console: Console, verbose: bool, store: SessionStore, redactor: Redactor | None = None):
        self.console, self.verbose, self.store = console, verbose, store
        self.redactor = redactor or store.redactor

    def on_text(self, text: str) -> None:
        if self.verbose:
            self.console.print(f"  {short(self.redactor.text(text), 400)}", style="dim", highlight=False, markup=False)

    def on_tool_use(self, name: str, tool_input: dict[str, Any]) -> None:
        label = name.removeprefix("mcp__eval__")
        detail = f" {short(self.redactor.data(tool_input), 100)}" if self.verbose or not name.startswith("mcp__") else ""
        self.console.print(f"  · {label}{detail}", highlight=False, markup=False)

    def on_tool_call(self, record: ToolCallRecord) -> None:
        ms = (record.ended_ns - record.started_ns) / 1e6
        error = self.redactor.text(record.error or "")
        line = f"tool {record.name} {ms:.0f}ms" + (f" ERROR {short(error, 200)}" if record.is_error else "")
        self.store.append_log(f"{time.strftime('%H:%M:%S')} {line}")
        if record.is_error:
            self.console.print(f"    ✗ {record.name}: {short(error, 160)}", style="red", highlight=False, markup=False)


class ConsoleHooks(LoopHooks):
    def __init__(self, console: Console, store: SessionStore, verbose: bool, max_iterations: int, redactor: Redactor | None = None):
        self.console, self.store, self.verbose, self.max_iterations = console, store, verbose, max_iterations
        self.redactor = redactor or store.redactor
        self.spent = 0.0
        self.tokens = 0

    def session_observers(self, request: SessionRequest, index: int) -> list[Any]:
        return [ConsoleObserver(self.console, self.verbose, self.store, self.redactor)]

    def session_started(self, request: SessionRequest, index: int) -> None:
        what = f"task {request.task_id}" if request.task_id else "analyse traces and plan"
        self.console.rule(f"session {index}/{self.max_iterations} · {request.role} · {what}")
        self.store.append_log(f"{time.strftime('%H:%M:%S')} session {index} {request.role} {request.task_id or ''}")

    def session_finished(self, request: SessionRequest, outcome: SessionOutcome) -> None:
        self.spent += outcome.cost_usd
        self.tokens += outcome.tokens
        mark = "[red]✗[/red]" if outcome.error else "[green]✓[/green]"
        self.console.print(
            f"  {mark} {outcome.num_turns} turns · {outcome.tool_calls} tool calls · {outcome.tokens:,} tokens · "
            f"${outcome.cost_usd:.4f} · {outcome.duration_s:.1f}s   (run: {self.tokens:,} tokens, ${self.spent:.4f})"
        )
        error = self.redactor.text(outcome.error or "")
        if error:
            self.console.print(f"    {short(error, 300)}", style="red", highlight=False, markup=False)
        self.store.append_log(
            f"{time.strftime('%H:%M:%S')} session end turns={outcome.num_turns} tokens={outcome.tokens} "
            f"cost={outcome.cost_usd:.4f} error={error or '-'}"
        )
        self.store.sync()

    def notice(self, message: str) -> None:
        message = self.redactor.text(message)
        self.console.print(f"! {message}", style="yellow", highlight=False, markup=False)
        self.store.append_log(f"{time.strftime('%H:%M:%S')} notice {message}")


def plan_table(plan: TaskPlan) -> Table:
    table = Table(title="Tasks", title_justify="left")
    for column in ("id", "type", "status", "attempts", "note"):
        table.add_column(column)
    for task in plan.tasks:
        style = STATUS_STYLE.get(task.status.value, "")
        note = task.failure_reason or task.summary or ""
        table.add_row(task.id, task.type, f"[{style}]{task.status.value}[/{style}]", str(task.attempts), short(note, 240))
    return table


def sessions_table(sessions: list[SessionOutcome]) -> Table:
    table = Table(title="Sessions (this run)", title_justify="left")
    for column in ("#", "role", "task", "turns", "tools", "tokens", "cost $", "time s", "outcome"):
        table.add_column(column, justify="right" if column in ("#", "turns", "tools", "tokens", "cost $", "time s") else "left")
    for i, s in enumerate(sessions, 1):
        table.add_row(
            str(i), s.role, s.task_id or "-", str(s.num_turns), str(s.tool_calls), f"{s.tokens:,}",
            f"{s.cost_usd:.4f}", f"{s.duration_s:.1f}", short(s.error, 40) if s.error else "ok",
        )
    total_tokens = sum(s.tokens for s in sessions)
    table.add_row("", "total", "", "", str(sum(s.tool_calls for s in sessions)), f"{total_tokens:,}",
                  f"{sum(s.cost_usd for s in sessions):.4f}", f"{sum(s.duration_s for s in sessions):.1f}", "")
    return table


def print_summary(console: Console, report: RunReport, store: SessionStore) -> None:
    console.print()
    if report.plan:
        console.print(plan_table(report.plan))
    if report.sessions:
        console.print(sessions_table(report.sessions))
    style = "green" if report.exit_code == 0 else "red"
    console.print(f"[{style}]{report.message}[/{style}]", highlight=False)
    console.print(f"Session folder: {store.description}", highlight=False, markup=False)
    if report.exit_code != 0:
        console.print(f"Resume with: --session-id {report.session_id}", highlight=False, markup=False)

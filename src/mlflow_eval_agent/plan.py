"""The task plan (`eval_tasks.json`): what the initializer decides and the workers carry out.

The loop decides everything from this model, never from model text. Status changes go through the
methods here so attempts and failure reasons stay consistent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

if TYPE_CHECKING:
    from .store import SessionStore

PLAN_FILE = "eval_tasks.json"
# A copy of the plan written with every save: a truncated or hand-broken eval_tasks.json is restored
# from it, so completed work is never redone because the plan file went bad.
PLAN_BACKUP = "state/plan.last-good.json"
MAX_TASKS = 30

TaskType = Literal["dataset", "scorer", "script", "validation", "analysis"]


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Task(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Short unique id, e.g. 'dataset' or 'scorer-tool-errors'.")
    name: str = Field(min_length=1, max_length=200, description="One line saying what the task produces.")
    type: TaskType = Field(description="dataset | scorer | script | validation | analysis")
    status: TaskStatus = TaskStatus.PENDING
    details: str = Field(default="", max_length=4000, description="What to build and why, with the trace ids or signatures it is based on.")
    attempts: int = Field(default=0, ge=0)
    failure_reason: str | None = None
    summary: str | None = Field(default=None, description="What the worker reported when it finished.")


class TaskPlan(BaseModel):
    experiment_id: str | None = None
    created_at: str = Field(default_factory=_now)
    updated_at: str = Field(default_factory=_now)
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)

    @model_validator(mode="after")
    def _unique_ids(self) -> TaskPlan:
        seen: set[str] = set()
        dupes = [t.id for t in self.tasks if t.id in seen or seen.add(t.id)]
        if dupes:
            raise ValueError(f"task ids must be unique; repeated: {', '.join(sorted(set(dupes)))}")
        return self

    # --- queries ---------------------------------------------------------------------------
    def get(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"no task with id '{task_id}' (ids: {', '.join(t.id for t in self.tasks)})")

    def next_task(self) -> Task | None:
        """The task a worker should take: an interrupted one first, then the first pending."""
        for status in (TaskStatus.IN_PROGRESS, TaskStatus.PENDING):
            for task in self.tasks:
                if task.status == status:
                    return task
        return None

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in TaskStatus}
        for task in self.tasks:
            counts[task.status.value] += 1
        return counts

    @property
    def done(self) -> bool:
        return self.next_task() is None

    # --- transitions (return a new plan; the caller saves it) -------------------------------
    def _with(self, task_id: str, **changes: object) -> TaskPlan:
        self.get(task_id)  # raises a readable KeyError for unknown ids
        tasks = [t.model_copy(update=changes) if t.id == task_id else t for t in self.tasks]
        return self.model_copy(update={"tasks": tasks, "updated_at": _now()})

    def start(self, task_id: str) -> TaskPlan:
        task = self.get(task_id)
        return self._with(task_id, status=TaskStatus.IN_PROGRESS, attempts=task.attempts + 1)

    def complete(self, task_id: str, summary: str | None = None) -> TaskPlan:
        return self._with(task_id, status=TaskStatus.COMPLETED, summary=summary, failure_reason=None)

    def restore(self, before: Task) -> TaskPlan:
        """Put a task back as it was before a session (the session's failure was the store's, not the task's)."""
        self.get(before.id)
        tasks = [before if t.id == before.id else t for t in self.tasks]
        return self.model_copy(update={"tasks": tasks, "updated_at": _now()})

    def release(self, task_id: str) -> TaskPlan:
        """Back to pending without charging the attempt (the run was interrupted or the model API failed)."""
        task = self.get(task_id)
        return self._with(task_id, status=TaskStatus.PENDING, attempts=max(0, task.attempts - 1))

    def record_failure(self, task_id: str, reason: str, max_attempts: int) -> TaskPlan:
        """A failed attempt: back to pending, or failed for good once attempts are used up."""
        task = self.get(task_id)
        final = task.attempts >= max_attempts
        status = TaskStatus.FAILED if final else TaskStatus.PENDING
        if final:
            reason = f"{reason} (gave up after {task.attempts} attempt{'s' if task.attempts != 1 else ''})"
        return self._with(task_id, status=status, failure_reason=reason)


class PlanDraft(BaseModel):
    """What the model submits through the `write_plan` tool: tasks without bookkeeping fields."""

    class DraftTask(BaseModel):
        id: str = Task.model_fields["id"]
        name: str = Task.model_fields["name"]
        type: TaskType = Task.model_fields["type"]
        details: str = Task.model_fields["details"]

    tasks: list[DraftTask] = Field(min_length=1, max_length=MAX_TASKS)

    @field_validator("tasks")
    @classmethod
    def _has_validation_last(cls, tasks: list[DraftTask]) -> list[DraftTask]:
        if tasks[-1].type != "validation":
            raise ValueError("the last task must have type 'validation' (it runs the finished suite)")
        return tasks

    def to_plan(self, experiment_id: str | None, previous: TaskPlan | None = None) -> TaskPlan:
        """Keep the status of tasks the previous plan already completed (resume never redoes work)."""
        kept = {t.id: t for t in (previous.tasks if previous else []) if t.status == TaskStatus.COMPLETED}
        tasks = [kept.get(d.id) or Task(**d.model_dump()) for d in self.tasks]
        return TaskPlan(experiment_id=experiment_id, tasks=tasks)


# --- the plan in the session store ----------------------------------------------------------------
def save_plan(store: SessionStore, plan: TaskPlan) -> None:
    """The plan file and its last-good copy (both atomic)."""
    store.write_model(PLAN_FILE, plan)
    store.write_model(PLAN_BACKUP, plan)


def load_plan(store: SessionStore, notice: Callable[[str], None]) -> TaskPlan | None:
    """The plan; a corrupt plan file is set aside (reported) and replaced by the last good copy."""
    from .store import CorruptStateError

    try:
        return store.read_model(PLAN_FILE, TaskPlan)
    except CorruptStateError as exc:
        problem = str(exc)
    try:
        backup = store.read_model(PLAN_BACKUP, TaskPlan)
    except CorruptStateError:
        backup = None
    if backup is None:
        notice(f"{problem} No good copy was kept, so a new plan will be written.")
        return None
    store.write_model(PLAN_FILE, backup)
    done = backup.counts()["completed"]
    notice(f"{problem} Restored the last good plan ({done} completed task{'s' if done != 1 else ''} kept).")
    return backup

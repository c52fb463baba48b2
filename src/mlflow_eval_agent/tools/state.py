"""Agent tools for the session's plan and state: every write is validated, nothing is free-form."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

from ..plan import PLAN_FILE, PlanDraft, TaskPlan, TaskStatus, save_plan
from ..plan import load_plan as load_plan_file
from ..store import LOG_FILE
from ..store.base import RESERVED_DIRS
from ._base import NoArgs, ToolContext, ToolError, agent_tool

ANALYSIS_FILE = "state/analysis.json"
MAX_ARTIFACT_BYTES = 1_000_000
# Names that code owns: the model changes them only through their own tools. A folder is reserved
# bare and with anything below it ('state', 'state/x', './evaluation/'); hidden names (the session
# lock, temp files) are never the model's to write.
RESERVED_FILES = (PLAN_FILE, LOG_FILE)
RESERVED = (*RESERVED_FILES, *(f"{d}/" for d in RESERVED_DIRS))
# Files something could later run or import (a user's --user-scorers/--predict-fn, a shell, Jupyter,
# site's .pth): the model never writes them. Checks are data; the suite's code is rendered by us.
CODE_SUFFIXES = (".py", ".pyw", ".pyc", ".pyi", ".pth", ".pyx", ".so", ".sh", ".bash", ".zsh", ".ps1", ".bat", ".cmd", ".ipynb", ".js", ".mjs")


def reserved_reason(rel: str) -> str | None:
    """Why `rel` may not be written by write_artifact, or None."""
    parts = [p for p in PurePosixPath(rel).parts if p not in (".", "")]
    if not parts:
        return "an empty path names no file; give a file name such as notes/findings.md."
    first = parts[0].lower()
    if first in RESERVED_DIRS or (len(parts) == 1 and first in (f.lower() for f in RESERVED_FILES)):
        return (f"'{rel}' is managed by its own tool ({', '.join(RESERVED)} are reserved); "
                f"choose another path, e.g. notes/{parts[-1]}{'.md' if len(parts) == 1 else ''}.")
    if any(p.startswith(".") for p in parts):
        return f"'{rel}' is a hidden name, which the session keeps for itself; choose a visible one, e.g. notes/{parts[-1].lstrip('.') or 'notes'}.md."
    if parts[-1].lower().endswith(CODE_SUFFIXES):
        return (f"'{rel}' would be a program: artifacts are notes and data, never code (checks are data: add them with "
                f"the suite tools); write it as text, e.g. notes/{PurePosixPath(parts[-1]).stem}.md.")
    return None


def load_plan(ctx: ToolContext) -> TaskPlan | None:
    notices: list[str] = []
    plan = load_plan_file(ctx.store, notices.append)
    if plan is None and notices:
        raise ToolError(f"{notices[-1]} Write a new plan with write_plan.")
    return plan


@agent_tool("read_plan", "The current task plan (eval_tasks.json) with each task's status and attempts.", NoArgs)
def read_plan(ctx: ToolContext, args: NoArgs) -> str | TaskPlan:
    plan = load_plan(ctx)
    return plan if plan else "No plan has been written yet."


class WritePlanArgs(PlanDraft):
    """The whole plan: 3-12 tasks in order; the last one has type 'validation'."""


@agent_tool(
    "write_plan",
    "Write the task plan (replaces any earlier one; tasks already completed keep their status). Each task: "
    "id (letters, digits, . _ -), name, type (dataset|scorer|script|validation|analysis), details (what to build, "
    "from which evidence: trace ids, signatures). The last task must be of type 'validation'.",
    WritePlanArgs,
    roles=("initializer",),
)
def write_plan(ctx: ToolContext, args: WritePlanArgs) -> str:
    previous = load_plan(ctx)
    plan = args.to_plan(ctx.settings.experiment_id, previous)
    save_plan(ctx.store, plan)
    return f"Plan saved with {len(plan.tasks)} tasks: " + ", ".join(f"{t.id} ({t.type})" for t in plan.tasks)


class CompleteTaskArgs(BaseModel):
    task_id: str = Field(description="The id of the task this session was given.")
    summary: str = Field(min_length=10, max_length=2000, description="What was built and where (files, scorer names).")


def _own_task(ctx: ToolContext, task_id: str) -> TaskPlan:
    if ctx.task_id and task_id != ctx.task_id:
        raise ToolError(f"This session works on task '{ctx.task_id}', not '{task_id}'. Finish or fail '{ctx.task_id}'.")
    plan = load_plan(ctx)
    if plan is None:
        raise ToolError("There is no plan yet; nothing to complete.")
    try:
        plan.get(task_id)
    except KeyError as exc:
        raise ToolError(str(exc.args[0])) from None
    return plan


@agent_tool(
    "complete_task",
    "Mark your task completed once its output exists and was checked. Give a short summary of what you built.",
    CompleteTaskArgs,
    roles=("worker",),
)
def complete_task(ctx: ToolContext, args: CompleteTaskArgs) -> str:
    plan = _own_task(ctx, args.task_id)
    if plan.get(args.task_id).type == "validation" and not ctx.store.exists("state/validation.json"):
        raise ToolError("A validation task completes only after the suite was run: call validate_suite first.")
    save_plan(ctx.store, plan.complete(args.task_id, args.summary))
    return f"Task '{args.task_id}' marked completed. End the session now."


class FailTaskArgs(BaseModel):
    task_id: str
    reason: str = Field(min_length=10, max_length=1000, description="Why the task cannot be done, specifically.")


@agent_tool(
    "fail_task",
    "Give up on your task for this attempt with a specific reason; the loop may retry it in a fresh session.",
    FailTaskArgs,
    roles=("worker",),
)
def fail_task(ctx: ToolContext, args: FailTaskArgs) -> str:
    plan = _own_task(ctx, args.task_id)
    updated = plan.record_failure(args.task_id, args.reason, ctx.settings.max_attempts)
    save_plan(ctx.store, updated)
    status = updated.get(args.task_id).status
    final = "It will not be retried." if status == TaskStatus.FAILED else "It will be retried in a fresh session."
    return f"Task '{args.task_id}' recorded as failed: {args.reason}. {final} End the session now."


class Finding(BaseModel):
    title: str = Field(min_length=3, max_length=200)
    description: str = Field(max_length=2000)
    severity: Literal["high", "medium", "low"]
    trace_ids: list[str] = Field(default_factory=list, max_length=20, description="Example traces showing it.")
    evidence: str | None = Field(default=None, max_length=500, description="The profile numbers behind it, e.g. '41 of 500 traces (8.2%)'.")


class Analysis(BaseModel):
    summary: str = Field(min_length=10, max_length=4000, description="What the application does and how it fails.")
    findings: list[Finding] = Field(min_length=1, max_length=30)


@agent_tool(
    "save_analysis",
    "Save your analysis of the traces (summary and findings with evidence) to state/analysis.json for the workers.",
    Analysis,
    roles=("initializer", "worker", "interactive"),
)
def save_analysis(ctx: ToolContext, args: Analysis) -> str:
    ctx.store.write_model(ANALYSIS_FILE, args)
    return f"Analysis saved with {len(args.findings)} findings."


class ReadStateArgs(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$", description="State document name, e.g. 'analysis', 'profile', 'suite_spec', 'validation'.")


@agent_tool("read_state", "Read a state document (state/<name>.json) written earlier in this session.", ReadStateArgs)
def read_state(ctx: ToolContext, args: ReadStateArgs) -> str:
    text = ctx.store.read_text(f"state/{args.name}.json")
    if text is None:
        names = [p.removeprefix("state/").removesuffix(".json") for p in ctx.store.list("state") if p.endswith(".json")]
        raise ToolError(f"No state document '{args.name}'. Available: {', '.join(names) or 'none yet'}.")
    return text


class WriteArtifactArgs(BaseModel):
    path: str = Field(description="Relative path inside the session folder, e.g. 'notes/failure_modes.md'.")
    content: str = Field(max_length=MAX_ARTIFACT_BYTES)


@agent_tool(
    "write_artifact",
    "Write a text file (notes, a report) into the session folder. The plan, state/ and the rendered suite in "
    "evaluation/ are written only by their own tools.",
    WriteArtifactArgs,
    roles=("initializer", "worker", "interactive"),
)
def write_artifact(ctx: ToolContext, args: WriteArtifactArgs) -> str:
    rel = args.path.replace("\\", "/").strip()
    reason = reserved_reason(rel)
    if reason:
        raise ToolError(reason)
    try:
        written = ctx.store.write_text(rel, args.content)
    except Exception as exc:
        raise ToolError(f"Cannot write '{args.path}': {exc}") from None
    return f"Wrote {len(args.content)} characters to {ctx.store.relative(written)}."


TOOLS = [read_plan, write_plan, complete_task, fail_task, save_analysis, read_state, write_artifact]

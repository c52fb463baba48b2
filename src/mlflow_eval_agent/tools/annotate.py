"""Agent tools that write to the user's traces (tags, feedback, expectations).

Off unless the user passes --allow-annotate: they change production data.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.entities import AssessmentSource
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field

from ..settings import Settings
from ._base import ToolContext, ToolError, agent_tool

SOURCE_ID = "mlflow-eval-agent"
JsonValue = str | int | float | bool | dict[str, Any] | list[Any]


def _allowed(settings: Settings) -> bool:
    return settings.allow_annotate


def _source() -> AssessmentSource:
    return AssessmentSource(source_type="LLM_JUDGE", source_id=SOURCE_ID)


def _call(what: str, fn: Any, **kwargs: Any) -> None:
    try:
        fn(**kwargs)
    except MlflowException as exc:
        raise ToolError(f"Could not {what}: {exc.message}. Check the trace id with search_traces.") from None


class TagArgs(BaseModel):
    trace_id: str
    key: str = Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.\-/ ]+$", description="Not starting with 'mlflow.'")
    value: str = Field(max_length=5000)


@agent_tool("tag_trace", "Set a tag on a trace (e.g. eval_candidate=true).", TagArgs, enabled=_allowed)
def tag_trace(ctx: ToolContext, args: TagArgs) -> str:
    if args.key.startswith("mlflow."):
        raise ToolError("Tags starting with 'mlflow.' are reserved by MLflow; choose another key.")
    _call("tag the trace", ctx.mlflow.set_trace_tag, trace_id=args.trace_id, key=args.key, value=args.value)
    return f"Tagged {args.trace_id}: {args.key}={args.value!r}"


class FeedbackArgs(BaseModel):
    trace_id: str
    name: str = Field(min_length=1, max_length=100)
    value: JsonValue = Field(description="Prefer true/false or 'yes'/'no'.")
    rationale: str | None = Field(default=None, max_length=2000)
    span_id: str | None = Field(default=None, description="Attach to one span instead of the whole trace.")


@agent_tool("log_feedback", "Log a feedback assessment on a trace (or one of its spans).", FeedbackArgs, enabled=_allowed)
def log_feedback(ctx: ToolContext, args: FeedbackArgs) -> str:
    _call(
        "log feedback",
        mlflow.log_feedback,
        trace_id=args.trace_id,
        name=args.name,
        value=args.value,
        rationale=args.rationale,
        span_id=args.span_id,
        source=_source(),
    )
    return f"Logged feedback '{args.name}' on {args.trace_id}."


class ExpectationArgs(BaseModel):
    trace_id: str
    name: str = Field(min_length=1, max_length=100, description="e.g. expected_response, expected_facts")
    value: JsonValue


@agent_tool("log_expectation", "Log an expectation (ground truth) on a trace.", ExpectationArgs, enabled=_allowed)
def log_expectation(ctx: ToolContext, args: ExpectationArgs) -> str:
    _call("log the expectation", mlflow.log_expectation, trace_id=args.trace_id, name=args.name, value=args.value, source=_source())
    return f"Logged expectation '{args.name}' on {args.trace_id}."


TOOLS = [tag_trace, log_feedback, log_expectation]

"""Agent tools that read traces: a paged search and one trace's capped span tree."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..traces.views import (
    FIELD_CHARS,
    TraceViewError,
    load_trace,
    search_page,
    single_span_view,
    trace_view,
)
from ._base import UNTRUSTED_NOTE, ToolContext, ToolError, agent_tool


class SearchTracesArgs(BaseModel):
    filter: str | None = Field(
        default=None,
        description="MLflow trace filter, e.g. \"attributes.status = 'ERROR'\", \"attributes.execution_time_ms > 5000\", "
        "\"tags.env = 'prod'\", \"span.name = 'search_docs'\". Single quotes; AND only, no OR.",
    )
    page_size: int = Field(default=20, ge=1, le=100, description="Rows per page.")
    page_token: str | None = Field(default=None, description="next_page_token from the previous page.")
    order_by: Literal["newest", "oldest", "slowest", "fastest"] = "newest"
    experiment_id: str | None = Field(default=None, description="Defaults to the experiment being evaluated.")


ORDER = {
    "newest": ["timestamp_ms DESC"],
    "oldest": ["timestamp_ms ASC"],
    "slowest": ["execution_time_ms DESC"],
    "fastest": ["execution_time_ms ASC"],
}


@agent_tool(
    "search_traces",
    "Search the experiment's traces. Returns compact rows (id, state, latency, tokens, short request/response "
    "previews) and a page token. Use the profile tool first for exact counts; use this to find examples.",
    SearchTracesArgs,
)
def search_traces(ctx: ToolContext, args: SearchTracesArgs) -> dict:
    try:
        page = search_page(ctx.mlflow, ctx.experiment_id(args.experiment_id), args.filter, args.page_size, args.page_token, ORDER[args.order_by])
    except TraceViewError as exc:
        raise ToolError(str(exc)) from None
    return {"caution": UNTRUSTED_NOTE, **page.model_dump(exclude_none=True)}


class GetTraceArgs(BaseModel):
    trace_id: str = Field(min_length=3, description="A trace id from search_traces or the profile.")
    span_id: str | None = Field(default=None, description="Show only this span, with larger fields.")
    field_chars: int = Field(default=FIELD_CHARS, ge=100, le=8000, description="Characters kept per input/output field.")


@agent_tool(
    "get_trace",
    "One trace as a span tree in execution order: name, type, status, duration, error, truncated inputs/outputs, "
    "plus assessments. Large traces are capped (error spans always kept); pass span_id to see one span in full.",
    GetTraceArgs,
)
def get_trace(ctx: ToolContext, args: GetTraceArgs) -> dict:
    try:
        trace = load_trace(ctx.mlflow, args.trace_id, ctx.settings.experiment_id)
        if args.span_id:
            view = single_span_view(trace, args.span_id, max(args.field_chars, 4000))
        else:
            view = trace_view(trace, args.field_chars)
    except TraceViewError as exc:
        raise ToolError(str(exc)) from None
    return {"caution": UNTRUSTED_NOTE, **view.model_dump(exclude_none=True)}


TOOLS = [search_traces, get_trace]

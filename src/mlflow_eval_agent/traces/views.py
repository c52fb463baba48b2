"""Bounded views of traces for the agent: compact search rows and a capped span tree.

Trace content is untrusted and can be huge (a 50 MB trace must not flood the model's context), so
every text field is truncated, the span list is capped (error spans are always kept) and the whole
view has a size budget.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Trace
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field

PREVIEW_CHARS = 200
FIELD_CHARS = 1_500
VIEW_BUDGET_CHARS = 16_000
MAX_SPANS_SHOWN = 60


class TraceViewError(Exception):
    """The trace or page could not be read; the message says why and what to try."""


class TraceRow(BaseModel):
    trace_id: str
    state: str
    timestamp_ms: int | None
    execution_time_ms: int | None
    request_preview: str | None = Field(description="untrusted")
    response_preview: str | None = Field(description="untrusted")
    tokens: int | None = None
    session: str | None = None


class TracePage(BaseModel):
    experiment_id: str
    filter: str | None
    rows: list[TraceRow]
    next_page_token: str | None = Field(description="Pass back as page_token for the next page; null when done.")


class SpanView(BaseModel):
    span_id: str
    parent_id: str | None
    depth: int
    name: str
    span_type: str | None
    status: str
    duration_ms: float | None
    error: str | None = None
    inputs: str | None = Field(default=None, description="untrusted")
    outputs: str | None = Field(default=None, description="untrusted")
    attributes: str | None = Field(default=None, description="untrusted")


class TraceView(BaseModel):
    trace_id: str
    state: str
    execution_time_ms: int | None
    span_count: int
    error_span_count: int
    spans_shown: int
    spans: list[SpanView]
    assessments: list[dict[str, Any]] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    note: str | None = None


def _cut(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[:limit]}... [+{len(text) - limit} chars]"


def _token_total(info: Any) -> int | None:
    usage = getattr(info, "token_usage", None) or {}
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return int(total) if total is not None else None


def search_page(
    client: MlflowClient,
    experiment_id: str,
    filter_string: str | None,
    page_size: int,
    page_token: str | None,
    order_by: list[str] | None = None,
) -> TracePage:
    """One page of compact rows (no spans are loaded)."""
    try:
        page = client.search_traces(
            locations=[experiment_id],
            filter_string=filter_string or None,
            max_results=page_size,
            order_by=order_by or ["timestamp_ms DESC"],
            page_token=page_token,
            include_spans=False,
        )
    except MlflowException as exc:
        raise TraceViewError(f"Search failed: {exc.message}. Check the filter syntax, e.g. attributes.status = 'ERROR'.") from None
    rows = [_row(t) for t in page]
    token = page.token.decode() if isinstance(page.token, bytes) else page.token
    return TracePage(experiment_id=experiment_id, filter=filter_string, rows=rows, next_page_token=token or None)


def _row(trace: Trace) -> TraceRow:
    info = trace.info
    meta = info.trace_metadata or {}
    return TraceRow(
        trace_id=info.trace_id,
        state=str(getattr(info.state, "value", info.state)),
        timestamp_ms=info.request_time,
        execution_time_ms=info.execution_duration,
        request_preview=_cut(info.request_preview, PREVIEW_CHARS),
        response_preview=_cut(info.response_preview, PREVIEW_CHARS),
        tokens=_token_total(info),
        session=meta.get("mlflow.trace.session"),
    )


def load_trace(client: MlflowClient, trace_id: str, experiment_id: str | None = None) -> Trace:
    """One full trace. On the Databricks store it is batch-got from its location (the experiment,
    or its Unity Catalog schema; locations.py): `get_trace` there falls back to a batch get
    without one."""
    from .locations import location_of_id, on_databricks_store

    try:
        if experiment_id is not None and on_databricks_store(client.tracking_uri):
            from mlflow.tracing.client import TracingClient

            location = location_of_id(trace_id, experiment_id, databricks=True)
            tracing = TracingClient(client.tracking_uri)
            found = tracing.batch_get_traces([trace_id], location)
            # Not there: an experiment trace with its spans in the artifact repository (MLflow's own read).
            trace = found[0] if found else tracing.get_trace(trace_id)
        else:
            trace = client.get_trace(trace_id)
    except MlflowException as exc:
        raise TraceViewError(f"Trace {trace_id!r} not found or unreadable ({exc.message}). Use search_traces to find valid ids.") from None
    if trace is None:
        raise TraceViewError(f"Trace {trace_id!r} not found. Use search_traces to find valid ids.")
    return trace


def trace_view(trace: Trace, field_chars: int = FIELD_CHARS, budget: int = VIEW_BUDGET_CHARS) -> TraceView:
    """The span tree in execution order, capped so the rendered view stays within `budget`."""
    spans = sorted(trace.data.spans, key=lambda s: (s.start_time_ns or 0))
    depths = _depths(spans)
    errors = {s.span_id for s in spans if _status(s) == "ERROR"}
    chosen = _choose_spans(spans, errors)
    views, used, dropped = [], 0, 0
    for span in spans:
        if span.span_id not in chosen:
            continue
        view = _span_view(span, depths.get(span.span_id, 0), field_chars)
        size = len(view.model_dump_json())
        if used + size > budget and span.span_id not in errors:
            dropped += 1
            continue
        if used + size > budget:  # keep error spans, but only their skeleton
            view = view.model_copy(update={"inputs": None, "outputs": None, "attributes": None})
        views.append(view)
        used += size
    info = trace.info
    omitted = len(spans) - len(views)
    note = (
        f"{omitted} of {len(spans)} spans omitted to fit; error spans are always shown. "
        "Ask for one span with get_trace(span_id=...) to see it in full."
        if omitted
        else None
    )
    return TraceView(
        trace_id=info.trace_id,
        state=str(getattr(info.state, "value", info.state)),
        execution_time_ms=info.execution_duration,
        span_count=len(spans),
        error_span_count=len(errors),
        spans_shown=len(views),
        spans=views,
        assessments=[_assessment(a) for a in (info.assessments or [])][:20],
        tags={k: _cut(v, 200) or "" for k, v in (info.tags or {}).items() if not k.startswith("mlflow.")},
        note=note,
    )


def single_span_view(trace: Trace, span_id: str, field_chars: int) -> SpanView:
    spans = list(trace.data.spans)
    depths = _depths(spans)
    for span in spans:
        if span.span_id == span_id:
            return _span_view(span, depths.get(span_id, 0), field_chars)
    raise TraceViewError(f"Span {span_id!r} is not in trace {trace.info.trace_id}. Call get_trace without span_id to list spans.")


def _choose_spans(spans: list[Any], errors: set[str]) -> set[str]:
    """The first spans in order, plus every error span and its parent."""
    parents = {s.span_id: s.parent_id for s in spans}
    chosen = {s.span_id for s in spans[:MAX_SPANS_SHOWN]}
    for span_id in errors:
        chosen.add(span_id)
        if parents.get(span_id):
            chosen.add(parents[span_id])
    return chosen


def _depths(spans: list[Any]) -> dict[str, int]:
    parents = {s.span_id: s.parent_id for s in spans}
    depths: dict[str, int] = {}
    for span_id in parents:
        depth, cursor, seen = 0, parents.get(span_id), set()
        while cursor and cursor in parents and cursor not in seen:
            seen.add(cursor)
            depth, cursor = depth + 1, parents[cursor]
        depths[span_id] = depth
    return depths


def _status(span: Any) -> str:
    code = getattr(span.status, "status_code", span.status)
    return str(getattr(code, "value", code)).replace("StatusCode.", "")


def _span_view(span: Any, depth: int, field_chars: int) -> SpanView:
    duration = None
    if span.start_time_ns and span.end_time_ns:
        duration = round((span.end_time_ns - span.start_time_ns) / 1e6, 2)
    error = None
    if _status(span) == "ERROR":
        error = getattr(span.status, "description", None) or _exception_text(span)
    attributes = {k: v for k, v in (span.attributes or {}).items() if not k.startswith(("mlflow.span", "mlflow.trace")) and k != "mlflow.experimentId"}
    return SpanView(
        span_id=span.span_id,
        parent_id=span.parent_id,
        depth=depth,
        name=span.name,
        span_type=span.span_type,
        status=_status(span),
        duration_ms=duration,
        error=_cut(error, 500),
        inputs=_cut(span.inputs, field_chars),
        outputs=_cut(span.outputs, field_chars),
        attributes=_cut(attributes, min(field_chars, 600)) if attributes else None,
    )


def _exception_text(span: Any) -> str | None:
    for event in span.events or []:
        if event.name == "exception":
            attrs = event.attributes or {}
            return f"{attrs.get('exception.type', 'Exception')}: {attrs.get('exception.message', '')}"
    return None


def _assessment(a: Any) -> dict[str, Any]:
    value = getattr(a, "feedback", None) or getattr(a, "expectation", None)
    source = getattr(a, "source", None)
    return {
        "name": a.name,
        "value": _cut(getattr(value, "value", None), 200),
        "source": str(getattr(source, "source_type", "")),
        "span_id": getattr(a, "span_id", None),
        "rationale": _cut(getattr(a, "rationale", None), 300),
    }

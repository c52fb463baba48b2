"""One trace as the profile consumes it, whichever way it was read.

Both reading paths (direct SQL on a local store, the MLflow API elsewhere) produce `TraceRecord`s,
so the profile cannot tell them apart and gives the same numbers on both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SESSION_KEY = "mlflow.trace.session"
USER_KEY = "mlflow.trace.user"


@dataclass(slots=True)
class AssessmentRecord:
    name: str
    kind: str  # feedback, expectation or issue
    source_type: str  # HUMAN, LLM_JUDGE, CODE, ...
    value: Any
    has_error: bool = False


@dataclass(slots=True)
class TraceRecord:
    trace_id: str
    state: str
    request_time_ms: int | None
    execution_ms: int | None
    session_id: str | None = None
    tokens: dict[str, int] | None = None
    assessments: list[AssessmentRecord] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    rows: list[Any] | None = None  # SpanRows read from table columns (the trajectory scan's local path) instead of `spans`
    # The profile's local path: the `spans` table's rows as the database returned them, one tuple
    # per span laid out as spans.SPAN_COLUMNS (no object per span; see ProfileBuilder._span_columns).
    columns: list[tuple[Any, ...]] | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # read only by the trajectory scan
    # False: this trace's spans were not read (the API path reads only the newest `span_traces`
    # traces' spans): it counts in every trace-level figure and in none of the span-level ones.
    spans_read: bool = True


def record_from_trace(trace: Any) -> TraceRecord:
    """A `mlflow.entities.Trace` (from any store) as a TraceRecord."""
    info = trace.info
    spans = [span.to_dict() for span in (trace.data.spans if trace.data else [])]
    return TraceRecord(
        trace_id=info.trace_id,
        state=_state_name(info.state),
        request_time_ms=info.request_time,
        execution_ms=info.execution_duration,
        session_id=(info.trace_metadata or {}).get(SESSION_KEY),
        tokens=_tokens(info),
        assessments=[a for a in (assessment_record(x) for x in info.assessments or []) if a],
        spans=spans,
    )


def _state_name(state: Any) -> str:
    return str(getattr(state, "value", state) or "STATE_UNSPECIFIED")


def _tokens(info: Any) -> dict[str, int] | None:
    try:
        usage = info.token_usage
    except (ValueError, TypeError):  # a hand-broken metadata value: no usage rather than a crash
        return None
    return usage if isinstance(usage, dict) else None


def assessment_record(assessment: Any) -> AssessmentRecord | None:
    """An MLflow Assessment entity; None for an overridden (invalid) one."""
    if getattr(assessment, "valid", True) is False:
        return None
    source = getattr(assessment, "source", None)
    source_type = str(getattr(source, "source_type", None) or "UNKNOWN")
    if getattr(assessment, "feedback", None) is not None:
        fb = assessment.feedback
        return AssessmentRecord(assessment.name, "feedback", source_type, fb.value, fb.error is not None)
    if getattr(assessment, "expectation", None) is not None:
        return AssessmentRecord(assessment.name, "expectation", source_type, assessment.expectation.value)
    return AssessmentRecord(str(assessment.name), "issue", source_type, None)


def assessment_from_row(name: str, kind: str, source_type: str, value_json: str | None, error_json: str | None) -> AssessmentRecord:
    """An assessments-table row (local fast path), decoded like MLflow's own entity conversion."""
    try:
        value = json.loads(value_json) if value_json is not None else None
    except ValueError:
        value = value_json
    if kind == "issue":
        value = None
    return AssessmentRecord(name, kind, source_type or "UNKNOWN", value, error_json is not None)

"""What a set of traces contains, as far as scorer prerequisites care.

RetrievalGroundedness needs RETRIEVER spans, Correctness needs expectations, a tool check needs the
tool to exist. These facts are computed from the dataset's own traces, so a scorer is checked
against exactly the traces it will run on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

TRACE_METADATA_SESSION = "mlflow.trace.session"


class TraceFacts(BaseModel):
    trace_count: int = 0
    span_types: dict[str, int] = Field(default_factory=dict, description="Span type -> number of spans.")
    span_names: dict[str, int] = Field(default_factory=dict, description="Span name -> number of spans.")
    tool_names: dict[str, int] = Field(default_factory=dict, description="TOOL span name -> number of calls.")
    expectation_names: dict[str, int] = Field(default_factory=dict, description="Expectation name -> traces that have it.")
    feedback_names: dict[str, int] = Field(default_factory=dict, description="Human feedback name -> traces that have it.")
    session_traces: int = Field(0, description="Traces that belong to a conversation session.")

    def has_span_type(self, span_type: str) -> bool:
        return self.span_types.get(span_type.upper(), 0) > 0

    def known(self, mapping: dict[str, int], limit: int = 12) -> str:
        names = sorted(mapping, key=lambda n: (-mapping[n], n))[:limit]
        return ", ".join(names) if names else "none"


def facts_from_traces(traces: Iterable[Any]) -> TraceFacts:
    """Count span types, names, tools, expectations and sessions over MLflow `Trace` objects."""
    span_types: Counter[str] = Counter()
    span_names: Counter[str] = Counter()
    tools: Counter[str] = Counter()
    expectations: Counter[str] = Counter()
    feedback: Counter[str] = Counter()
    count = sessions = 0
    for trace in traces:
        count += 1
        for span in trace.data.spans:
            kind = (span.span_type or "UNKNOWN").upper()
            span_types[kind] += 1
            span_names[span.name] += 1
            if kind == "TOOL":
                tools[span.name] += 1
        names = {a.name for a in (trace.info.assessments or []) if a.expectation is not None}
        expectations.update(names)
        feedback.update({a.name for a in (trace.info.assessments or []) if _is_human_feedback(a)})
        if (trace.info.trace_metadata or {}).get(TRACE_METADATA_SESSION):
            sessions += 1
    return TraceFacts(
        trace_count=count,
        span_types=dict(span_types),
        span_names=dict(span_names),
        tool_names=dict(tools),
        expectation_names=dict(expectations),
        feedback_names=dict(feedback),
        session_traces=sessions,
    )


def _is_human_feedback(assessment: Any) -> bool:
    source = getattr(assessment, "source", None)
    kind = getattr(source, "source_type", None)
    return assessment.feedback is not None and str(getattr(kind, "value", kind)).upper() == "HUMAN"

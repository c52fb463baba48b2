"""Human labels → MLflow assessments with a HUMAN source (only when the user asks for labels).

- The run's outcome is trace-level feedback `human_outcome` (True when the run passed; the raw
  score and reason in rationale/metadata).
- Each located failure is feedback `human_failure` on the span made from its step: value = the
  failure category (or "failure" when the source has none), rationale = the person's reason,
  metadata = step, agent and the source's extra fields.
- Reference answers (expected tool calls, expected response) are expectations on the trace.

Where a step lands: the span whose own step is the labelled one (an assistant turn's CHAT_MODEL
span, a tool result's TOOL span, a Who&When turn's span). User and system messages have no span
of their own: their label goes to the span of the nearest later step (the turn that answered
them), or to the root span when nothing follows. `span_for_step` is the one place that rule lives; the detection
benchmark uses it too.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.entities import AssessmentSource, AssessmentSourceType

from .model import ATTR_STEP, Labels

OUTCOME_NAME = "human_outcome"
FAILURE_NAME = "human_failure"


def source_id(fmt: str) -> str:
    return f"{fmt} human labels"


def span_for_step(step: int, spans: list[tuple[int, str]], root_span_id: str) -> str:
    """The span a label on `step` belongs to; `spans` are (own step, span id) of the child spans.

    The span made from that step; else the one made from the nearest later step (a user message's
    answer); else the root. Parallel tool calls can return out of order, so spans are not assumed
    to be sorted by step.
    """
    exact = next((span_id for own, span_id in spans if own == step), None)
    if exact is not None:
        return exact
    later = [(own, span_id) for own, span_id in spans if own > step]
    return min(later, key=lambda pair: pair[0])[1] if later else root_span_id


def attach_labels(trace_id: str, labels: Labels, fmt: str, spans: list[tuple[int, str]], root_span_id: str) -> int:
    """Log every label of `labels` on the trace; returns how many assessments were written."""
    source = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=source_id(fmt))
    written = 0
    if labels.outcome is not None:
        metadata = {"score": str(labels.outcome.score)} if labels.outcome.score is not None else None
        mlflow.log_feedback(
            trace_id=trace_id, name=OUTCOME_NAME, value=labels.outcome.passed, source=source,
            rationale=labels.outcome.reason, metadata=metadata,
        )
        written += 1
    for failure in labels.failures:
        metadata = {"step": str(failure.step), **({"agent": failure.agent} if failure.agent else {}), **failure.details}
        mlflow.log_feedback(
            trace_id=trace_id, name=FAILURE_NAME, value=failure.category or "failure", source=source,
            rationale=failure.reason or None, metadata=metadata,
            span_id=span_for_step(failure.step, spans, root_span_id),
        )
        written += 1
    for name, value in labels.expectations.items():
        mlflow.log_expectation(trace_id=trace_id, name=name, value=value, source=source)
        written += 1
    return written


def stored_step_spans(trace: Any) -> tuple[list[tuple[int, str]], str]:
    """(own step, span id) of an imported trace's child spans in time order, and its root span id."""
    root = next(s for s in trace.data.spans if s.parent_id is None)
    stepped = [s for s in trace.data.spans if s.parent_id is not None and isinstance(s.attributes.get(ATTR_STEP), int)]
    stepped.sort(key=lambda s: s.start_time_ns)
    return [(s.attributes[ATTR_STEP], s.span_id) for s in stepped], root.span_id


def has_import_labels(trace: Any, fmt: str) -> bool:
    """Whether labels from this importer are already on the trace."""
    wanted = source_id(fmt)
    return any(
        a.source is not None and a.source.source_type == AssessmentSourceType.HUMAN and a.source.source_id == wanted
        for a in trace.info.assessments or []
    )

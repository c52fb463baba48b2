"""Self-tracing: the agent's own run as an MLflow trace (run → session → tool spans).

Off unless an agent experiment is configured. Tool spans carry the real start and end of each
call; session spans carry tokens and cost from the SDK's ResultMessage. Every span's inputs,
outputs and attributes pass the run's redactor, nested values included.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.entities import SpanStatusCode, SpanType

from .loop import LoopHooks, RunReport
from .redaction import Redactor
from .session import SessionOutcome, SessionRequest
from .tools import ToolCallRecord


class _SpanObserver:
    def __init__(self, tracer: RunTracer):
        self.tracer = tracer

    def on_text(self, text: str) -> None: ...
    def on_tool_use(self, name: str, tool_input: dict[str, Any]) -> None: ...

    def on_tool_call(self, record: ToolCallRecord) -> None:
        self.tracer.tool_span(record)


class RunTracer(LoopHooks):
    def __init__(self, experiment_id: str, session_id: str, target_experiment: str | None, redactor: Redactor):
        self.redactor = redactor
        self.root = mlflow.start_span_no_context(
            name="eval_agent_run",
            span_type=SpanType.AGENT,
            inputs=self._clean({"experiment_id": target_experiment, "session_id": session_id}),
            experiment_id=experiment_id,
            tags={"mlflow_eval_agent.session_id": session_id},
        )
        self.session_span: Any = None

    def _clean(self, value: dict[str, Any]) -> Any:
        """A redacted copy of span inputs, outputs or attributes (strings at any depth)."""
        return self.redactor.data(value)

    def _end(self, span: Any, outputs: dict[str, Any], status: SpanStatusCode, end_time_ns: int | None = None) -> None:
        span.end(outputs=self._clean(outputs), status=status, end_time_ns=end_time_ns)

    def session_observers(self, request: SessionRequest, index: int) -> list[Any]:
        return [_SpanObserver(self)]

    def session_started(self, request: SessionRequest, index: int) -> None:
        self.session_span = mlflow.start_span_no_context(
            name=f"session_{index}_{request.role}",
            span_type=SpanType.AGENT,
            parent_span=self.root,
            inputs=self._clean({"role": request.role, "task_id": request.task_id, "prompt": request.prompt}),
        )

    def session_finished(self, request: SessionRequest, outcome: SessionOutcome) -> None:
        span, self.session_span = self.session_span, None
        if span is None:
            return
        span.set_attributes(self._clean({
            "num_turns": outcome.num_turns,
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
            "cache_read_tokens": outcome.cache_read_tokens,
            "cost_usd": outcome.cost_usd,
            "tool_calls": outcome.tool_calls,
        }))
        status = SpanStatusCode.ERROR if outcome.error else SpanStatusCode.OK
        self._end(span, {"result": outcome.result_text, "error": outcome.error}, status)

    def tool_span(self, record: ToolCallRecord) -> None:
        parent = self.session_span or self.root
        span = mlflow.start_span_no_context(
            name=record.name,
            span_type=SpanType.TOOL,
            parent_span=parent,
            inputs=self._clean(record.arguments),
            start_time_ns=record.started_ns,
        )
        status = SpanStatusCode.ERROR if record.is_error else SpanStatusCode.OK
        self._end(span, {"result_chars": record.result_chars, "error": record.error}, status, record.ended_ns)

    def finish(self, report: RunReport | None, error: str | None = None) -> None:
        if self.session_span is not None:
            self._end(self.session_span, {"error": "interrupted"}, SpanStatusCode.ERROR)
            self.session_span = None
        outputs = {"stop_reason": report.stop_reason if report else "error", "cost_usd": report.cost_usd if report else None}
        if report and report.plan:
            outputs["tasks"] = report.plan.counts()
        failed = error is not None or (report is not None and report.exit_code != 0)
        self._end(self.root, outputs | ({"error": error} if error else {}), SpanStatusCode.ERROR if failed else SpanStatusCode.OK)


def maybe_tracer(agent_experiment_id: str | None, session_id: str, target_experiment: str | None, redactor: Redactor) -> RunTracer | None:
    """A tracer when self-tracing is configured, else None."""
    if not agent_experiment_id:
        return None
    return RunTracer(agent_experiment_id, session_id, target_experiment, redactor)

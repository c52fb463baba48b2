"""A small experiment of support-agent traces with known failure modes, for agent-loop tests.

Spans are written with explicit start/end times (no sleeping) and synchronous logging.
Kinds: "ok", "tool_error" (uncaught: root ERROR), "hidden" (caught tool error: root OK),
"empty" (empty final answer), "slow" (a 9 s model call).
"""

from __future__ import annotations

import mlflow
from mlflow.entities import SpanStatusCode, SpanType

KINDS = ["ok", "ok", "tool_error", "ok", "hidden", "empty", "ok", "slow"]


def _span(name, span_type, parent, start, inputs=None):
    return mlflow.start_span_no_context(name=name, span_type=span_type, parent_span=parent, inputs=inputs, start_time_ns=start)


def write_trace(experiment_id: str, index: int, kind: str, t0: int) -> str:
    ms = 1_000_000
    question = f"Where is my order {1000 + index}?"
    root = mlflow.start_span_no_context(
        name="support_agent", span_type=SpanType.AGENT, inputs={"messages": [{"role": "user", "content": question}]},
        experiment_id=experiment_id, start_time_ns=t0,
    )
    retr = _span("retrieve_docs", SpanType.RETRIEVER, root, t0 + 5 * ms, {"query": question})
    retr.end(outputs=[{"page_content": "Orders ship in 2 days.", "metadata": {"doc_uri": "kb/shipping"}}], end_time_ns=t0 + 40 * ms)
    tool = _span("lookup_order", SpanType.TOOL, root, t0 + 50 * ms, {"order_id": 1000 + index})
    tool_failed = kind in ("tool_error", "hidden")
    if tool_failed:
        tool.record_exception(TimeoutError(f"order service timed out after 30s for order {1000 + index}"))
        tool.end(status=SpanStatusCode.ERROR, end_time_ns=t0 + 90 * ms)
    else:
        tool.end(outputs={"status": "shipped"}, end_time_ns=t0 + 90 * ms)
    llm_ms = 9000 if kind == "slow" else 400
    llm = _span("chat_model", SpanType.CHAT_MODEL, root, t0 + 100 * ms, {"messages": [{"role": "user", "content": question}]})
    answer = "" if kind == "empty" else f"Your order {1000 + index} has shipped."
    llm.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150})
    llm.end(outputs={"choices": [{"message": {"role": "assistant", "content": answer}}]}, end_time_ns=t0 + (100 + llm_ms) * ms)
    end = t0 + (120 + llm_ms) * ms
    if kind == "tool_error":
        root.record_exception(TimeoutError(f"order service timed out after 30s for order {1000 + index}"))
        root.end(status=SpanStatusCode.ERROR, end_time_ns=end)
    else:
        root.end(outputs={"answer": answer}, end_time_ns=end)
    return root.trace_id


def seed_experiment(name: str = "support-agent", kinds: list[str] | None = None) -> tuple[str, dict[str, list[str]]]:
    """Create an experiment with one trace per kind; returns its id and the trace ids by kind."""
    experiment_id = mlflow.create_experiment(name)
    by_kind: dict[str, list[str]] = {}
    t0 = 1_767_000_000_000_000_000
    for i, kind in enumerate(kinds or KINDS):
        by_kind.setdefault(kind, []).append(write_trace(experiment_id, i, kind, t0 + i * 60_000_000_000))
    return experiment_id, by_kind

"""The profile cut to a few KB for the agent, however large the experiment.

Lists are trimmed to their most frequent entries (with a count of what was left out) and the caps
shrink until the text the agent receives fits the budget: bytes of UTF-8, measured on the JSON as
the tools send it (indented, non-ASCII kept), not characters of compact JSON (a profile of
non-ASCII span names measured that way reached 9.3 KB on the wire). Numbers are never rounded away or estimated: a trimmed
list says how many entries it omitted, and the full profile stays in `state/profile.json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .profile_model import TraceProfile

BUDGET_BYTES = 6_000
TEXT_CHARS = 160


def sent_bytes(value: Any) -> int:
    """UTF-8 bytes of `value` rendered as the agent tools render results (tools/_base.render_result:
    JSON with indent=1 and non-ASCII characters kept)."""
    return len(json.dumps(value, indent=1, default=str, ensure_ascii=False).encode("utf-8"))


def compact_profile(profile: TraceProfile, budget_bytes: int = BUDGET_BYTES, size: Callable[[dict[str, Any]], int] = sent_bytes) -> dict[str, Any]:
    """A dict with `size(view) <= budget_bytes` (best effort down to the fixed part). `size` measures
    what is sent: by default the view alone as the tools render it; the profile tool passes the
    size of its whole rendered result."""
    caps = [12, 3]  # rows per list, example ids per row
    while True:
        view = _view(profile, rows=caps[0], ids=caps[1])
        if size(view) <= budget_bytes or caps == [1, 1]:
            return view
        caps = [max(1, caps[0] * 2 // 3), max(1, caps[1] - 1)]


def _view(p: TraceProfile, rows: int, ids: int) -> dict[str, Any]:
    omitted: dict[str, int] = {}

    def top(name: str, items: list[Any]) -> list[Any]:
        if len(items) > rows:
            omitted[name] = len(items) - rows
        return items[:rows]

    view: dict[str, Any] = {
        "schema_version": p.schema_version,
        "experiment_id": p.experiment_id,
        "experiment_name": p.experiment_name,
        "trace_count": p.trace_count,
        "span_count": p.span_count,
        # Set when only the newest N traces' spans were read: every span-level count below is of those N.
        **({"span_figures_from_newest_traces": p.span_trace_count} if p.span_trace_count is not None else {}),
        "time_range": [p.time_range.first, p.time_range.last],
        "scope": {"filter": p.source.filter_string, "since_ms": p.source.since_ms, "truncated_by_max_traces": p.source.truncated},
        "status_counts": p.status_counts,
        "latency_ms": p.latency_ms.model_dump(),
        "spans_per_trace": p.spans_per_trace.model_dump(),
        "spans": [
            {"name": _cut(s.name), "type": s.span_type, "count": s.count, "errors": s.error_count, "p50_ms": s.latency_ms.p50, "p99_ms": s.latency_ms.p99}
            for s in top("spans", p.spans)
        ],
        "traces_with_error_spans": p.traces_with_error_spans,
        "error_signatures": [
            {"id": s.id, "signature": _cut(s.signature), "span": _cut(s.span_name), "count": s.count, "traces": s.trace_count, "trace_ids": s.trace_ids[:ids]}
            for s in top("error_signatures", p.error_signatures)
        ],
        "hidden_failures": {
            "count": p.hidden_failures.count,
            "trace_ids": p.hidden_failures.trace_ids[:ids],
            "by_span": [b.model_dump() for b in p.hidden_failures.by_span[:rows]],
        },
        "tools": [
            {"name": _cut(t.name), "calls": t.calls, "errors": t.errors, "traces": t.trace_count, "p50_ms": t.latency_ms.p50, "p99_ms": t.latency_ms.p99}
            for t in top("tools", p.tools)
        ],
        "tokens": p.tokens.model_dump(),
        "llm": {
            "calls": p.llm.calls,
            "traces_with_calls": p.llm.traces_with_calls,
            "calls_per_trace": p.llm.calls_per_trace.model_dump(),
            "models": {m.name: m.count for m in top("models", p.llm.models)},
        },
        "retrieval": {
            "spans": p.retrieval.spans,
            "empty": p.retrieval.empty,
            "empty_share": p.retrieval.empty_share,
            "traces_with_empty_retrieval": p.retrieval.traces_with_empty_retrieval,
            "empty_trace_ids": p.retrieval.empty_trace_ids[:ids],
        },
        "outputs": {
            "missing": p.outputs.missing,
            "empty": p.outputs.empty,
            "missing_in_ok_traces": p.outputs.missing_ok,
            "empty_in_ok_traces": p.outputs.empty_ok,
            "example_trace_ids": (p.outputs.empty_ok_trace_ids + p.outputs.missing_ok_trace_ids)[:ids],
        },
        "shapes": {
            side: [{"kind": s.kind, "keys": s.keys[:8], "count": s.count} for s in shapes[: max(1, min(rows, 4))]]
            for side, shapes in (("inputs", p.shapes.inputs), ("outputs", p.shapes.outputs))
        },
        "sessions": {
            "traces_with_session": p.sessions.traces_with_session,
            "distinct": p.sessions.distinct_sessions,
            "traces_per_session": p.sessions.traces_per_session.model_dump(),
        },
        "assessments": [
            {"name": _cut(a.name), "kind": a.kind, "count": a.count, "sources": a.sources,
             **({"numeric": a.numeric.model_dump()} if a.numeric else {"values": dict(list(a.values.items())[:5])})}
            for a in top("assessments", p.assessments)
        ],
        "slowest_traces": [{"trace_id": s.trace_id, "latency_ms": s.latency_ms, "state": s.state} for s in p.slowest_traces[:ids]],
        "odd_data": {k: v.count for k, v in p.odd_data.items() if v.count},
        "trajectory": _trajectory(p, ids),
    }
    if omitted:
        view["omitted_rows"] = omitted
    return view


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."


def _trajectory(p: TraceProfile, ids: int) -> dict[str, Any]:
    """Counts with a few example ids; the tool lists by name."""
    t = p.trajectory
    view: dict[str, Any] = {"scanned": t.scanned, "conversations": t.conversations, "synthetic_timing": t.synthetic_timing}
    for name in ("unrecovered_errors", "recovered_errors", "error_at_end", "repeated_calls", "error_text", "made_up_data",
                 "limit_reached", "loop_reports", "unconfirmed_actions", "no_tool", "unanswered_end", "unfinished"):
        found = getattr(t, name)
        if found.count:
            view[name] = {"count": found.count, "trace_ids": found.trace_ids[:ids]}
    if t.completion_marker:
        view["completion_marker"] = t.completion_marker
    for name in ("error_text_kinds", "actions", "unconfirmed_tools", "repeated_tools"):
        if getattr(t, name):
            view[name] = {n.name: n.count for n in getattr(t, name)[:10]}
    return view

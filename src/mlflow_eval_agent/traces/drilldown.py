"""Drill-downs from the profile to concrete traces: examples of a signature, hidden failures, the
slowest traces, and a stratified sample for an evaluation dataset.

Each returns small dicts with truncated (untrusted) trace text; nothing here holds more than the
handful of traces it was asked about.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .locations import group_by_location, location_of_id, on_databricks_store
from .profile_model import TraceProfile
from .signatures import error_from_span, signature_id
from .source import check_reachable
from .spans import INPUTS, OUTPUTS, SpanRow, span_row

PREVIEW_CHARS = 300


class SampleItem(BaseModel):
    trace_id: str
    stratum: str  # error:<signature id>, hidden_failure, empty_output, empty_retrieval, slow, normal
    detail: str


def stratified_sample(profile: TraceProfile, size: int = 20) -> list[SampleItem]:
    """Up to `size` distinct traces: every failure kind the profile found, plus normal traffic.

    A third of the slots (at least one) is kept for normal OK traffic when there is any; the rest
    go round-robin over the failure strata (each error signature, hidden failures, empty outputs,
    empty retrieval, slow traces), most frequent signature first. Deterministic for a profile.
    """
    problem = [
        [SampleItem(trace_id=t, stratum=f"error:{s.id}", detail=s.signature[:120]) for t in s.trace_ids]
        for s in profile.error_signatures
    ]
    problem.append([SampleItem(trace_id=t, stratum="hidden_failure", detail="trace OK, a span inside failed") for t in profile.hidden_failures.trace_ids])
    problem.append([SampleItem(trace_id=t, stratum="empty_output", detail="OK trace with an empty or missing final output")
                    for t in profile.outputs.empty_ok_trace_ids + profile.outputs.missing_ok_trace_ids])
    problem.append([SampleItem(trace_id=t, stratum="empty_retrieval", detail="a retriever returned nothing") for t in profile.retrieval.empty_trace_ids])
    problem.append([SampleItem(trace_id=s.trace_id, stratum="slow", detail=f"{s.latency_ms:.0f} ms") for s in profile.slowest_traces])
    normal = [SampleItem(trace_id=t, stratum="normal", detail="OK, no error spans") for t in profile.sample_trace_ids]

    chosen: dict[str, SampleItem] = {}
    reserve = min(len(normal), max(1, size // 3)) if normal else 0
    _round_robin(problem, chosen, size - reserve)
    _round_robin([normal], chosen, size)
    _round_robin(problem, chosen, size)  # normal traffic ran short: give the slots back
    return list(chosen.values())


def _round_robin(queues: list[list[SampleItem]], chosen: dict[str, SampleItem], limit: int) -> None:
    positions = [0] * len(queues)
    while len(chosen) < limit:
        progressed = False
        for i, queue in enumerate(queues):
            while positions[i] < len(queue) and queue[positions[i]].trace_id in chosen:
                positions[i] += 1
            if positions[i] < len(queue) and len(chosen) < limit:
                item = queue[positions[i]]
                chosen[item.trace_id] = item
                positions[i] += 1
                progressed = True
        if not progressed:
            return


# --- trace-loading drill-downs -----------------------------------------------------------------


def load_traces(tracking_uri: str | None, trace_ids: list[str], experiment_id: str) -> list[Any]:
    """Full traces for a few ids of one experiment, in the order asked; missing ones are skipped.
    Each batch get goes to the traces' location (the experiment on Databricks, see locations.py)."""
    from mlflow.tracing.client import TracingClient

    check_reachable(tracking_uri)  # fail in seconds, not after MLflow's minutes of retries
    client = TracingClient(tracking_uri)
    databricks = on_databricks_store(tracking_uri)
    grouped = group_by_location([(t, location_of_id(t, experiment_id, databricks=databricks)) for t in trace_ids])
    found = {}
    for location, ids in grouped.items():
        for i in range(0, len(ids), 10):  # batch-get endpoints take at most 10 ids
            found.update({t.info.trace_id: t for t in client.batch_get_traces(ids[i : i + 10], location)})
    if databricks:  # experiment traces with their spans in the artifact repository: MLflow's own read
        for trace_id in [t for t in trace_ids if t not in found]:
            try:
                found[trace_id] = client.get_trace(trace_id)
            except Exception:  # missing: skipped, as documented
                continue
    return [found[t] for t in trace_ids if t in found]


def signature_examples(tracking_uri: str | None, profile: TraceProfile, signature_id: str, limit: int = 5) -> dict[str, Any]:
    """The example traces of one error signature, with the failing span's message and inputs."""
    sig = profile.signature(signature_id)
    if sig is None:
        known = ", ".join(s.id for s in profile.error_signatures[:10]) or "none"
        raise KeyError(f"No error signature {signature_id!r} in the profile (known: {known}).")
    examples = []
    for trace in load_traces(tracking_uri, sig.trace_ids[:limit], profile.experiment_id):
        rows = _rows(trace)
        match = next((r for r in rows if r.status == "ERROR" and _signature_of(r) == sig.id), None)
        examples.append({**_trace_head(trace, rows), **(_error_span(match) if match else {"note": "the failing span was not found"})})
    return {"signature": sig.model_dump(exclude={"trace_ids"}), "examples": examples}


def hidden_failure_examples(tracking_uri: str | None, profile: TraceProfile, limit: int = 5) -> list[dict[str, Any]]:
    """Traces that ended OK although spans inside failed: which spans, with what message."""
    out = []
    for trace in load_traces(tracking_uri, profile.hidden_failures.trace_ids[:limit], profile.experiment_id):
        rows = _rows(trace)
        failed = [_error_span(r) for r in rows if r.status == "ERROR"][:3]
        out.append({**_trace_head(trace, rows), "failed_spans": failed})
    return out


def slowest_traces(client: Any, experiment_id: str, limit: int = 10, filter_string: str | None = None) -> list[dict[str, Any]]:
    """The slowest matching traces (searched by MLflow, not limited to the profile's top 10), each
    with its three slowest spans below the root."""
    page = client.search_traces(
        locations=[experiment_id], filter_string=filter_string, order_by=["execution_time_ms DESC"],
        max_results=limit, include_spans=False,
    )
    traces = {t.info.trace_id: t for t in load_traces(client.tracking_uri, [t.info.trace_id for t in page], experiment_id)}
    out = []
    for info in (t.info for t in page):
        rows = _rows(traces[info.trace_id]) if info.trace_id in traces else []
        below_root = sorted((r for r in rows if r.parent_id and r.duration_ns is not None), key=lambda r: -r.duration_ns)[:3]
        out.append({
            "trace_id": info.trace_id,
            "latency_ms": info.execution_duration,
            "state": str(getattr(info.state, "value", info.state)),
            "request_preview": _preview(info.request_preview),
            "slowest_spans": [{"name": r.name, "type": r.span_type, "ms": round(r.duration_ns / 1e6, 3)} for r in below_root],
        })
    return out


def _signature_of(row: SpanRow) -> str:
    error = error_from_span(row.raw, row.status_message)
    return signature_id(error.exception_type, row.name, error.normalized)


def _rows(trace: Any) -> list[SpanRow]:
    rows = [span_row(s.to_dict()) for s in trace.data.spans]
    return [r for r in rows if r is not None]


def _trace_head(trace: Any, rows: list[SpanRow]) -> dict[str, Any]:
    root = next((r for r in rows if r.parent_id is None), None)
    return {
        "trace_id": trace.info.trace_id,
        "state": str(getattr(trace.info.state, "value", trace.info.state)),
        "latency_ms": trace.info.execution_duration,
        "request": _preview(root.attribute(INPUTS)) if root else None,
        "response": _preview(root.attribute(OUTPUTS)) if root else None,
    }


def _error_span(row: SpanRow) -> dict[str, Any]:
    error = error_from_span(row.raw, row.status_message)
    return {
        "span_id": row.span_id,
        "span_name": row.name,
        "span_type": row.span_type,
        "exception_type": error.exception_type,
        "message": _preview(error.message),
        "span_inputs": _preview(row.attribute(INPUTS)),
    }


def _preview(value: Any) -> str | None:
    from .spans import MISSING

    if value is None or value is MISSING:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else f"{text[:PREVIEW_CHARS]}... [+{len(text) - PREVIEW_CHARS} chars]"

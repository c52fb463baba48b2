"""The profile's numbers against an experiment whose truth is known, on every reading path."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from mlflow_eval_agent.traces.profile import build_profile
from tests.fakes.profile_fixtures import BIG_SPANS, SeededStore
from tests.fakes.seeded_support_traces import BASE_MS



def rank(values, q):
    """Nearest rank, written out independently of the code under test."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) / 100)) - 1]


def pcts(values):
    return {"p50": float(rank(values, 50)), "p90": float(rank(values, 90)), "p99": float(rank(values, 99)), "max": float(max(values))}


def recent(traces, k):
    return [s.spec.mlflow_id for s in sorted(traces, key=lambda s: s.spec.start_ms, reverse=True)[:k]]


@pytest.fixture(scope="module")
def profile(seeded_store: SeededStore):
    return build_profile(seeded_store.uri, seeded_store.support_id)


def test_counts_states_latency_and_time_range(profile, seeded_store: SeededStore):
    traces = seeded_store.traces
    assert profile.schema_version == 1
    assert profile.source.path == "sql"
    assert profile.trace_count == 200
    errors = sum(s.state == "ERROR" for s in traces)
    assert profile.status_counts == {"OK": 200 - errors, "ERROR": errors}
    assert profile.latency_ms.model_dump() == pcts([s.latency_ms for s in traces])
    assert profile.time_range.first_ms == BASE_MS
    assert profile.time_range.last_ms == BASE_MS + 199 * 60_000
    assert profile.time_range.first == "2026-01-01T00:00:00+00:00"
    assert [t.trace_id for t in profile.slowest_traces] == recent(traces, 10)  # latency grows with index
    assert profile.slowest_traces[0].latency_ms == 299.0


def test_span_table(profile, seeded_store: SeededStore):
    traces = seeded_store.traces
    spans = {(s.name, s.span_type): s for s in profile.spans}
    tool = spans[("lookup_order", "TOOL")]
    assert (tool.count, tool.error_count) == (200, sum(s.timeout or s.value_error for s in traces))
    assert tool.latency_ms.model_dump() == pcts([s.tool_ms for s in traces])
    llm = spans[("chat_model", "CHAT_MODEL")]
    assert (llm.count, llm.error_count) == (sum(s.llm_calls for s in traces), sum(s.rate_limit for s in traces))
    root = spans[("support_agent", "AGENT")]
    assert (root.count, root.error_count) == (200, sum(s.value_error for s in traces))
    assert spans[("search_docs", "RETRIEVER")].latency_ms.model_dump() == pcts([5 + s.index % 3 for s in traces])
    assert spans[("postprocess", "UNKNOWN")].count == sum(s.unset_span for s in traces)
    never_ended = spans[("stream_consumer", "UNKNOWN")]
    assert never_ended.count == 1 and never_ended.latency_ms.p50 is None
    assert profile.span_count == sum(3 + s.llm_calls + s.unset_span + s.missing_end for s in traces)
    assert profile.spans_per_trace.max == 6


def test_error_signatures_group_and_count_where_errors_begin(profile, seeded_store: SeededStore):
    traces = seeded_store.traces
    by_sig = {s.signature: s for s in profile.error_signatures}
    assert set(by_sig) == {
        "TimeoutError: timed out after <N>s for order <N>",
        "ValueError: bad order id <STR>",
        "RateLimitError: Error code: 429 - Rate limit reached (request <ID>)",
    }
    timeout = by_sig["TimeoutError: timed out after <N>s for order <N>"]
    timeouts = [s for s in traces if s.timeout]
    assert (timeout.exception_type, timeout.span_name, timeout.count, timeout.trace_count) == ("TimeoutError", "lookup_order", len(timeouts), len(timeouts))
    assert timeout.trace_ids == recent(timeouts, 5)
    assert timeout.example_message == f"timed out after {30 + (timeouts[-1].index % 3) * 15}s for order {10_000 + timeouts[-1].index}"
    # The uncaught ValueError also marks the root span ERROR; it is one failure, counted where it began.
    value = by_sig["ValueError: bad order id <STR>"]
    assert (value.span_name, value.count) == ("lookup_order", sum(s.value_error for s in traces))
    assert by_sig["RateLimitError: Error code: 429 - Rate limit reached (request <ID>)"].span_name == "chat_model"
    assert profile.error_signatures[0] == timeout  # most frequent first
    assert profile.signature(timeout.id) == timeout
    assert profile.traces_with_error_spans == sum(s.timeout or s.value_error or s.rate_limit for s in traces)


def test_hidden_failures(profile, seeded_store: SeededStore):
    hidden = [s for s in seeded_store.traces if s.hidden]
    assert profile.hidden_failures.count == len(hidden) == 15
    assert profile.hidden_failures.trace_ids == recent(hidden, 20)
    assert {b.span_name: b.count for b in profile.hidden_failures.by_span} == {
        "lookup_order": sum(s.timeout for s in hidden),
        "chat_model": sum(s.rate_limit for s in hidden),
    }


def test_tools_tokens_llm(profile, seeded_store: SeededStore):
    traces = seeded_store.traces
    assert [t.name for t in profile.tools] == ["lookup_order"]
    assert (profile.tools[0].calls, profile.tools[0].errors, profile.tools[0].trace_count) == (200, 18, 200)
    calls = sum(s.llm_calls for s in traces)
    assert profile.tokens.model_dump() == {
        "input": sum(s.input_tokens * s.llm_calls for s in traces),
        "output": 5 * calls,
        "total": sum((s.input_tokens + 5) * s.llm_calls for s in traces),
        "traces_with_usage": 200,
    }
    assert (profile.llm.calls, profile.llm.traces_with_calls) == (calls, 200)
    assert profile.llm.calls_per_trace.model_dump() == {"mean": calls / 200, "p50": 1, "p90": 1, "max": 2}
    models = Counter()
    for s in traces:
        models[s.model] += s.llm_calls
    assert {m.name: m.count for m in profile.llm.models} == dict(models)


def test_retrieval_outputs_shapes(profile, seeded_store: SeededStore):
    traces = seeded_store.traces
    empty_retrieval = [s for s in traces if s.retrieval_empty or s.retrieval_missing]
    r = profile.retrieval
    assert (r.spans, r.empty, r.traces_with_retrieval, r.traces_with_empty_retrieval) == (200, len(empty_retrieval), 200, len(empty_retrieval))
    assert r.empty_share == round(len(empty_retrieval) / 200, 4)
    assert r.empty_trace_ids == recent(empty_retrieval, 20)
    o = profile.outputs
    missing = [s for s in traces if s.output == "missing"]
    empty = [s for s in traces if s.output in ("empty_text", "empty_chat")]
    assert (o.missing, o.empty) == (len(missing), len(empty))
    assert o.missing_ok == sum(s.state == "OK" for s in missing)
    assert o.empty_ok_trace_ids == recent(empty, 20)
    assert o.inputs_missing == 0
    outputs = {(s.kind, tuple(s.keys)): s.count for s in profile.shapes.outputs}
    assert outputs == {
        ("object", ("answer",)): sum(s.output == "answer" for s in traces),
        ("text", ()): sum(s.output == "empty_text" for s in traces),
        ("chat_completion", ("choices",)): sum(s.output == "empty_chat" for s in traces),
    }
    inputs = {(s.kind, tuple(s.keys)): s.count for s in profile.shapes.inputs}
    assert inputs == {("chat_messages", ("messages",)): 199, ("non_json", ()): 1}


def test_sessions_and_assessments(profile, seeded_store: SeededStore):
    s = profile.sessions
    assert (s.traces_with_session, s.distinct_sessions) == (100, 25)
    assert s.traces_per_session.model_dump() == {"mean": 4.0, "p50": 4, "p90": 4, "max": 4}
    assert s.example_session_ids == [f"session-{k:03d}" for k in range(5)]
    by_name = {a.name: a for a in profile.assessments}
    correct = by_name["correct"]
    truth = seeded_store.assessments["correct"]
    assert (correct.kind, correct.count, correct.trace_count, correct.sources) == ("feedback", len(truth), len(truth), {"HUMAN": len(truth)})
    assert correct.values == {"true": sum(v for _, v, _ in truth), "false": sum(not v for _, v, _ in truth)}
    relevance = by_name["relevance"]
    values = [v for _, v, _ in seeded_store.assessments["relevance"]]
    assert relevance.sources == {"LLM_JUDGE": len(values)}
    assert (relevance.numeric.min, relevance.numeric.max, relevance.numeric.count) == (min(values), max(values), len(values))
    assert by_name["expected_answer"].kind == "expectation" and by_name["expected_answer"].count == 4


def test_odd_data_is_counted(profile, seeded_store: SeededStore):
    odd = profile.odd_data
    traces = seeded_store.traces
    assert odd["spans_unset_status"].count == sum(s.unset_span for s in traces) + 1
    assert odd["spans_missing_end_time"].count == 1
    assert odd["spans_missing_end_time"].trace_ids == [traces[150].spec.mlflow_id]
    assert odd["non_json_payloads"].trace_ids == [traces[160].spec.mlflow_id]
    assert odd["huge_payloads"].trace_ids == [traces[170].spec.mlflow_id]
    assert odd["traces_without_spans"].count == 0
    assert len(profile.sample_trace_ids) == 25
    clean = {s.spec.mlflow_id for s in traces if s.state == "OK" and not (s.timeout or s.rate_limit)}
    assert set(profile.sample_trace_ids) <= clean


@pytest.mark.parametrize("path", ["api", "sql+search"])
def test_every_path_gives_the_same_profile(profile, seeded_store: SeededStore, path):
    other = build_profile(seeded_store.uri, seeded_store.support_id, path=path, filter_string="trace.timestamp_ms >= 0" if path == "sql+search" else None)
    assert other.source.path == path
    assert _numbers(other) == _numbers(profile)


def test_http_server_gives_the_same_profile(profile, seeded_store: SeededStore, mlflow_server):
    remote = build_profile(mlflow_server.url, "support-agent")
    assert remote.source.path == "api"
    local = _numbers(profile)
    # The REST transport re-encodes a span attribute that was not JSON as a JSON string, so the
    # one hand-broken input reads as text over HTTP; everything else must match exactly.
    assert remote.odd_data["non_json_payloads"].count == 0 and local["odd_data"]["non_json_payloads"]["count"] == 1
    local["odd_data"]["non_json_payloads"] = remote.odd_data["non_json_payloads"].model_dump()
    local["shapes"]["inputs"] = [{**s, "kind": "text"} if s["kind"] == "non_json" else s for s in local["shapes"]["inputs"]]
    assert _numbers(remote) == local


@pytest.mark.parametrize("path", ["sql", "api"])
def test_limits_keep_the_most_recent_traces_on_both_paths(seeded_store: SeededStore, path):
    limited = build_profile(seeded_store.uri, seeded_store.support_id, max_traces=50, path=path)
    assert (limited.trace_count, limited.source.truncated) == (50, True)
    assert limited.time_range.first_ms == BASE_MS + 150 * 60_000
    since = build_profile(seeded_store.uri, seeded_store.support_id, since_ms=BASE_MS + 150 * 60_000, path=path)
    assert _numbers(since) == _numbers(limited) and not since.source.truncated
    exact = build_profile(seeded_store.uri, seeded_store.support_id, max_traces=200, path=path)
    assert (exact.trace_count, exact.source.truncated) == (200, False)


def test_filter_uses_mlflow_semantics(seeded_store: SeededStore):
    errors = build_profile(seeded_store.uri, seeded_store.support_id, filter_string="attributes.status = 'ERROR'")
    assert errors.source.path == "sql+search"
    assert errors.status_counts == {"ERROR": sum(s.state == "ERROR" for s in seeded_store.traces)}
    api = build_profile(seeded_store.uri, seeded_store.support_id, filter_string="attributes.status = 'ERROR'", path="api")
    assert _numbers(api) == _numbers(errors)


def test_odd_experiment_big_trace_orphans_unset_root(seeded_store: SeededStore):
    sql = build_profile(seeded_store.uri, seeded_store.odd_id)
    api = build_profile(seeded_store.uri, seeded_store.odd_id, path="api")
    assert _numbers(sql) == _numbers(api)
    assert sql.trace_count == 3
    assert sql.spans_per_trace.max == BIG_SPANS
    steps = [s for s in sql.spans if s.name.startswith("step_")]
    assert sum(s.count for s in steps) == BIG_SPANS - 1 and len(steps) == 50
    assert sql.odd_data["traces_without_root"].trace_ids == [seeded_store.odd_trace_ids["orphans"]]
    assert sql.odd_data["spans_unset_status"].count >= 1
    assert sql.trace_names  # the orphan's span stands in for the missing root


def test_empty_experiment_profiles_to_zero(seeded_store: SeededStore):
    empty = build_profile(seeded_store.uri, seeded_store.empty_id)
    assert empty.trace_count == 0 and empty.latency_ms.p50 is None and empty.spans == []


def _numbers(profile) -> dict:
    return profile.model_dump(exclude={"source", "generated_at"})


def test_bad_requests_over_http_are_user_errors(mlflow_server):
    from mlflow_eval_agent.traces.source import ExperimentNotFound, InvalidQuery

    with pytest.raises(ExperimentNotFound, match="was not found"):
        build_profile(mlflow_server.url, "no-such-experiment")
    with pytest.raises(InvalidQuery, match="MLflow rejected the query"):
        build_profile(mlflow_server.url, "support-agent", filter_string="this is not a filter")

"""Pieces of the profile without a store: signatures, percentiles, span parsing, odd records."""

from __future__ import annotations

import math
import random

import pytest

from mlflow_eval_agent.traces.percentiles import CountDistribution, ExactValues, nearest_rank
from mlflow_eval_agent.traces.profile import ProfileBuilder, shape_of
from mlflow_eval_agent.traces.profile_model import ProfileSource
from mlflow_eval_agent.traces.records import TraceRecord
from mlflow_eval_agent.traces.signatures import NO_MESSAGE, error_from_span, normalize_error_message, signature_id, split_type_prefix
from mlflow_eval_agent.traces.spans import Payload, is_empty_value, span_row
from tests.fakes.trace_writer import SpanSpec, TraceSpec, span_dicts

# --- signatures ----------------------------------------------------------------------------------


def test_the_issue_example_is_one_signature():
    a = normalize_error_message("timed out after 30s for order 12345")
    assert a == normalize_error_message("timed out after 30s for order 98765") == "timed out after <N>s for order <N>"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("KeyError: 'user_1'", "KeyError: 'account'"),
        ('file "/srv/app/data/a1.json" missing', 'file "/srv/app/data/zz.json" missing'),
        ("cannot open /var/lib/app/cache/7/blob", "cannot open /var/lib/app/cache/9/other"),
        ("request 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed", "request 0b1c2d3e-aaaa-4bbb-8ccc-123456789abc failed"),
        ("<Session object at 0x7f3a2b1c>", "<Session object at 0x10deadbeef>"),
        ("connect to 10.0.0.1:5432 refused", "connect to 192.168.4.20:5433 refused"),
        ("see https://api.example.com/v1/x?id=1", "see https://api.example.com/v1/y?id=2"),
        ("user ord_8fz2k1x not found", "user ord_0aa91b2 not found"),
        ("invite sent to ana@example.com failed", "invite sent to bo@corp.io failed"),
        ("at 2024-05-01T10:00:00Z the lease expired", "at 2025-12-31 23:59:59 the lease expired"),
        ("trace tr-0253a32b27b249c8132b18d0576d9427 missing", "trace tr-99aa32b27b249c8132b18d0576d94ff missing"),
        ("Rate limit: 1,000 tokens per 60.5 s", "Rate limit: 250 tokens per 1 s"),
        ("order A1035 not found", "order B2077 not found"),
    ],
)
def test_errors_that_differ_only_by_values_share_a_signature(first, second):
    assert normalize_error_message(first) == normalize_error_message(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Error code: 429 - too many requests", "Error code: 500 - too many requests"),
        ("model gpt-4o-mini is not available", "model gpt-4o is not available"),
        ("index out of range", "key not found"),
    ],
)
def test_different_failures_stay_apart(first, second):
    assert normalize_error_message(first) != normalize_error_message(second)


def test_only_the_first_line_counts_and_length_is_capped():
    assert normalize_error_message("\n  3 validation errors for Order\nfield x\n  bad") == "<N> validation errors for Order"
    assert len(normalize_error_message("word " * 500)) <= 240
    assert normalize_error_message("") == normalize_error_message(None) == NO_MESSAGE


def test_error_from_span_prefers_the_exception_event():
    span = {"events": [{"name": "exception", "attributes": {"exception.type": "TimeoutError", "exception.message": "slow"}}]}
    assert error_from_span(span, "TimeoutError: slow").exception_type == "TimeoutError"
    quoted = {"events": [{"name": "exception", "attributes": {"exception.type": '"ValueError"', "exception.message": '"bad"'}}]}
    assert (error_from_span(quoted, "").exception_type, error_from_span(quoted, "").message) == ("ValueError", "bad")
    only_status = error_from_span({"events": []}, "KeyError: 'x'")
    assert (only_status.exception_type, only_status.message) == ("KeyError", "'x'")
    plain = error_from_span({}, "the tool timed out: retry later")
    assert plain.exception_type is None and plain.signature_text() == "the tool timed out: retry later"
    assert split_type_prefix("openai.RateLimitError: Error code: 429")[0] == "openai.RateLimitError"
    assert signature_id("E", "span", "msg") == signature_id("E", "span", "msg") != signature_id("E", "other", "msg")


# --- percentiles ---------------------------------------------------------------------------------


def test_nearest_rank_definition():
    values = list(range(1, 101))
    assert [nearest_rank(values, q) for q in (0, 1, 50, 90, 99, 100)] == [1, 1, 50, 90, 99, 100]
    assert nearest_rank([7], 99) == 7
    assert nearest_rank([1, 2, 3, 4], 50) == 2 and nearest_rank([1, 2, 3, 4], 51) == 3


def test_exact_values_match_the_definition_on_random_data():
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 999, 5_000):
        data = [rng.randrange(0, 10**12) for _ in range(n)]
        acc = ExactValues()
        for v in data:
            acc.add(v)
        ordered = sorted(data)
        expected = {f"p{q}": float(ordered[max(1, math.ceil(q * n / 100)) - 1]) for q in (50, 90, 99)} | {"max": float(max(data))}
        assert acc.summary() == expected
        assert acc.summary(scale=1e6)["max"] == round(max(data) / 1e6, 3)
    assert ExactValues().summary() == {"p50": None, "p90": None, "p99": None, "max": None}
    assert ExactValues().nbytes() == 0


def test_count_distribution():
    dist = CountDistribution()
    for v in [1] * 89 + [2] * 10 + [40]:
        dist.add(v)
    assert dist.summary() == {"mean": round((89 + 20 + 40) / 100, 3), "p50": 1, "p90": 2, "max": 40}
    assert CountDistribution().summary()["p50"] is None


# --- span parsing and payloads -------------------------------------------------------------------


def test_span_row_tolerates_odd_spans():
    assert span_row({"name": "x"}) is None  # no id
    row = span_row({"span_id": "a", "status": {"code": 2}, "start_time_unix_nano": "5", "end_time_unix_nano": 0, "attributes": "nope"})
    assert (row.status, row.start_ns, row.end_ns, row.duration_ns, row.span_type, row.name) == ("ERROR", 5, None, None, "UNKNOWN", "(unnamed)")
    row = span_row({"span_id": "b", "status": {"code": "STATUS_CODE_UNSET"}, "start_time_unix_nano": 10, "end_time_unix_nano": 4})
    assert (row.status, row.duration_ns) == ("UNSET", None)
    row = span_row({"span_id": "c", "status": {"code": "OK"}, "attributes": {"mlflow.spanType": '"TOOL"', "mlflow.spanInputs": "{broken"}})
    assert (row.status, row.span_type) == ("OK", "TOOL")
    assert row.payload("mlflow.spanInputs").is_json is False and not row.payload("mlflow.spanOutputs").present


@pytest.mark.parametrize(
    ("value", "empty"),
    [
        (None, True), ("", True), ("  \n", True), ([], True), ({}, True), ({"answer": ""}, True), ([{"page_content": ""}], True),
        ({"choices": [{"message": {"role": "assistant", "content": ""}}]}, True),
        ({"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}}]}, False),
        ({"role": "assistant", "content": "hi"}, False), ("ok", False), (0, False), (False, False), ({"answer": "", "sources": ["a"]}, False),
    ],
)
def test_empty_values(value, empty):
    assert is_empty_value(value) is empty


def test_shapes():
    assert shape_of(Payload.of('{"messages": [{"role": "user", "content": "hi"}], "model": "m"}')) == ("chat_messages", ("messages", "model"))
    assert shape_of(Payload.of('{"choices": []}')) == ("chat_completion", ("choices",))
    assert shape_of(Payload.of('[{"role": "user", "content": "x"}]')) == ("chat_messages", ())
    assert shape_of(Payload.of('"text"')) == ("text", ())
    assert shape_of(Payload.of("not json")) == ("non_json", ())
    assert shape_of(Payload.of("[" + "1," * 600_000 + "1]")) == ("huge", ())
    assert shape_of(Payload.of("true")) == ("boolean", ()) and shape_of(Payload.of("3.5")) == ("number", ())


# --- the builder on hand-made records ------------------------------------------------------------


def _record(spec: TraceSpec, state: str = "OK", latency: int | None = 10, spans: list | None = None) -> TraceRecord:
    return TraceRecord(spec.mlflow_id, state, spec.start_ms, latency, spans=list(span_dicts(spec)) if spans is None else spans)


def _nested_error_trace(start_ms: int) -> TraceSpec:
    leaf = SpanSpec("db_call", "TOOL", start_ms=3, status="ERROR", error=("TimeoutError", f"timed out after {start_ms % 50}s"))
    middle = SpanSpec("fetch", "CHAIN", start_ms=2, status="ERROR", error=("TimeoutError", "timed out after 1s"), children=[leaf])
    root = SpanSpec("agent", "AGENT", status="ERROR", error=("TimeoutError", "timed out after 2s"), children=[middle], inputs={"q": 1})
    return TraceSpec(root=root, start_ms=start_ms)


def test_an_error_reraised_by_every_parent_is_counted_once_where_it_began():
    builder = ProfileBuilder()
    builder.add(_record(_nested_error_trace(1_000), state="ERROR"))
    profile = builder.finish("1", ProfileSource(path="api"))
    assert [(s.span_name, s.count) for s in profile.error_signatures] == [("db_call", 1)]
    assert profile.hidden_failures.count == 0 and profile.outputs.missing == 1


def test_odd_records_are_counted_not_fatal():
    builder = ProfileBuilder()
    two_roots = TraceSpec(root=SpanSpec("a", duration_ms=5), start_ms=1)
    spans = list(span_dicts(two_roots)) + list(span_dicts(TraceSpec(root=SpanSpec("b", duration_ms=7), start_ms=1)))
    builder.add(_record(two_roots, spans=spans))
    builder.add(_record(TraceSpec(root=SpanSpec("x"), start_ms=2), spans=[]))  # a trace with no spans
    builder.add(_record(TraceSpec(root=SpanSpec("y"), start_ms=3), latency=None, spans=[{"span_id": None, "unparseable": True}, "junk"]))
    profile = builder.finish("1", ProfileSource(path="api"))
    odd = {k: v.count for k, v in profile.odd_data.items() if v.count}
    assert odd == {"traces_with_multiple_roots": 1, "traces_without_spans": 2, "unparseable_spans": 2, "traces_without_duration": 1}
    assert profile.trace_count == 3 and profile.latency_ms.max == 10.0


def test_the_profile_does_not_depend_on_visit_order():
    specs = [_nested_error_trace(1_000 + i) for i in range(30)]
    specs += [TraceSpec(root=SpanSpec("agent", "AGENT", duration_ms=i, outputs="" if i % 4 else "ok", children=[
        SpanSpec("tool", "TOOL", status="ERROR" if i % 5 == 0 else "OK", error=("KeyError", f"'k{i}'") if i % 5 == 0 else None),
        SpanSpec("llm", "CHAT_MODEL", attributes={"mlflow.llm.model": f"m{i % 3}"})]), start_ms=5_000 + i, session_id=f"s{i % 4}") for i in range(40)]
    records = [_record(s, state="ERROR" if s.root.status == "ERROR" else "OK", latency=s.root.duration_ms) for s in specs]

    def profile(rs):
        builder = ProfileBuilder()
        for r in rs:
            builder.add(r)
        return builder.finish("1", ProfileSource(path="api")).model_dump(exclude={"generated_at"})

    first = profile(records)
    rng = random.Random(3)
    shuffled = [TraceRecord(r.trace_id, r.state, r.request_time_ms, r.execution_ms, r.session_id, spans=rng.sample(r.spans, len(r.spans))) for r in records]
    rng.shuffle(shuffled)
    assert profile(shuffled) == first


def test_latency_histogram_and_timeline_hold_every_trace_once():
    from mlflow_eval_agent.traces.percentiles import histogram

    values = ExactValues()
    for v in (100, 120, 150, 900, 5_000, 40_000):  # spans 400x: log-spaced bins
        values.add(v)
    bins = histogram(values, bins=6)
    assert sum(c for _, _, c in bins) == 6 and bins[0][0] == 100 and bins[-1][1] == 40_000
    widths = [hi / lo for lo, hi, _ in bins]
    assert max(widths) - min(widths) < 1e-3, "log-spaced: every bin the same ratio"
    assert histogram(ExactValues()) == [] and sum(c for *_, c in histogram(values, bins=3)) == 6

    builder = ProfileBuilder()
    states = ["OK", "ERROR", "OK", "OK", "IN_PROGRESS", "ERROR"]
    for i, state in enumerate(states):
        builder.add(TraceRecord(f"t{i}", state, 1_000_000 + i * 60_000, 100 + i))
    builder.add(TraceRecord("untimed", "OK", None, None))
    profile = builder.finish("1", ProfileSource(path="api"))
    buckets = profile.timeline
    assert buckets[0].start_ms == 1_000_000 and buckets[-1].end_ms > 1_000_000 + 5 * 60_000
    totals = {}
    for b in buckets:
        for k, v in b.states.items():
            totals[k] = totals.get(k, 0) + v
    assert totals == {"OK": 3, "ERROR": 2, "IN_PROGRESS": 1}, "every trace with a start time, once, by its state"
    assert buckets[0].states == {"OK": 1} and buckets[-1].states == {"ERROR": 1}
    assert sum(b.count for b in profile.latency_histogram) == 6

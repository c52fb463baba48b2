"""The API path's span budget (api_reader, TraceQuery.span_traces): spans are read for the newest N
traces only, the rest count at trace level. The result is exactly what the profile builder makes
of the same traces when the older ones carry no spans. Trace-level figures equal the full
profile's. The trajectory scan still sees its newest traces whole, and only N traces are
batch-got in the pass."""

from __future__ import annotations

import json

from mlflow_eval_agent.traces.profile import build_profile, profile_records
from mlflow_eval_agent.traces.profile_model import ProfileSource
from mlflow_eval_agent.traces.query import TraceQuery
from mlflow_eval_agent.traces.source import TraceSource
from tests.fakes.profile_fixtures import SeededStore, ServerHandle

TRACE_LEVEL = ("trace_count", "time_range", "status_counts", "latency_ms", "latency_histogram", "timeline", "tokens", "sessions",
               "assessments", "slowest_traces")


def _numbers(profile, *exclude: str) -> dict:
    return profile.model_dump(exclude={"source", "generated_at", *exclude})


def _expected(store: SeededStore, newest: int, max_traces: int | None = None, uri: str | None = None, path: str = "sql"):
    """The builder over one path's full records (newest first) with every trace after the newest `newest` stripped of its spans."""
    source = TraceSource(uri or store.uri, TraceQuery(store.support_id, max_traces=max_traces), force_path=path)
    records = []
    for i, record in enumerate(source.records()):
        if i >= newest:
            record.spans_read, record.spans, record.columns, record.rows = False, [], None, None
        records.append(record)
    return profile_records(records, store.support_id, ProfileSource(path="sql"), "support-agent")


def test_only_the_newest_traces_spans_are_read_and_the_rest_count_at_trace_level(seeded_store: SeededStore, batch_gets):
    full = build_profile(seeded_store.uri, seeded_store.support_id, path="sql")
    got = build_profile(seeded_store.uri, seeded_store.support_id, path="api", span_traces=50, trajectory_scan=0)
    assert sum(batch_gets) == 50  # the pass batch-got 50 traces' spans, not 200
    assert got.trace_count == 200 and got.span_trace_count == 50 and got.source.span_traces == 50
    assert got.traces_with_spans_read == 50 and full.traces_with_spans_read == 200 and full.span_trace_count is None
    assert _numbers(got, "trajectory") == _numbers(_expected(seeded_store, 50), "trajectory")
    for field in TRACE_LEVEL:  # every trace counts here
        assert getattr(got, field) == getattr(full, field), field
    assert got.span_count < full.span_count and got.spans_per_trace.mean > 0


def test_the_trajectory_scan_still_reads_its_newest_traces_whole(mlflow_server: ServerHandle, seeded_store: SeededStore, batch_gets):
    """Over HTTP (a real `mlflow server`), where the scan reads through the API too."""
    full = build_profile(seeded_store.uri, seeded_store.support_id, path="sql")
    got = build_profile(mlflow_server.url, seeded_store.support_id, path="api", span_traces=50)  # scan: the newest 200 (all)
    assert got.trajectory == full.trajectory and got.span_trace_count == 50
    assert sum(batch_gets) == 200  # 50 in the pass (kept for the scan: not read twice), the other 150 by the scan
    assert _numbers(got, "trajectory") == _numbers(_expected(seeded_store, 50, uri=mlflow_server.url, path="api"), "trajectory")


def test_the_budget_and_max_traces_together(seeded_store: SeededStore):
    got = build_profile(seeded_store.uri, seeded_store.support_id, path="api", max_traces=120, span_traces=50, trajectory_scan=0)
    assert got.trace_count == 120 and got.source.truncated and got.span_trace_count == 50
    assert _numbers(got, "trajectory") == _numbers(_expected(seeded_store, 50, max_traces=120), "trajectory")


def test_a_budget_as_large_as_the_experiment_changes_nothing(seeded_store: SeededStore):
    every = build_profile(seeded_store.uri, seeded_store.support_id, path="api", span_traces=0)
    budget = build_profile(seeded_store.uri, seeded_store.support_id, path="api", span_traces=200)
    assert every.span_trace_count is None and budget.span_trace_count is None
    assert every.source.span_traces is None and budget.source.span_traces == 200
    assert _numbers(every) == _numbers(budget) == _numbers(build_profile(seeded_store.uri, seeded_store.support_id, path="sql"))


def test_the_sql_path_reads_every_span_whatever_the_budget(seeded_store: SeededStore):
    got = build_profile(seeded_store.uri, seeded_store.support_id, path="sql", span_traces=10)
    assert got.span_trace_count is None and got.source.span_traces is None


def test_analyze_takes_the_budget_and_says_what_it_counted(seeded_store: SeededStore, capsys):
    from mlflow_eval_agent.cli import main

    code = main(["analyze", "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri, "--engine", "api", "--span-traces", "30", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    doc = json.loads(out.out)
    assert doc["trace_count"] == 200 and doc["span_trace_count"] == 30 and doc["source"]["span_traces"] == 30
    assert main(["analyze", "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri, "--engine", "api", "--span-traces", "30"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "Span-level figures" in shown and "newest 30 of 200 traces" in shown
    assert main(["analyze", "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri, "--span-traces", "-1"]) == 2

"""The agent's profile tools: bounded output, the saved profile, drill-downs to real traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlflow_eval_agent.settings import Settings
from mlflow_eval_agent.store import SessionStore
from mlflow_eval_agent.tools import ToolContext, tools_for
from mlflow_eval_agent.tools._base import run_tool
from mlflow_eval_agent.tools.profile import PROFILE_FILE
from mlflow_eval_agent.traces.drilldown import stratified_sample
from mlflow_eval_agent.traces.profile import ProfileBuilder
from mlflow_eval_agent.traces.profile_model import ProfileSource, TraceProfile
from mlflow_eval_agent.traces.profile_summary import compact_profile
from mlflow_eval_agent.traces.records import TraceRecord
from tests.fakes.profile_fixtures import SeededStore, free_port
from tests.fakes.trace_writer import SpanSpec, TraceSpec, span_dicts



@pytest.fixture
def ctx(seeded_store: SeededStore, tmp_path: Path) -> ToolContext:
    settings = Settings(tracking_uri=seeded_store.uri, experiment_id=seeded_store.support_id)
    return ToolContext(settings=settings, store=SessionStore(tmp_path / "session", "s1"))


def call(ctx: ToolContext, name: str, **arguments):
    tool = next(t for t in tools_for("worker", ctx) if t.name == name)
    text, is_error = run_tool(tool, ctx, arguments)
    return (text if is_error else json.loads(text)), is_error


def test_profile_tool_is_compact_exact_and_saved(ctx: ToolContext, seeded_store: SeededStore):
    result, is_error = call(ctx, "profile")
    assert not is_error
    assert len(json.dumps(result["profile"])) <= 6_000
    p = result["profile"]
    assert p["trace_count"] == 200 and p["hidden_failures"]["count"] == 15
    assert p["error_signatures"][0]["signature"] == "TimeoutError: timed out after <N>s for order <N>"
    assert "untrusted" in result["note"]
    saved = ctx.store.read_model(PROFILE_FILE, TraceProfile)
    assert saved.trace_count == 200 and saved.source.filter_string is None


def test_saved_profile_is_reused_until_refresh(ctx: ToolContext):
    call(ctx, "profile")
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    offline = ToolContext(settings=Settings(tracking_uri=gone, experiment_id=ctx.settings.experiment_id), store=ctx.store)
    result, is_error = call(offline, "profile")  # the store is unreachable: the saved profile answered
    assert not is_error and result["profile"]["trace_count"] == 200
    text, is_error = call(offline, "profile", refresh=True)
    assert is_error and "Cannot reach the MLflow tracking server" in text


def test_filtered_profile_is_not_saved(ctx: ToolContext):
    result, _ = call(ctx, "profile", filter="attributes.status = 'ERROR'")
    assert result["profile"]["status_counts"] == {"ERROR": 8}
    assert not ctx.store.exists(PROFILE_FILE)
    text, is_error = call(ctx, "profile", filter="nonsense here")
    assert is_error and "MLflow rejected the query" in text


def test_signature_examples_show_the_failing_span(ctx: ToolContext):
    profile, _ = call(ctx, "profile")
    timeout = profile["profile"]["error_signatures"][0]
    result, is_error = call(ctx, "signature_examples", signature_id=timeout["id"], limit=2)
    assert not is_error and len(result["examples"]) == 2
    example = result["examples"][0]
    assert example["trace_id"] == timeout["trace_ids"][0]
    assert (example["span_name"], example["exception_type"]) == ("lookup_order", "TimeoutError")
    assert example["message"].startswith("timed out after") and "order_id" in example["span_inputs"]
    text, is_error = call(ctx, "signature_examples", signature_id="sig-unknown")
    assert is_error and "No error signature" in text


def test_hidden_failures_and_slowest(ctx: ToolContext, seeded_store: SeededStore):
    result, _ = call(ctx, "hidden_failures", limit=2)
    assert result["count"] == 15 and len(result["examples"]) == 2
    assert result["examples"][0]["state"] == "OK" and result["examples"][0]["failed_spans"][0]["span_name"] in ("lookup_order", "chat_model")
    slow, _ = call(ctx, "slowest_traces", limit=3)
    assert [t["latency_ms"] for t in slow["traces"]] == [299, 298, 297]
    assert slow["traces"][0]["slowest_spans"][0]["name"] in ("chat_model", "lookup_order", "search_docs")
    text, is_error = call(ctx, "slowest_traces", filter="bogus ===")
    assert is_error and "filter" in text


def test_stratified_sample_covers_every_stratum(ctx: ToolContext, seeded_store: SeededStore):
    result, _ = call(ctx, "stratified_sample", size=20)
    items = result["traces"]
    assert len(items) == 20 == len({i["trace_id"] for i in items})
    strata = {i["stratum"].split(":")[0] for i in items}
    assert strata == {"error", "hidden_failure", "empty_output", "empty_retrieval", "slow", "normal"}
    assert len({i["stratum"] for i in items if i["stratum"].startswith("error:")}) == 3  # every signature
    assert sum(i["stratum"] == "normal" for i in items) >= 6
    by_id = {s.spec.mlflow_id: s for s in seeded_store.traces}
    for item in items:
        if item["stratum"] == "normal":
            assert by_id[item["trace_id"]].state == "OK"


def test_sample_falls_back_when_strata_run_short():
    profile = _synthetic_profile(traces=30, names=3, signatures=1)
    items = stratified_sample(profile, 100)
    assert len(items) == len({i.trace_id for i in items}) <= 30


def _synthetic_profile(traces: int, names: int, signatures: int) -> TraceProfile:
    builder = ProfileBuilder()
    for i in range(traces):
        children = [SpanSpec(f"tool_{i % names}_{'x' * 40}", "TOOL", start_ms=1, duration_ms=1 + i % 17)]
        if i % 3 == 0:
            children[0].status = "ERROR"
            children[0].error = (f"Error{i % signatures}", f"failure kind {i % signatures} " + "word " * 30)
        spec = TraceSpec(root=SpanSpec("root", "AGENT", duration_ms=50, inputs={"q": i}, outputs="a", children=children), start_ms=1_700_000_000_000 + i)
        builder.add(TraceRecord(spec.mlflow_id, "OK", spec.start_ms, 50, spans=list(span_dicts(spec))))
    return builder.finish("1", ProfileSource(path="api"))


def test_compact_profile_stays_small_for_a_sprawling_experiment():
    profile = _synthetic_profile(traces=3_000, names=900, signatures=400)
    assert len(profile.spans) == 901 and len(profile.error_signatures) >= 300
    view = compact_profile(profile)
    assert len(json.dumps(view)) <= 6_000
    assert view["omitted_rows"]["spans"] >= 890 and view["trace_count"] == 3_000


def test_drill_downs_fail_fast_when_the_store_is_gone(ctx: ToolContext):
    call(ctx, "profile")  # saved while the store was up
    gone = ToolContext(settings=Settings(tracking_uri=f"http://127.0.0.1:{free_port()}", experiment_id="1"), store=ctx.store)
    for name, args in (("hidden_failures", {}), ("slowest_traces", {}), ("signature_examples", {"signature_id": "sig-whatever"})):
        text, is_error = call(gone, name, **args)
        assert is_error and ("Cannot reach the MLflow tracking server" in text or "No error signature" in text), (name, text)

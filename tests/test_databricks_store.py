"""Reading traces from MLflow's Databricks tracking store (`MLFLOW_TRACKING_URI=databricks`) against
the fake workspace: `analyze` and the drill-down tools send every batch get to the trace's location
(the experiment id, or a Unity Catalog schema), never to `/traces/None/batchGet`."""

from __future__ import annotations

import json
import types

import pytest
from mlflow import MlflowClient

from mlflow_eval_agent.cli import main
from mlflow_eval_agent.traces.drilldown import hidden_failure_examples, load_traces, signature_examples, slowest_traces
from mlflow_eval_agent.traces.locations import ARTIFACTS, location_of, location_of_id, on_databricks_store
from mlflow_eval_agent.traces.profile import build_profile
from mlflow_eval_agent.traces.views import load_trace
from tests.fakes.databricks_api import FakeDatabricks
from tests.fakes.profile_fixtures import SUPPORT, SeededStore


@pytest.fixture(scope="module")
def support_traces(seeded_store: SeededStore) -> list:
    """The seeded support experiment's traces, spans and assessments included, read from sqlite."""
    return list(MlflowClient(seeded_store.uri).search_traces(locations=[seeded_store.support_id], max_results=1000, include_spans=True))


@pytest.fixture(scope="module")
def local_profile(seeded_store: SeededStore):
    return build_profile(seeded_store.uri, seeded_store.support_id)


@pytest.fixture(params=["tracking_store", "artifacts"])
def workspace(request, seeded_store: SeededStore, support_traces, monkeypatch):
    """The fake workspace holding the support experiment, spans in the tracking store (v4 batch get
    at the experiment) or in the artifact repository (presigned downloads); this process points at it."""
    with FakeDatabricks() as fake:
        fake.add_experiment(seeded_store.support_id, SUPPORT)
        fake.add_traces(seeded_store.support_id, support_traces, spans=request.param)
        fake.spans_in = request.param
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        yield fake


def _numbers(profile) -> dict:
    return profile.model_dump(exclude={"source", "generated_at"})


def test_the_profile_through_the_databricks_store_equals_the_local_one(workspace, seeded_store, local_profile):
    remote = build_profile("databricks", seeded_store.support_id)
    assert remote.source.path == "api" and remote.trace_count == 200
    local = _numbers(local_profile)
    if workspace.spans_in == "tracking_store":
        # As over HTTP, the OTel transport re-encodes the one hand-broken non-JSON span input as a
        # JSON string, so it reads as text (the trace data file keeps it as it was); the rest must match exactly.
        assert remote.odd_data["non_json_payloads"].count == 0 and local["odd_data"]["non_json_payloads"]["count"] == 1
        local["odd_data"]["non_json_payloads"] = remote.odd_data["non_json_payloads"].model_dump()
        local["shapes"]["inputs"] = [{**s, "kind": "text"} if s["kind"] == "non_json" else s for s in local["shapes"]["inputs"]]
    assert _numbers(remote) == local
    locations = workspace.batch_get_locations()
    if workspace.spans_in == "tracking_store":
        assert locations and set(locations) == {seeded_store.support_id}
    else:  # read as MLflow's own search_traces reads them: a presigned download each, no batch get
        assert not locations and len({r.path for r in workspace.calls("GET", "/presigned/")}) == 200
    assert workspace.unserved() == []
    searches = [json.loads(r.body) for r in workspace.calls("POST", "/api/4.0/mlflow/traces/search-long-running")]
    assert all(s["locations"] == [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": seeded_store.support_id}}] for s in searches)
    assert all(r.authorized for r in workspace.requests if r.path != "/.well-known/databricks-config" and not r.path.startswith("/presigned/"))


def test_the_analyze_command_reads_the_workspace(workspace, seeded_store, local_profile, capsys):
    code = main(["analyze", "-e", SUPPORT, "--tracking-uri", "databricks", "--json", "--max-traces", "40"])
    out = capsys.readouterr()
    assert code in (0, None), out.err
    document = json.loads(out.out)
    assert document["trace_count"] == 40 and document["experiment_id"] == seeded_store.support_id
    assert "None" not in workspace.batch_get_locations()


def test_drill_downs_batch_get_from_the_experiment(workspace, seeded_store, local_profile):
    signature = local_profile.error_signatures[0]
    found = signature_examples("databricks", local_profile, signature.id, limit=3)
    assert [e["trace_id"] for e in found["examples"]] == signature.trace_ids[:3]
    assert all("exception_type" in e for e in found["examples"]), found  # the failing span was found in the spans
    hidden = hidden_failure_examples("databricks", local_profile, limit=2)
    assert len(hidden) == min(2, len(local_profile.hidden_failures.trace_ids)) and all(h["failed_spans"] for h in hidden)
    slow = slowest_traces(MlflowClient("databricks"), seeded_store.support_id, limit=3)
    assert [s["trace_id"] for s in slow] == [s.trace_id for s in local_profile.slowest_traces[:3]]
    assert all(s["slowest_spans"] for s in slow)
    trace = load_trace(MlflowClient("databricks"), signature.trace_ids[0], seeded_store.support_id)
    assert trace.info.trace_id == signature.trace_ids[0] and trace.data.spans
    assert set(workspace.batch_get_locations()) == {seeded_store.support_id}
    assert workspace.unserved() == []


def test_without_a_location_the_workspace_path_is_the_broken_one(workspace, seeded_store, support_traces):
    """What the code did before: MLflow builds /traces/None/batchGet, which the workspace refuses."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracing.client import TracingClient

    with pytest.raises(MlflowException, match="does not exist"):
        TracingClient("databricks").batch_get_traces([support_traces[0].info.trace_id])
    assert workspace.batch_get_locations() == ["None"]
    assert load_traces("databricks", [support_traces[0].info.trace_id], seeded_store.support_id)


def test_other_stores_keep_mlflow_finding_the_spans(seeded_store, local_profile):
    """On sqlite (and a tracking server) the location stays None: MLflow picks tracking store,
    artifact repository or archive per trace; the drill-downs still find every trace."""
    assert not on_databricks_store(seeded_store.uri) and on_databricks_store("databricks") and on_databricks_store("databricks://prof")
    ids = local_profile.error_signatures[0].trace_ids[:3]
    assert [t.info.trace_id for t in load_traces(seeded_store.uri, ids, seeded_store.support_id)] == ids


def test_locations_per_store_kind():
    from mlflow.entities import TraceLocation

    experiment = types.SimpleNamespace(trace_location=TraceLocation.from_experiment_id("42"), tags={"mlflow.trace.spansLocation": "TRACKING_STORE"})
    in_artifacts = types.SimpleNamespace(trace_location=TraceLocation.from_experiment_id("42"), tags={"mlflow.artifactLocation": "dbfs:/x"})
    uc = types.SimpleNamespace(trace_location=TraceLocation.from_databricks_uc_schema("main", "agent_traces"), tags={})
    assert location_of(experiment, databricks=True) == "42" and location_of(experiment, databricks=False) is None
    assert location_of(in_artifacts, databricks=True) == ARTIFACTS and location_of(in_artifacts, databricks=False) is None
    assert location_of(uc, databricks=True) == "main.agent_traces" == location_of(uc, databricks=False)
    assert location_of_id("tr-abc", "42", databricks=True) == "42" and location_of_id("tr-abc", "42", databricks=False) is None
    assert location_of_id("trace:/main.agent_traces/0af7651916cd43dd8448eb211c80319c", "42", databricks=True) == "main.agent_traces"


def test_unity_catalog_located_traces_are_read_at_their_location(seeded_store, support_traces, monkeypatch):
    """Traces stored in a UC schema (v4 ids `trace:/<catalog>.<schema>/<otel id>`): the API reader's
    search and every batch get go to that location; the spans arrive whole."""
    import copy
    import uuid

    from mlflow.entities import Trace, TraceLocation

    from mlflow_eval_agent.traces.source import TraceQuery, TraceSource

    location = "main.agent_traces"
    stored = []
    for trace in support_traces[:25]:
        info = copy.deepcopy(trace.info)
        info.trace_id = f"trace:/{location}/{uuid.uuid4().hex}"
        info.trace_location = TraceLocation.from_databricks_uc_schema("main", "agent_traces")
        stored.append(Trace(info=info, data=trace.data))
    with FakeDatabricks(warehouses={"wh-7": "RUNNING"}) as fake:
        fake.add_traces(location, stored)
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        monkeypatch.setenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID", "wh-7")  # MLflow reads UC tables through a warehouse
        source = TraceSource("databricks", TraceQuery(location), force_path="api")
        records = list(source.records())
        assert len(records) == 25 and all(r.trace_id.startswith(f"trace:/{location}/") for r in records)
        assert [len(r.spans) for r in records] == [len(t.data.spans) for t in sorted(stored, key=lambda t: (-t.info.request_time, t.info.trace_id))]
        assert set(fake.batch_get_locations()) == {location}


def _in_unity_catalog(traces: list, catalog: str, schema: str) -> list:
    """These traces as a workspace holds traces stored in a UC schema (v4 ids, UC trace location)."""
    import copy
    import uuid

    from mlflow.entities import Trace, TraceLocation

    moved = []
    for trace in traces:
        info = copy.deepcopy(trace.info)
        info.trace_id = f"trace:/{catalog}.{schema}/{uuid.uuid4().hex}"
        info.trace_location = TraceLocation.from_databricks_uc_schema(catalog, schema)
        moved.append(Trace(info=info, data=trace.data))
    return moved


def test_analyze_profiles_unity_catalog_traces_through_the_api_path(seeded_store, support_traces, monkeypatch, capsys):
    """`analyze --trace-location <catalog>.<schema> --sql-warehouse-id <id>`: the profile of traces
    stored in Unity Catalog, read through MLflow's API at that location (search and batch gets with
    the warehouse), equals the profile of the same traces stored in an experiment."""
    traces = support_traces[:40]
    with FakeDatabricks(warehouses={"wh-7": "RUNNING"}) as fake:
        fake.add_experiment(seeded_store.support_id, SUPPORT)
        fake.add_traces(seeded_store.support_id, traces)
        fake.add_traces("main.agent_traces", _in_unity_catalog(traces, "main", "agent_traces"))
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        monkeypatch.setenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID", "")  # restored after the test: analyze sets it
        monkeypatch.delenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID")
        reference = build_profile("databricks", seeded_store.support_id)
        fake.requests.clear()

        code = main(["analyze", "--tracking-uri", "databricks", "--trace-location", "main.agent_traces", "--sql-warehouse-id", "wh-7", "--json"])
        out = capsys.readouterr()
        assert code in (0, None), out.err
        document = json.loads(out.out)
        assert document["source"]["path"] == "api" and document["experiment_id"] == "main.agent_traces"
        for key in ("trace_count", "span_count", "status_counts", "latency_ms", "spans_per_trace", "tools", "tokens"):
            assert document[key] == json.loads(reference.model_dump_json())[key], key
        assert [s["signature"] for s in document["error_signatures"]] == [s.signature for s in reference.error_signatures]
        assert document["hidden_failures"]["count"] == reference.hidden_failures.count
        searches = [json.loads(r.body) for r in fake.calls("POST", "/api/4.0/mlflow/traces/search-long-running")]
        assert searches and all((s["locations"][0]["uc_schema"]["catalog_name"], s["locations"][0]["uc_schema"]["schema_name"]) == ("main", "agent_traces") and s["sql_warehouse_id"] == "wh-7" for s in searches)
        assert set(fake.batch_get_locations()) == {"main.agent_traces"} and fake.unserved() == []
        assert all(r.query.get("sql_warehouse_id") == "wh-7" for r in fake.requests if r.path.endswith("/batchGet"))


def test_unity_catalog_traces_without_a_warehouse_say_what_to_pass(seeded_store, support_traces, monkeypatch, capsys):
    with FakeDatabricks(warehouses={"wh-7": "RUNNING"}) as fake:
        fake.add_traces("main.agent_traces", _in_unity_catalog(support_traces[:5], "main", "agent_traces"))
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        monkeypatch.setenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID", "")  # restored after the test: analyze sets it
        monkeypatch.delenv("MLFLOW_TRACING_SQL_WAREHOUSE_ID")
        code = main(["analyze", "--tracking-uri", "databricks", "--trace-location", "main.agent_traces", "--json"])
        err = capsys.readouterr().err
        assert code == 2 and "--sql-warehouse-id" in err and "Traceback" not in err
    assert main(["analyze", "--tracking-uri", "databricks", "--trace-location", "not a location"]) == 2
    assert "<catalog>.<schema>" in capsys.readouterr().err

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
from mlflow_eval_agent.traces.locations import location_of, location_of_id, on_databricks_store
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


@pytest.fixture
def workspace(seeded_store: SeededStore, support_traces, monkeypatch):
    """The fake workspace holding the support experiment; this process points at it."""
    with FakeDatabricks() as fake:
        fake.add_experiment(seeded_store.support_id, SUPPORT)
        fake.add_traces(seeded_store.support_id, support_traces)
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        yield fake


def _numbers(profile) -> dict:
    return profile.model_dump(exclude={"source", "generated_at"})


def test_the_profile_through_the_databricks_store_equals_the_local_one(workspace, seeded_store, local_profile):
    remote = build_profile("databricks", seeded_store.support_id)
    assert remote.source.path == "api" and remote.trace_count == 200
    local = _numbers(local_profile)
    # As over HTTP, the transport re-encodes the one hand-broken non-JSON span input as a JSON
    # string, so it reads as text; everything else must match exactly.
    assert remote.odd_data["non_json_payloads"].count == 0 and local["odd_data"]["non_json_payloads"]["count"] == 1
    local["odd_data"]["non_json_payloads"] = remote.odd_data["non_json_payloads"].model_dump()
    local["shapes"]["inputs"] = [{**s, "kind": "text"} if s["kind"] == "non_json" else s for s in local["shapes"]["inputs"]]
    assert _numbers(remote) == local
    locations = workspace.batch_get_locations()
    assert locations and set(locations) == {seeded_store.support_id}
    searches = [json.loads(r.body) for r in workspace.calls("POST", "/api/4.0/mlflow/traces/search-long-running")]
    assert all(s["locations"] == [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": seeded_store.support_id}}] for s in searches)
    assert all(r.authorized for r in workspace.requests if r.path != "/.well-known/databricks-config")


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

    experiment = types.SimpleNamespace(trace_location=TraceLocation.from_experiment_id("42"))
    uc = types.SimpleNamespace(trace_location=TraceLocation.from_databricks_uc_schema("main", "agent_traces"))
    assert location_of(experiment, databricks=True) == "42" and location_of(experiment, databricks=False) is None
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
    with FakeDatabricks() as fake:
        fake.add_traces(location, stored)
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        source = TraceSource("databricks", TraceQuery(location), force_path="api")
        records = list(source.records())
        assert len(records) == 25 and all(r.trace_id.startswith(f"trace:/{location}/") for r in records)
        assert [len(r.spans) for r in records] == [len(t.data.spans) for t in sorted(stored, key=lambda t: (-t.info.request_time, t.info.trace_id))]
        assert set(fake.batch_get_locations()) == {location}

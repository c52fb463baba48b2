"""End to end on MLflow's Databricks tracking store, against the fake workspace: with
`MLFLOW_TRACKING_URI=databricks` and `DATABRICKS_HOST=http://127.0.0.1:<port>`, an offline build
(`-a --offline`: profile, dataset, scorer checks, render) and its validation child (`run_eval.py`
running `mlflow.genai.evaluate`, assessments, the evaluation run, its artifacts through the Files
API), the child authenticated with a credential derived from the parent's SDK config, which never
reaches the session's files or the console.

Both ways a workspace keeps an experiment's spans: in the artifact repository (the trace data file
MLflow's client uploads, read through presigned URLs) and in the tracking store (tag
mlflow.trace.spansLocation = TRACKING_STORE, read by the v4 batch get at the experiment; MLflow 3.17
itself asks for `/traces/None/batchGet`, also inside mlflow.genai.evaluate's re-read of the traces it
scored, which the workspace refuses: run_eval.py routes those to the experiment).
Every request MLflow made must have an endpoint in the fake (`unserved()` is empty), so a new MLflow
call shows up here as a failure rather than passing unnoticed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow import MlflowClient
from rich.console import Console

from mlflow_eval_agent.plan import PLAN_FILE, TaskPlan, TaskStatus
from mlflow_eval_agent.runner import run_autonomous
from mlflow_eval_agent.settings import resolve_settings
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.suite.spec import SPEC_FILE, SuiteSpec
from mlflow_eval_agent.suite.validate import load_report
from tests.fakes.databricks_api import FakeDatabricks, credential_id
from tests.suite_helpers import local_store, seed_experiment

DERIVED = "dbx-oauth-derived-for-the-child-7f3a9c"  # what the parent's SDK config would mint
NAME = "/Users/someone@example.com/support-agent"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dbx-e2e-seed")
    with local_store(folder) as uri:
        experiment_id, truth = seed_experiment("support", n=24)
        traces = list(MlflowClient(uri).search_traces(locations=[experiment_id], max_results=1000, include_spans=True))
    return SimpleNamespace(experiment_id=experiment_id, traces=traces, truth=truth)


@pytest.fixture(scope="module", params=["artifacts", "tracking_store"])
def built(request, seeded, tmp_path_factory):
    """The offline build against the fake workspace; the parent authenticates through a config file
    (no token in its environment, as on serverless compute), the child gets `DERIVED`."""
    folder = tmp_path_factory.mktemp("dbx-e2e")
    patch = pytest.MonkeyPatch()
    fake = FakeDatabricks().start()
    try:
        fake.extra_tokens.add(DERIVED)
        fake.add_experiment(seeded.experiment_id, NAME)
        fake.add_traces(seeded.experiment_id, seeded.traces, spans=request.param)
        config = folder / "databrickscfg"
        config.write_text(f"[DEFAULT]\nhost = {fake.url}\ntoken = {fake.token}\n", encoding="utf-8")
        for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "MLFLOW_GENAI_JUDGE_DEFAULT_MODEL"):
            patch.delenv(name, raising=False)
        patch.setenv("DATABRICKS_CONFIG_FILE", str(config))
        patch.setenv("MLFLOW_TRACKING_URI", "databricks")
        mlflow.set_tracking_uri("databricks")
        # The runtime's own authentication, which a child process does not inherit: a fresh SDK
        # config yields a short-lived bearer token (databricks.child_credential).
        minted = SimpleNamespace(host=fake.url, authenticate=lambda: {"Authorization": f"Bearer {DERIVED}"})
        patch.setattr("mlflow_eval_agent.databricks.sdk_config", lambda: minted)
        console = io.StringIO()
        settings = resolve_settings({"experiment_id": seeded.experiment_id, "tracking_uri": "databricks", "volume_path": str(folder / "sessions"),
                                     "offline": True, "session_id": "dbx-e2e"}, env={})
        code = run_autonomous(settings, Console(file=console, width=200))
        store = open_session_store(settings.volume_path, "dbx-e2e")
        yield SimpleNamespace(code=code, console=console.getvalue(), fake=fake, store=store, folder=folder, spans=request.param,
                              plan=store.read_model(PLAN_FILE, TaskPlan), experiment_id=seeded.experiment_id)
    finally:
        mlflow.set_tracking_uri(None)
        patch.undo()
        fake.stop()


def test_the_offline_build_and_its_validation_run_on_the_databricks_store(built):
    assert built.code == 0, built.console[-3000:]
    assert all(t.status == TaskStatus.COMPLETED for t in built.plan.tasks), [(t.id, t.failure_reason) for t in built.plan.tasks]
    report = load_report(built.store)
    assert report.latest.ok and report.latest.gate == "PASS" and report.latest.missing_evidence() == {}
    spec = built.store.read_model(SPEC_FILE, SuiteSpec)
    assert spec.dataset is not None and len(spec.dataset.records) >= 10
    assert {s.check for s in spec.scorers if s.kind == "check"} >= {"no_hidden_failures", "output_non_empty"}
    assert "file only" in spec.dataset.registration  # a UC table on Databricks: not created for the user
    # Nothing MLflow asked for went unanswered, and nothing but metadata and presigned URLs went unauthenticated.
    fake = built.fake
    assert fake.unserved() == []
    assert all(r.authorized for r in fake.requests if r.path not in ("/.well-known/databricks-config", "/health") and not r.path.startswith("/presigned/"))
    assert "None" not in fake.batch_get_locations()


def test_the_evaluation_run_and_its_verdicts_are_in_the_workspace(built):
    fake, report = built.fake, load_report(built.store)
    run = fake.runs[report.latest.run_id]
    assert run["info"]["experiment_id"] == built.experiment_id and run["info"]["status"] == "FINISHED"
    assert run["tags"]["eval_agent.gate"] == "PASS" and run["tags"]["eval_agent.session_id"] == "dbx-e2e"
    assert run["tags"].get("eval_agent.baseline") == "true"
    assert any(k.startswith("threshold.") for k in run["params"])
    artifacts = {p.rsplit("/artifacts/", 1)[-1] for p in fake.files if f"/Runs/{run['info']['run_id']}/artifacts/" in p}
    assert {"run_results.json", "suite/run_eval.py", "suite/scorers.py"} <= artifacts
    results = json.loads(fake.files[next(p for p in fake.files if p.endswith(f"{run['info']['run_id']}/artifacts/run_results.json"))])
    assert results["gate"] == "PASS" and results["run_id"] == run["info"]["run_id"]
    spec = built.store.read_model(SPEC_FILE, SuiteSpec)
    code_checks = [s.name for s in spec.scorers if not s.needs_judge]
    for record in spec.dataset.records:
        stored = fake.traces[record.trace_id]
        assert run["info"]["run_id"] in stored.runs  # linked to the evaluation run
        names = {a.name for a in fake.assessments(record.trace_id)}  # the seeded traces had none
        assert set(code_checks) <= names, (record.trace_id, names)


def test_the_child_authenticated_with_the_derived_credential(built):
    fake = built.fake
    child = [r for r in fake.requests if r.credential == credential_id(DERIVED)]
    paths = {r.path for r in child}
    assert {"/api/2.0/mlflow/runs/create", "/api/4.0/mlflow/traces/search-long-running", "/api/2.0/mlflow/traces/link-to-run"} <= paths
    assert any(p.endswith("/assessments") for p in paths)
    if built.spans == "artifacts":
        assert any(p.endswith("/credentials-for-data-download") for p in paths)
    else:  # the child's own reads (the dataset's traces, evaluate's re-read) at the experiment
        assert f"/api/4.0/mlflow/traces/{built.experiment_id}/batchGet" in paths
    assert any(p.startswith("/api/2.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/") for p in paths)
    # The parent itself used its own (config-file) token.
    assert any(r.credential == credential_id(fake.token) for r in fake.requests)


def test_no_token_reaches_the_session_or_the_console(built):
    for secret in (DERIVED, built.fake.token):
        assert secret not in built.console
        for path in (built.folder / "sessions").rglob("*"):  # state, logs, the suite, report.html
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    for path, data in built.fake.files.items():  # what the child logged as artifacts
        assert DERIVED.encode() not in data and built.fake.token.encode() not in data, path

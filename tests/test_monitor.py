"""`monitor` (issue 15): the suite's gate and monitor judges registered on a real local `mlflow server`,
listed and stopped; explore judges and code checks are not registered, and why is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.profile_fixtures import start_mlflow_server, stop_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    import mlflow

    folder = tmp_path_factory.mktemp("monitor-server")
    handle = start_mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", folder / "server.log")
    before = mlflow.get_tracking_uri()
    yield handle
    mlflow.set_tracking_uri(before)  # the tests point this process at the server; leave it as found
    stop_server(handle)


def _gateway_endpoint(url: str) -> None:
    """An AI Gateway endpoint named `judge` (what a user creates in the MLflow UI); no call is ever made to it."""
    code = (
        "from mlflow.tracking import MlflowClient\n"
        "from mlflow.entities.gateway_endpoint import GatewayEndpointModelConfig, GatewayModelLinkageType\n"
        "st = MlflowClient()._tracking_client.store\n"
        "sec = st.create_gateway_secret(secret_name='k', secret_value={'api_key': 'not-a-real-key'}, provider='openai')\n"
        "md = st.create_gateway_model_definition(name='m', secret_id=sec.secret_id, provider='openai', model_name='gpt-4o-mini')\n"
        "st.create_gateway_endpoint(name='judge', model_configs=[GatewayEndpointModelConfig(model_definition_id=md.model_definition_id, "
        "linkage_type=GatewayModelLinkageType.PRIMARY, weight=1.0)])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MLFLOW_TRACKING_URI": url}, timeout=120)


def _session(root: Path, url: str) -> str:
    """A session with a suite of two judges and a check, and a validation that gave them tiers."""
    import mlflow

    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.store.session_meta import remember_session
    from mlflow_eval_agent.suite.agreement import Agreement
    from mlflow_eval_agent.suite.spec import SPEC_FILE, SuiteSpec
    from mlflow_eval_agent.suite.validate import VALIDATION_FILE, ScorerValidation, ValidationReport, ValidationRun

    mlflow.set_tracking_uri(url)
    experiment_id = mlflow.create_experiment(f"monitored-{root.name}")
    store = open_session_store(str(root), "mon")
    why = "watches a failure seen in the profile"
    spec = SuiteSpec.model_validate({"experiment_id": experiment_id, "scorers": [
        {"kind": "builtin", "name": "relevance", "builtin": "RelevanceToQuery", "why": why},
        {"kind": "guidelines", "name": "polite", "guidelines": ["The answer is polite to the customer."], "why": why},
        {"kind": "make_judge", "name": "on_topic", "instructions": "Does {{ outputs }} stay on the topic of {{ inputs }}?", "why": why},
        {"kind": "check", "name": "no_errors", "check": "no_unrecovered_errors", "why": why},
    ]})
    store.write_model(SPEC_FILE, spec)
    remember_session(store, url, experiment_id)
    scorers = {
        name: ScorerValidation(name=name, kind=kind, needs_judge=kind != "check", status="PASS", agreement=Agreement(tier=tier, reason="test"))
        for name, kind, tier in (("relevance", "builtin", "gate"), ("polite", "guidelines", "monitor"), ("on_topic", "make_judge", "explore"), ("no_errors", "check", "gate"))
    }
    run = ValidationRun(validated_at="2026-12-02T00:00:00+00:00", ok=True, exit_code=0, seconds=1.0, scorers=scorers)
    store.write_model(VALIDATION_FILE, ValidationReport(latest=run))
    return experiment_id


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, "-m", "src.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_monitor_registers_trusted_judges_lists_and_stops_them(server, tmp_path: Path):
    experiment_id = _session(tmp_path, server.url)
    where = ["--session-id", "mon", "--volume-path", str(tmp_path)]

    refused = _cli("monitor", "start", *where, "--judge-model", "openai:/gpt-4o-mini", cwd=tmp_path)
    assert refused.returncode == 2 and "gateway:/<endpoint>" in refused.stderr + refused.stdout

    _gateway_endpoint(server.url)
    started = _cli("monitor", "start", *where, "--judge-model", "gateway:/judge", "--rate", "monitor=0.1", cwd=tmp_path)
    out = started.stdout
    assert started.returncode == 0, started.stdout + started.stderr
    assert "relevance: sampling 100% of new traces (gate)" in out and "polite: sampling 10% of new traces (monitor)" in out
    assert "on_topic: not registered (explore" in out and "no_errors: not registered (a code check" in out

    listed = _cli("monitor", "list", *where, cwd=tmp_path)
    assert listed.returncode == 0
    assert "polite: active, sampling 10%" in listed.stdout and "relevance: active, sampling 100%" in listed.stdout
    assert "on_topic" not in listed.stdout and "no_errors" not in listed.stdout

    stopped = _cli("monitor", "stop", *where, "--scorer", "polite", cwd=tmp_path)
    assert stopped.returncode == 0 and "polite: stopped" in stopped.stdout
    after = _cli("monitor", "list", *where, cwd=tmp_path).stdout
    assert "polite: stopped" in after and "relevance: active" in after

    # the registered judges are MLflow's own objects with the suite's names
    from mlflow.genai.scorers import list_scorers
    import mlflow

    mlflow.set_tracking_uri(server.url)
    assert sorted(s.name for s in list_scorers(experiment_id=experiment_id)) == ["polite", "relevance"]


def test_monitor_needs_a_validation_first(server, tmp_path: Path):
    _session(tmp_path, server.url)
    (tmp_path / "sessions" / "mon" / "state" / "validation.json").unlink()
    result = _cli("monitor", "start", "--session-id", "mon", "--volume-path", str(tmp_path), "--judge-model", "gateway:/judge", cwd=tmp_path)
    assert result.returncode == 2 and "run `validate` first" in result.stdout + result.stderr

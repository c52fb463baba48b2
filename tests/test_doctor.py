"""`doctor` against the fake workspace: one verdict per point, the fix for each failure, no secret printed."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlflow_eval_agent.cli import main
from tests.fakes.databricks_api import FakeDatabricks
from tests.fakes.profile_fixtures import SUPPORT, SeededStore

pytestmark = pytest.mark.slow
VOLUME = "/Volumes/main/evals/agent"
TOKEN = "dapi-model-token-for-the-doctor-0042"
ENDPOINT = "databricks-claude-sonnet-4-5"


@pytest.fixture
def workspace(seeded_store: SeededStore, monkeypatch, tmp_path):
    traces = list(MlflowClient(seeded_store.uri).search_traces(locations=[seeded_store.support_id], max_results=30, include_spans=True))
    with FakeDatabricks() as fake:
        fake.add_experiment(seeded_store.support_id, SUPPORT)
        fake.add_traces(seeded_store.support_id, traces)
        fake.add_volume(VOLUME)
        fake.put_secret("mlflow-eval-agent", "fm-api-token", TOKEN)
        fake.extra_tokens.add(TOKEN)  # the model token is accepted by the serving endpoint too
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.1")
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        yield fake


def doctor(*flags: str) -> list[str]:
    return ["--volume-path", VOLUME, "--model", ENDPOINT, *flags, "doctor", "-e", SUPPORT]


def test_every_point_passes_on_a_ready_workspace(workspace, seeded_store, capsys):
    code = main(doctor("--secret-scope", "mlflow-eval-agent", "--secret-key", "fm-api-token"))
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("secret", "traces", "validation child", "model", "volume"):
        assert any(line.startswith(f"ok   {name}:") for line in out.splitlines()), (name, out)
    assert "5 of 5 points pass." in out and TOKEN not in out
    (asked,) = workspace.calls("POST", "/serving-endpoints/anthropic/v1/messages")
    assert asked.authorized and asked.headers["x-databricks-use-coding-agent-mode"] == "true"
    assert set(workspace.batch_get_locations()) == {seeded_store.support_id}
    assert any(p.startswith(f"{VOLUME}/sessions/doctor-check/") for p in workspace.files)


def test_failures_are_reported_with_their_fix_and_the_other_points_still_run(workspace, capsys):
    code = main(doctor("--secret-scope", "mlflow-eval-agent", "--secret-key", "no-such-key"))
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith("FAIL secret: Cannot read the model token from secret scope 'mlflow-eval-agent', key 'no-such-key'") for line in lines), out
    assert any(line.startswith("FAIL model: no model credential") for line in lines), out
    assert any(line.startswith("ok   traces:") for line in lines) and any(line.startswith("ok   volume:") for line in lines)
    assert "fix: Create the secret or grant READ on its scope" in out
    assert "3 of 5 points pass; fix: secret, model" in out


def test_an_endpoint_the_workspace_does_not_serve_is_named(workspace, capsys):
    code = main(["--volume-path", VOLUME, "--model", "databricks-claude-nonexistent", "--secret-scope", "mlflow-eval-agent",
                 "--secret-key", "fm-api-token", "doctor", "-e", SUPPORT])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL model:" in out and "404" in out and "check --model" in out and TOKEN not in out

"""Shared test setup: quiet, offline MLflow on throwaway sqlite stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports mlflow: no telemetry, synchronous trace writes (async drops traces),
# and no network lookups by litellm.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def _artifacts_beside_the_store() -> None:
    """Experiments the tests create keep their artifacts beside their sqlite store. MLflow's default is
    ./mlruns in the current folder (the checkout), and every suite run logs artifacts now."""
    from mlflow import MlflowClient

    original = MlflowClient.create_experiment
    if getattr(original, "_beside_the_store", False):
        return

    def create_experiment(self, name, artifact_location=None, tags=None):
        uri = str(self._tracking_client.tracking_uri)
        if artifact_location is None and uri.startswith("sqlite:////"):
            artifact_location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        return original(self, name, artifact_location=artifact_location, tags=tags)

    create_experiment._beside_the_store = True
    MlflowClient.create_experiment = create_experiment


_artifacts_beside_the_store()


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh local sqlite tracking store, made current for this test."""
    import mlflow

    uri = sqlite_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(autouse=True)
def _no_user_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real model or Databricks credentials."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "DATABRICKS_", "AWS_", "EVAL_AGENT_")) or name in ("MODEL",):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(os.environ.get("PYTEST_CWD_OVERRIDE", os.getcwd())))


from tests.fakes.anthropic_fixture import fake_anthropic, fake_claude_env  # noqa: E402,F401  (fixtures)

pytest_plugins = ["tests.fakes.profile_fixtures"]

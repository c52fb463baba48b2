"""databricks.yml: the official schema and Jobs API rules, typed job models, and job parameters the CLI accepts."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from mlflow_eval_agent.cli import main
from tests.bundle_helpers import (
    BUNDLE,
    REPO_ROOT,
    REQUIRED_VALUES,
    RUN_ID,
    load_bundle,
    record_autonomous_runs,
    resolved_job,
)
from tests.fakes.databricks_api import FakeDatabricks

CHECKER = REPO_ROOT.parent / "shared" / "tools" / "check_bundle.py"
TOKEN = "dapi-from-the-secret-scope-42"


def test_check_bundle_reports_no_problems():
    if not CHECKER.is_file():
        pytest.skip(f"{CHECKER} is not here (CI provides ../shared): the offline bundle schema check did not run")
    result = subprocess.run([sys.executable, str(CHECKER), str(BUNDLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"0 problems in {BUNDLE}")


@pytest.mark.parametrize("name", ["eval_agent_job", "eval_agent_notebook"])
def test_jobs_load_as_typed_models(name):
    from databricks.bundles.jobs import Job

    job = Job.from_dict(load_bundle()["resources"]["jobs"][name])
    (task,) = job.tasks
    assert task.max_retries == 1 and job.timeout_seconds and task.timeout_seconds
    if name == "eval_agent_job":
        assert task.python_wheel_task.package_name == "mlflow_eval_agent"
        (env,) = job.environments
        assert env.environment_key == task.environment_key
        assert env.spec.environment_version == "4" and env.spec.dependencies == ["./dist/*.whl"]
        assert "--session-id={{job.run_id}}" in task.python_wheel_task.parameters
    else:
        assert task.notebook_task.notebook_path == "./notebooks/run_eval_agent.py"
        assert not task.environment_key and not task.libraries  # serverless notebook tasks take neither
        assert task.notebook_task.base_parameters["session_id"] == "{{job.run_id}}"


def test_wheel_entry_point_is_the_console_script():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    task = load_bundle()["resources"]["jobs"]["eval_agent_job"]["tasks"][0]["python_wheel_task"]
    assert project["scripts"][task["entry_point"]] == "mlflow_eval_agent.cli:run"
    assert re.sub(r"[-_.]+", "_", project["name"]) == task["package_name"]


def test_variables_are_described_and_nothing_personal_is_committed():
    doc = load_bundle()
    for name, spec in doc["variables"].items():
        assert spec.get("description"), f"variable {name} has no description"
    assert set(REQUIRED_VALUES) == {n for n, s in doc["variables"].items() if "default" not in s}
    defaults = [str(s["default"]) for s in doc["variables"].values() if "default" in s]
    for value in defaults:
        assert not re.search(r"https?://|/Volumes/|@|dapi|\.cloud\.databricks|azuredatabricks", value), value
    text = BUNDLE.read_text()
    assert "host:" not in text and not re.search(r"dapi[0-9a-f]{8}", text)
    assert set(doc["targets"]) == {"dev", "prod"}
    assert doc["targets"]["dev"] == {"mode": "development", "default": True}
    assert doc["targets"]["prod"]["mode"] == "production"
    assert {"run_as", "permissions"} <= set(doc["targets"]["prod"])
    artifact = doc["artifacts"]["mlflow_eval_agent_wheel"]
    assert artifact["type"] == "whl" and "uv build --wheel --clear" in artifact["build"]


@pytest.fixture
def databricks_runtime(monkeypatch, tmp_path):
    """A Databricks runtime whose workspace is the local fake, with the token in the default secret."""
    doc = load_bundle()
    scope, key = doc["variables"]["secret_scope"]["default"], doc["variables"]["secret_key"]["default"]
    with FakeDatabricks() as fake:
        fake.put_secret(scope, key, TOKEN)
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.1")
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        yield fake


def test_wheel_job_parameters_parse_into_the_intended_settings(databricks_runtime, monkeypatch, capsys):
    runs = record_autonomous_runs(monkeypatch)
    argv = resolved_job("eval_agent_job")["tasks"][0]["python_wheel_task"]["parameters"]
    assert main(argv) == 0, capsys.readouterr().err
    (settings,) = runs
    doc = load_bundle()
    defaults = {n: s.get("default") for n, s in doc["variables"].items()}
    assert settings.experiment_id == REQUIRED_VALUES["experiment_id"]
    assert settings.volume_path == REQUIRED_VALUES["volume_path"]
    assert settings.session_id == RUN_ID
    assert settings.max_iterations == int(defaults["max_iterations"])
    assert settings.max_budget_usd == float(defaults["max_budget_usd"])
    assert settings.model == defaults["model"]
    assert settings.agent_experiment_id is None  # the empty default turns self-tracing off
    assert settings.tracking_uri == "databricks"
    assert settings.access.auth_token.get_secret_value() == TOKEN
    assert settings.access.base_url == f"{databricks_runtime.url}/serving-endpoints/anthropic"
    assert TOKEN not in " ".join(argv) + capsys.readouterr().out


def test_a_misspelt_parameter_would_be_a_usage_error(databricks_runtime, monkeypatch, capsys):
    """The parse check above can fail: an unknown flag exits 2 before anything runs."""
    runs = record_autonomous_runs(monkeypatch)
    argv = resolved_job("eval_agent_job")["tasks"][0]["python_wheel_task"]["parameters"] + ["--max-iteration=3"]
    assert main(argv) == 2 and not runs

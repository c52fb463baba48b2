"""`--trace-location` (traces stored in Unity Catalog) on the main run, resolved once in settings.py:
with no experiment the location takes the experiment's place (as `analyze` reads it); with one, the
experiment is kept (the one bound to the location: read through the binding, the evaluation run logged
to it) and the location names its tables; `-a` without an experiment to log to is refused in one
sentence; a malformed location is a usage error. `validate` takes the SQL warehouse the suite's child
reads UC traces through (the suite reads its traces by their own ids, which name their location)."""

from __future__ import annotations

import os

import pytest

from mlflow_eval_agent.cli import main
from mlflow_eval_agent.settings import resolve_settings


@pytest.fixture
def seen(monkeypatch):
    """The settings -a and validate would run with (their work replaced by a recorder)."""
    got: dict = {}

    def record(settings, *args, **kwargs):
        got["settings"] = settings
        return 0

    monkeypatch.setattr("mlflow_eval_agent.runner.run_autonomous", record)
    monkeypatch.setattr("mlflow_eval_agent.cli.validate._run", record)
    for name in ("MLFLOW_EXPERIMENT_ID", "EVAL_AGENT_TRACE_LOCATION", "MLFLOW_TRACING_SQL_WAREHOUSE_ID"):
        monkeypatch.delenv(name, raising=False)
    yield got
    os.environ.pop("MLFLOW_TRACING_SQL_WAREHOUSE_ID", None)  # settings_from hands it to MLflow through the environment


def test_the_main_run_keeps_the_bound_experiment_and_the_location(seen, tmp_path):
    code = main(["-a", "--offline", "--tracking-uri", "databricks", "-e", "42", "--trace-location", "main.agent_traces.prod", "--volume-path", str(tmp_path)])
    assert code == 0
    assert seen["settings"].trace_location == "main.agent_traces.prod" and seen["settings"].experiment_id == "42"


def test_the_main_run_without_an_experiment_is_refused_in_one_sentence(seen, tmp_path, capsys):
    code = main(["-a", "--offline", "--tracking-uri", "databricks", "--trace-location", "main.agent_traces", "--volume-path", str(tmp_path)])
    assert code == 2 and "settings" not in seen
    err = capsys.readouterr().err
    assert "--trace-location needs -e/--experiment-id" in err and "Traceback" not in err


def test_a_malformed_location_is_a_usage_error(seen, tmp_path, capsys):
    assert main(["-a", "--offline", "-e", "42", "--trace-location", "not a location", "--volume-path", str(tmp_path)]) == 2
    assert "settings" not in seen and "<catalog>.<schema>" in capsys.readouterr().err


def test_validate_hands_the_warehouse_to_the_suite(seen, tmp_path):
    assert main(["validate", "--session-id", "s1", "--volume-path", str(tmp_path), "--sql-warehouse-id", "wh-7"]) == 0
    assert seen["settings"].sql_warehouse_id == "wh-7" and os.environ.get("MLFLOW_TRACING_SQL_WAREHOUSE_ID") == "wh-7"


def test_resolved_once_in_settings_the_environment_included():
    location = {"EVAL_AGENT_TRACE_LOCATION": "main.agent_traces"}
    assert resolve_settings({}, env=location).experiment_id == "main.agent_traces"  # read where it is (analyze)
    assert resolve_settings({}, env={**location, "MLFLOW_EXPERIMENT_ID": "7"}).experiment_id == "7"
    assert resolve_settings({"experiment_id": "8"}, env=location).experiment_id == "8"
    assert resolve_settings({"experiment_id": "8"}, env={}).trace_location is None

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
    required_variables,
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
    assert set(REQUIRED_VALUES) == required_variables(doc, "dev")
    assert required_variables(doc, "prod") == set(REQUIRED_VALUES) | {"prod_service_principal", "prod_admin_group"}
    defaults = [str(s["default"]) for s in doc["variables"].values() if "default" in s]
    for value in defaults:
        assert not re.search(r"https?://|/Volumes/|@|dapi|\.cloud\.databricks|azuredatabricks", value), value
    text = BUNDLE.read_text()
    assert "host:" not in text and not re.search(r"dapi[0-9a-f]{8}", text)
    assert set(doc["targets"]) == {"dev", "prod"}
    dev = doc["targets"]["dev"]
    assert dev["mode"] == "development" and dev["default"] is True
    assert dev["variables"] == {"prod_service_principal": "", "prod_admin_group": ""}
    prod = doc["targets"]["prod"]
    assert prod["mode"] == "production"
    # No placeholders to edit: who runs and who manages the prod jobs are variables.
    assert prod["run_as"] == {"service_principal_name": "${var.prod_service_principal}"}
    assert prod["permissions"] == [{"level": "CAN_MANAGE", "group_name": "${var.prod_admin_group}"}]
    assert "REPLACE" not in text
    artifact = doc["artifacts"]["mlflow_eval_agent_wheel"]
    assert artifact["type"] == "whl" and "uv build --wheel --out-dir dist" in artifact["build"]
    assert "--clear" not in artifact["build"]  # needs a recent uv; the build empties dist/ itself (test_wheel.py)


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
    assert settings.limit_stop_ok  # a stop at a limit exits 0: the task's max_retries never restarts it
    assert settings.tracking_uri == "databricks"
    assert settings.access.auth_token.get_secret_value() == TOKEN
    assert settings.access.base_url == f"{databricks_runtime.url}/serving-endpoints/anthropic"
    assert TOKEN not in " ".join(argv) + capsys.readouterr().out


def test_a_misspelt_parameter_would_be_a_usage_error(databricks_runtime, monkeypatch, capsys):
    """The parse check above can fail: an unknown flag exits 2 before anything runs."""
    runs = record_autonomous_runs(monkeypatch)
    argv = resolved_job("eval_agent_job")["tasks"][0]["python_wheel_task"]["parameters"] + ["--max-iteration=3"]
    assert main(argv) == 2 and not runs


# --- documented commands carry their variables --------------------------------------------------
BUNDLE_COMMAND = re.compile(r"databricks bundle (validate|deploy|run|destroy|summary)\b[^`\n]*")
EXPORTED = re.compile(r"\bBUNDLE_VAR_([A-Za-z0-9_]+)=")
GIVEN = re.compile(r"--var[= ]\"?([A-Za-z0-9_]+)=")
TARGET = re.compile(r"(?:-t|--target)[= ]([A-Za-z0-9_-]+)")


def _contexts(path) -> list[str]:
    """Where a reader copies commands from, each read as a whole: markdown fenced blocks and
    paragraphs (a list without blank lines is one), and the comment header of databricks.yml."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".yml":
        header = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            header.append(line.lstrip("# "))
        return ["\n".join(header)]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```[a-z]*\n.*?```", "\n\n", text, flags=re.S)
    return blocks + [p for p in re.split(r"\n\s*\n", prose) if p.strip()]


def missing_variables(context: str, doc: dict) -> list[str]:
    """Each `databricks bundle ...` command in `context` without every required variable of its
    target, given as --var on the command or exported as BUNDLE_VAR_<name> before it."""
    problems = []
    exported: set[str] = set()
    for line in context.splitlines():
        for match in BUNDLE_COMMAND.finditer(line):
            command = match.group(0)
            named = TARGET.search(command)
            target = named.group(1) if named else "dev"  # the bundle's default target
            missing = required_variables(doc, target) - exported - set(GIVEN.findall(command))
            if missing:
                problems.append(f"{command.strip()!r} lacks {sorted(missing)}")
        exported |= set(EXPORTED.findall(line))
    return problems


def test_every_documented_bundle_command_carries_its_variables():
    doc = load_bundle()
    problems = []
    for path in (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "databricks.md", BUNDLE):
        for context in _contexts(path):
            problems += [f"{path.name}: {p}" for p in missing_variables(context, doc)]
    assert not problems, "\n".join(problems)


def test_the_variable_check_can_fail():
    doc = load_bundle()
    assert missing_variables("databricks bundle run eval_agent_job -t dev", doc) == [
        "'databricks bundle run eval_agent_job -t dev' lacks ['experiment_id', 'volume_path']"]
    assert missing_variables("export BUNDLE_VAR_experiment_id=1\ndatabricks bundle deploy --var volume_path=/V", doc) == []
    prod = "export BUNDLE_VAR_experiment_id=1 BUNDLE_VAR_volume_path=/V\ndatabricks bundle deploy -t prod"
    assert missing_variables(prod, doc) == ["'databricks bundle deploy -t prod' lacks ['prod_admin_group', 'prod_service_principal']"]
    # An export after the command does not count.
    assert missing_variables("databricks bundle run x\nexport BUNDLE_VAR_experiment_id=1 BUNDLE_VAR_volume_path=/V", doc)


def test_with_model_auth_job_the_wheel_job_reads_no_secret(databricks_runtime, monkeypatch, capsys):
    """`--var model_auth=job`: the job's own identity, a token Claude Code refreshes (apiKeyHelper)."""
    runs = record_autonomous_runs(monkeypatch)
    argv = resolved_job("eval_agent_job")["tasks"][0]["python_wheel_task"]["parameters"]
    assert "--model-auth=secret" in argv
    argv = ["--model-auth=job" if a == "--model-auth=secret" else a for a in argv]
    assert main(argv) == 0, capsys.readouterr().err
    (settings,) = runs
    assert settings.access.kind == "token-command" and settings.access.auth_token is None
    assert settings.access.gateway_env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == settings.model
    assert not databricks_runtime.calls("GET", "/api/2.0/secrets/get")



def test_the_doctor_job_runs_the_doctor_with_the_jobs_settings(databricks_runtime, monkeypatch, capsys):
    from databricks.bundles.jobs import Job

    from mlflow_eval_agent import doctor

    job = load_bundle()["resources"]["jobs"]["eval_agent_doctor"]
    (task,) = Job.from_dict(job).tasks
    assert task.max_retries == 0 and task.python_wheel_task.entry_point == "mlflow-eval-agent"
    seen = []
    monkeypatch.setattr(doctor, "run_checks", lambda settings, problem=None: seen.append((settings, problem)) or [])
    argv = resolved_job("eval_agent_doctor")["tasks"][0]["python_wheel_task"]["parameters"]
    assert main(argv) == 0, capsys.readouterr().err
    ((settings, problem),) = seen
    assert problem is None and settings.experiment_id == REQUIRED_VALUES["experiment_id"]
    assert settings.volume_path == REQUIRED_VALUES["volume_path"] and settings.tracking_uri == "databricks"
    assert settings.access.auth_token.get_secret_value() == TOKEN


# --- monitoring jobs (issue 15) -----------------------------------------------------------------
def test_monitoring_jobs_exist_scheduled_eval_is_paused_and_parameters_reach_the_commands(monkeypatch, capsys):
    import types

    from databricks.bundles.jobs import Job

    from mlflow_eval_agent.cli import monitor as monitor_cli
    from mlflow_eval_agent.suite import scheduled_run
    from mlflow_eval_agent.traces import source

    doc = load_bundle()
    jobs = doc["resources"]["jobs"]
    for name in ("eval_agent_monitor", "eval_agent_scheduled_eval"):
        (task,) = Job.from_dict(jobs[name]).tasks
        assert task.max_retries == 0 and task.python_wheel_task.entry_point == "mlflow-eval-agent"
        assert Job.from_dict(jobs[name]).max_concurrent_runs == 1
    schedule = jobs["eval_agent_scheduled_eval"]["schedule"]
    assert schedule["pause_status"] == "${var.scheduled_eval_pause_status}"
    assert doc["variables"]["scheduled_eval_pause_status"]["default"] == "PAUSED"  # a deploy never starts spending
    assert resolved_job("eval_agent_scheduled_eval")["schedule"]["quartz_cron_expression"] == doc["variables"]["scheduled_eval_cron"]["default"]

    opened, runs = [], []
    spec = types.SimpleNamespace(experiment_id="42", scorers=[])
    store = types.SimpleNamespace(exists=lambda path: True, redactor=types.SimpleNamespace(text=lambda t: t))

    def fake_open(ctx, session_id, volume_path, tracking_uri, judge_model, experiment_id=None):
        opened.append({"session_id": session_id, "volume_path": volume_path, "judge_model": judge_model, "experiment_id": experiment_id})
        settings = types.SimpleNamespace(session_id=session_id, judge=types.SimpleNamespace(model=None, skip_reason="none", source="", child_env=dict))
        if len(opened) == 1:  # monitor start: stop once the parameters are parsed
            raise monitor_cli.UserError("parsed", 2)
        return settings, store, spec, "databricks"

    def fake_run(store, uri, experiment_id, **kwargs):
        runs.append({"experiment_id": experiment_id, **kwargs})
        return scheduled_run.MonitorRun(started_at="now", experiment_id=experiment_id, window_start_ms=0, window_end_ms=1, traces=0,
                                        ok=True, advanced=True, exit_code=0), ""

    monkeypatch.setattr(monitor_cli, "_open", fake_open)
    monkeypatch.setattr(scheduled_run, "run_monitoring", fake_run)
    monkeypatch.setattr(source, "resolve_experiment", lambda uri, exp: source.ExperimentRef(exp, exp))
    assert main(resolved_job("eval_agent_monitor")["tasks"][0]["python_wheel_task"]["parameters"]) == 2
    assert main(resolved_job("eval_agent_scheduled_eval")["tasks"][0]["python_wheel_task"]["parameters"]) == 0, capsys.readouterr()
    assert [o["volume_path"] for o in opened] == [REQUIRED_VALUES["volume_path"]] * 2
    assert opened[0]["session_id"] == "" and opened[1]["experiment_id"] == ""  # empty defaults: _open says what to pass
    (run,) = runs
    assert run["experiment_id"] == "42" and run["max_budget_usd"] == float(doc["variables"]["scheduled_eval_max_judge_usd"]["default"])
    assert run["timeout_s"] == 3000


def test_an_empty_suite_session_id_is_a_usage_error_naming_the_variable(capsys):
    assert main(["monitor", "run", "--session-id=", "--volume-path=/tmp/nowhere"]) == 2
    assert "suite_session_id" in capsys.readouterr().err

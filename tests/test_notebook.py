"""notebooks/run_eval_agent.py, run cell by cell with a stand-in dbutils, reaches the shared entry point."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import mlflow_eval_agent.cli
from tests.bundle_helpers import REPO_ROOT, RUN_ID, record_autonomous_runs, resolved_job

NOTEBOOK = REPO_ROOT / "notebooks" / "run_eval_agent.py"
TOKEN = "dapi-notebook-secret-0042"


class Restart(Exception):
    """`dbutils.library.restartPython()`: the Python state is gone, widgets stay."""


class StandInDbutils:
    def __init__(self, job_parameters: dict[str, str] | None = None, secrets: dict[tuple[str, str], str] | None = None,
                 notebook_path: str | None = None):
        self.job_parameters = job_parameters or {}
        self.defaults: dict[str, str] = {}
        self.restarts = 0
        self.secret_reads: list[tuple[str, str]] = []
        outer = self

        class Widgets:
            def text(self, name: str, default: str, label: str | None = None) -> None:
                outer.defaults[name] = default

            def get(self, name: str) -> str:
                if name not in outer.defaults:
                    raise ValueError(f"No input widget named {name} is defined")
                return outer.job_parameters.get(name, outer.defaults[name])

        class Library:
            def restartPython(self) -> None:  # noqa: N802 - dbutils' own name
                outer.restarts += 1
                raise Restart

        class Secrets:
            def get(self, scope: str, key: str) -> str:
                outer.secret_reads.append((scope, key))
                return (secrets or {})[(scope, key)]

        self.widgets, self.library, self.secrets = Widgets(), Library(), Secrets()
        self.notebook = _NotebookContext(notebook_path)


class _NotebookContext:
    """`dbutils.notebook.entry_point.getDbutils().notebook().getContext().notebookPath().get()`."""

    def __init__(self, path: str | None):
        self.path = path
        self.entry_point = self

    def getDbutils(self):  # noqa: N802 - dbutils' own names
        return self

    def notebook(self):
        return self

    def getContext(self):  # noqa: N802
        return self

    def notebookPath(self):  # noqa: N802
        if self.path is None:
            raise RuntimeError("no notebook context (not a notebook)")
        return self

    def get(self) -> str:
        return self.path


def pip_commands(wheel: Path) -> list[str]:
    """What the notebook asks %pip for: dependencies, then this wheel again even at the same version."""
    return [f"%pip install --quiet {wheel}", f"%pip install --quiet --force-reinstall --no-deps {wheel}"]


def cells(source: str) -> list[str]:
    lines = source.splitlines()
    assert lines[0] == "# Databricks notebook source"
    return [c.strip("\n") for c in "\n".join(lines[1:]).split("\n# COMMAND ----------\n")]


def run_notebook(dbutils: StandInDbutils) -> dict[str, Any]:
    """Execute the notebook as Databricks would; return what %pip was asked to install."""
    fresh = lambda: {"dbutils": dbutils, "__name__": "__main__"}  # noqa: E731
    namespace, installed = fresh(), []
    for cell in cells(NOTEBOOK.read_text(encoding="utf-8")):
        magic = [ln[len("# MAGIC "):] if ln.startswith("# MAGIC ") else ln[len("# MAGIC"):] for ln in cell.splitlines() if ln.startswith("# MAGIC")]
        if magic:
            assert len(magic) == len(cell.splitlines()), "a magic cell holds only # MAGIC lines"
            if magic[0].startswith("%pip"):
                command = re.sub(r"\$(\w+)", lambda m: str(namespace[m.group(1)]), magic[0])
                installed.append(command)
            continue
        try:
            exec(compile(cell, str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - the notebook under test
        except Restart:
            namespace = fresh()
    return {"pip": installed, "namespace": namespace}


@pytest.fixture
def dist(tmp_path) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "mlflow_eval_agent-0.1.0-py3-none-any.whl").write_bytes(b"stand-in wheel")
    return folder


@pytest.fixture
def entry_point(monkeypatch) -> list[list[str]]:
    """Record the argv the notebook passes to the shared entry point."""
    calls: list[list[str]] = []
    monkeypatch.setattr(mlflow_eval_agent.cli, "main", lambda argv: calls.append(list(argv)) or 0)
    return calls


def test_job_run_installs_the_wheel_restarts_and_calls_main_with_the_widget_values(dist, entry_point, tmp_path):
    task = resolved_job("eval_agent_notebook", {"file_path": str(tmp_path)})["tasks"][0]
    params = task["notebook_task"]["base_parameters"]
    dbutils = StandInDbutils(params)
    result = run_notebook(dbutils)

    assert result["pip"] == pip_commands(dist / "mlflow_eval_agent-0.1.0-py3-none-any.whl")
    assert dbutils.restarts == 1
    assert set(params) == set(dbutils.defaults)  # every job parameter is a widget, and back
    (argv,) = entry_point
    assert argv[:3] == ["-a", "-e", params["experiment_id"]]
    assert argv[-1] == "--limit-stop-ok"  # a stop at a limit ends the task normally: no retry
    flags = dict(zip(argv[3:-1:2], argv[4:-1:2]))
    assert flags == {
        "--session-id": RUN_ID,
        "--volume-path": params["volume_path"],
        "--max-iterations": params["max_iterations"],
        "--max-budget-usd": params["max_budget_usd"],
        "--model": params["model"],
        "--secret-scope": params["secret_scope"],
        "--secret-key": params["secret_key"],
        "--model-auth": params["model_auth"],
    }  # empty agent_experiment_id and anthropic_base_url are left to the CLI's defaults
    assert "wheel_path" not in result["namespace"]  # the last cell ran after the restart


def test_opened_interactively_without_an_experiment_it_says_what_to_fill_in(dist, entry_point, tmp_path):
    dbutils = StandInDbutils({"wheel_dir": str(dist)})
    with pytest.raises(ValueError, match=r"Fill in the experiment_id and volume_path widgets at the top"):
        run_notebook(dbutils)
    assert not entry_point
    assert dbutils.defaults["model"] and dbutils.defaults["max_iterations"] == "20"  # sane defaults
    assert dbutils.defaults["experiment_id"] == "" and "dapi" not in " ".join(dbutils.defaults.values())


def test_a_missing_wheel_is_a_clear_error(tmp_path, entry_point):
    dbutils = StandInDbutils({"wheel_dir": str(tmp_path / "nowhere"), "experiment_id": "1"})
    with pytest.raises(FileNotFoundError, match="Deploy the bundle again"):
        run_notebook(dbutils)
    assert not entry_point


def test_the_real_entry_point_reads_the_token_through_the_notebooks_dbutils(dist, monkeypatch, tmp_path, capsys):
    """Unpatched main: settings come out with the secret read via the notebook's own dbutils."""
    runs = record_autonomous_runs(monkeypatch)
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.1")
    monkeypatch.setenv("DATABRICKS_HOST", "adb-7.azuredatabricks.net")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    params = {"wheel_dir": str(dist), "experiment_id": "55", "volume_path": "/Volumes/main/evals/agent",
              "secret_scope": "scope-a", "secret_key": "key-b"}
    dbutils = StandInDbutils(params, secrets={("scope-a", "key-b"): TOKEN})
    shell = types.SimpleNamespace(user_ns={"dbutils": dbutils})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))

    run_notebook(dbutils)
    (settings,) = runs
    assert dbutils.secret_reads == [("scope-a", "key-b")]
    assert settings.experiment_id == "55" and settings.tracking_uri == "databricks"
    assert settings.access.auth_token.get_secret_value() == TOKEN
    assert settings.access.base_url == "https://adb-7.azuredatabricks.net/serving-endpoints/anthropic"
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_a_failed_run_fails_the_notebook(dist, monkeypatch, tmp_path):
    monkeypatch.setattr(mlflow_eval_agent.cli, "main", lambda argv: 1)
    dbutils = StandInDbutils({"wheel_dir": str(dist), "experiment_id": "1", "volume_path": "/Volumes/a/b/c"})
    with pytest.raises(RuntimeError, match="exit code 1"):
        run_notebook(dbutils)


def test_opened_from_the_deployed_bundle_it_finds_the_synced_wheel(dist, entry_point, tmp_path, monkeypatch):
    """Opened by hand, the wheel is ../dist from the notebook's own path, whatever the working directory."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # serverless does not promise the notebook's folder
    dbutils = StandInDbutils({"experiment_id": "9", "volume_path": "/Volumes/a/b/c"},
                             notebook_path=str(tmp_path / "notebooks" / "run_eval_agent"))
    result = run_notebook(dbutils)
    assert result["pip"] == pip_commands(dist / "mlflow_eval_agent-0.1.0-py3-none-any.whl")
    assert entry_point == [["-a", "-e", "9", "--volume-path", "/Volumes/a/b/c", "--max-iterations", "20",
                            "--max-budget-usd", "10", "--model", "databricks-claude-sonnet-4-5",
                            "--secret-scope", "mlflow-eval-agent", "--secret-key", "fm-api-token", "--model-auth", "secret",
                            "--limit-stop-ok"]]


def test_widget_defaults_match_the_bundle_variables():
    from tests.bundle_helpers import load_bundle

    dbutils = StandInDbutils()
    exec(compile(cells(NOTEBOOK.read_text(encoding="utf-8"))[1], str(NOTEBOOK), "exec"), {"dbutils": dbutils})  # noqa: S102
    variables = load_bundle()["variables"]
    for name, default in dbutils.defaults.items():
        if name in variables:
            assert default == str(variables[name].get("default", "")), name


def test_without_a_notebook_path_or_wheel_dir_it_says_what_to_fill_in(dist, entry_point, tmp_path, monkeypatch):
    """The working directory is never guessed from: even with a ../dist beside it."""
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    with pytest.raises(FileNotFoundError, match="point the wheel_dir widget"):
        run_notebook(StandInDbutils({"experiment_id": "9", "volume_path": "/Volumes/a/b/c"}))
    assert not entry_point


@pytest.mark.slow
def test_a_rerun_with_the_same_version_really_reinstalls(tmp_path):
    """Real pip in a fresh virtualenv, two builds of one version: the plain install skips the second
    (what a notebook re-run did), the notebook's second %pip line replaces it."""
    import subprocess
    import sys
    import zipfile

    def wheel(folder: Path, marker: str) -> Path:
        folder.mkdir()
        path = folder / "probe_pkg-0.1.0-py3-none-any.whl"
        info = "probe_pkg-0.1.0.dist-info"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("probe_pkg/__init__.py", f"MARKER = {marker!r}\n")
            z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: probe-pkg\nVersion: 0.1.0\n")
            z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            z.writestr(f"{info}/RECORD", "")
        return path

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True)  # ensurepip: offline
    python = env_dir / "bin" / "python"
    first, second = wheel(tmp_path / "a", "first"), wheel(tmp_path / "b", "second")

    def pip(command: str, built: Path) -> None:
        args = command.split()[2:-1]  # "%pip install ... $wheel_path" -> the options
        subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", *args, str(built)],
                       check=True, capture_output=True)

    def marker() -> str:
        return subprocess.run([str(python), "-c", "import probe_pkg; print(probe_pkg.MARKER)"], capture_output=True, text=True,
                              check=True).stdout.strip()

    deps, reinstall = pip_commands(Path("$wheel_path"))
    pip(deps, first)
    pip(deps, second)
    assert marker() == "first", "the same version is skipped by a plain install"
    pip(reinstall, second)
    assert marker() == "second"

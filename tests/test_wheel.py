"""The wheel the bundle deploys: built with uv, holding the package, console script and prompts,
installed into a clean virtualenv where the console script runs and the prompts load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mlflow_eval_agent.prompts import PROMPT_NAMES
from tests.bundle_helpers import REPO_ROOT

UV = shutil.which("uv")
pytestmark = pytest.mark.skipif(UV is None, reason="uv is not on PATH (.ci/run installs it); the wheel was not built")


def run(*args: str, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --offline: the build backend comes from uv's cache (filled by `uv sync`); tests use no network.
    run(UV, "build", "--wheel", "--offline", "--out-dir", str(out), cwd=REPO_ROOT)
    (built,) = out.glob("*.whl")
    return built


def test_wheel_holds_the_package_the_console_script_and_the_prompts(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("__init__.py", "cli/__init__.py", "databricks.py", "store/volume.py", "settings.py"):
        assert f"mlflow_eval_agent/{module}" in names
    for prompt in PROMPT_NAMES:
        assert (REPO_ROOT / "prompts" / f"{prompt}.md").is_file(), f"prompts/{prompt}.md is missing from the checkout"
        assert f"mlflow_eval_agent/prompts/{prompt}.md" in names
    assert not any(n.startswith(("src/", "tests/", "notebooks/")) for n in names)  # a real import name, no top-level src
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mlflow-eval-agent = mlflow_eval_agent.cli:run" in text


def test_installed_in_a_clean_virtualenv_the_console_script_and_prompts_work(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, str(venv), cwd=tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run(UV, "pip", "install", "--quiet", "--offline", "--no-deps", "--python", str(python), str(wheel), cwd=tmp_path)
    # Dependencies (mlflow, claude-agent-sdk, ...) come from the synced project environment, appended
    # after the venv's own site-packages: the package itself can only come from the wheel.
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    script = venv / ("Scripts/mlflow-eval-agent.exe" if os.name == "nt" else "bin/mlflow-eval-agent")
    help_text = run(str(script), "--help", cwd=tmp_path).stdout
    assert "Usage: mlflow-eval-agent" in help_text and "--secret-scope" in help_text

    probe = (
        "import importlib.metadata as md, importlib.resources as res, mlflow_eval_agent\n"
        "from mlflow_eval_agent.prompts import PROMPT_NAMES, load_prompt\n"
        "from mlflow_eval_agent.databricks import adapt_settings\n"
        "from mlflow_eval_agent.store.volume import open_volume_session\n"
        "print(mlflow_eval_agent.__file__)\n"
        "print(all(res.files('mlflow_eval_agent').joinpath('prompts', n + '.md').is_file() for n in PROMPT_NAMES))\n"
        "print(min(len(load_prompt(n)) for n in PROMPT_NAMES))\n"
        # How a Databricks python_wheel_task finds its entry point: by package_name and entry_point.
        "(ep,) = [e for e in md.distribution('mlflow_eval_agent').entry_points if e.name == 'mlflow-eval-agent']\n"
        "print(ep.load().__module__)\n"
    )
    module_file, packaged, shortest, entry_module = run(str(python), "-c", probe, cwd=tmp_path).stdout.split()
    assert Path(module_file).is_relative_to(venv)
    assert packaged == "True" and int(shortest) > 100 and entry_module == "mlflow_eval_agent.cli"


def test_the_bundles_build_command_leaves_exactly_one_fresh_wheel(tmp_path):
    """databricks.yml's artifact build, line by line as the Databricks CLI runs it, on a copy of the
    project whose dist/ holds stale wheels: one wheel is left, the one just built."""
    from tests.bundle_helpers import load_bundle

    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    for folder in ("src", "prompts"):
        shutil.copytree(REPO_ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    stale = project / "dist"
    stale.mkdir()
    (stale / "mlflow_eval_agent-0.0.1-py3-none-any.whl").write_bytes(b"old")
    (stale / "mlflow_eval_agent-0.1.0-py3-none-any.whl").write_bytes(b"stale same version")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")} | {"UV_OFFLINE": "1"}
    build = load_bundle()["artifacts"]["mlflow_eval_agent_wheel"]["build"]
    for line in filter(None, (ln.strip() for ln in build.splitlines())):
        result = subprocess.run(["bash", "-c", line], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    (built,) = (project / "dist").glob("*.whl")
    assert built.name.startswith("mlflow_eval_agent-0.1.0") and zipfile.is_zipfile(built)

"""`demo` on a fresh folder with no credentials: a sample agent's traces, the offline pipeline, and
a printed command that runs the suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_eval_agent.demo.seed import MODE_SHARES, plan_requests
from tests.conftest import REPO_ROOT


def test_request_plan_is_deterministic_and_covers_every_mode():
    plan = plan_requests(60, seed=7)
    assert plan == plan_requests(60, seed=7)
    counts = {mode: sum(1 for _, faults in plan if mode in faults.modes) for mode in MODE_SHARES}
    assert counts == {mode: round(share * 60) for mode, share in MODE_SHARES.items()}
    assert all(len(faults.modes) <= 1 for _, faults in plan)


def clean_env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO_ROOT)}


@pytest.mark.slow
def test_demo_builds_a_suite_and_prints_the_command_that_runs_it(tmp_path):
    env = clean_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "src.cli", "demo", "--traces", "20"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no-model planner (no Claude credential set)" in proc.stdout
    assert "All tasks completed." in proc.stdout
    command = re.search(r"Run it with:\n\n    (.+)\n", proc.stdout).group(1)
    assert (tmp_path / ".eval-agent" / "demo" / "mlflow.db").is_file()
    run = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]  # the suite passes its own baseline gate
    assert "latency_budget" in run.stdout and "SKIPPED" in run.stdout and " ERROR " not in run.stdout
    again = subprocess.run([sys.executable, "-m", "src.cli", "demo", "--traces", "20", "--session-id", "second"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and "Reusing the demo experiment" in again.stdout

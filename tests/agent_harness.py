"""Running the real CLI (`python -m src.cli`) against the scripted Anthropic fake and a seeded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.fakes.anthropic_server import FakeAnthropic, offline_cli_env

INITIALIZER = "evaluation planner"  # words in prompts/initializer.md, used to route scripts
WORKER = "evaluation builder"  # words in prompts/worker.md


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(fake: FakeAnthropic | None, tracking_uri: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_", "EVAL_AGENT_", "DATABRICKS_"))}
    if fake is not None:
        env.update(offline_cli_env(fake.url, str(tmp / "claude-config-unused"), max_retries=1))
        env.pop("CLAUDE_CONFIG_DIR")  # the product makes its own private one
    env.update({
        "MLFLOW_TRACKING_URI": tracking_uri,
        "EVAL_AGENT_API_RETRY_WAIT_S": "0",
        "COLUMNS": "160",
        "PYTHONUNBUFFERED": "1",
        **extra,
    })
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> CliRun:
    proc = subprocess.run(
        [sys.executable, "-m", "src.cli", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def plan_of(session_dir: Path) -> dict:
    return json.loads((session_dir / "eval_tasks.json").read_text())


def task_status(session_dir: Path) -> dict[str, tuple[str, int]]:
    return {t["id"]: (t["status"], t["attempts"]) for t in plan_of(session_dir)["tasks"]}

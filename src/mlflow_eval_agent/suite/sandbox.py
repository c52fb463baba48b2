"""Running generated code in a child Python: clean environment, timeout, captured output.

The environment is built from an allow-list, so the agent's own secrets (ANTHROPIC_*, Databricks
tokens, cloud keys) never reach code the model wrote. Tracking-store settings are passed
explicitly by the caller.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Variables a Python child needs to start and find its packages, and non-secret pointers to a
# Databricks workspace (host, profile name, runtime marker); nothing that authenticates by itself.
_KEEP_EXACT = (
    "PATH", "HOME", "LANG", "TZ", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT", "VIRTUAL_ENV", "USER", "LOGNAME",
    "DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CONFIG_FILE", "DATABRICKS_RUNTIME_VERSION",
)
_KEEP_PREFIXES = ("LC_",)
_QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


# How MLflow authenticates to a remote tracking server: needed to run a suite, never to score a trace.
_TRACKING_PREFIX = "MLFLOW_TRACKING_"


def clean_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None, tracking: bool = False) -> dict[str, str]:
    """An allow-listed copy of the environment plus `extra` (e.g. MLFLOW_TRACKING_URI); with
    `tracking`, also MLflow's tracking-server settings (MLFLOW_TRACKING_TOKEN, ...)."""
    base = os.environ if base is None else base
    prefixes = (*_KEEP_PREFIXES, _TRACKING_PREFIX) if tracking else _KEEP_PREFIXES
    env = {k: v for k, v in base.items() if k in _KEEP_EXACT or k.startswith(prefixes)}
    env.update(_QUIET)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class RunResult:
    returncode: int | None  # None when it timed out
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def tail(self, limit: int = 1500) -> str:
        text = (self.stderr or self.stdout).strip()
        return text if len(text) <= limit else "..." + text[-limit:]


def run_python(
    args: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    python: str | None = None,
) -> RunResult:
    """Run `python <args>`; a timeout kills the child and returns what it printed so far."""
    started = time.monotonic()
    cmd = [python or sys.executable, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=dict(env), cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        return RunResult(None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - started)
    return RunResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

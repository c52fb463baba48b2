"""Reading databricks.yml the way a deploy would: variables substituted, dynamic values filled in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "databricks.yml"

# What a user passes with --var for the variables that have no default (nothing personal).
REQUIRED_VALUES = {"experiment_id": "1234567890", "volume_path": "/Volumes/main/evals/agent"}
RUN_ID = "987654321"

_REFERENCE = re.compile(r"\$\{([a-z_]+)\.([A-Za-z0-9_.-]+)\}|\{\{job\.run_id\}\}")


def load_bundle() -> dict[str, Any]:
    return yaml.safe_load(BUNDLE.read_text(encoding="utf-8"))


def required_variables(doc: dict[str, Any], target: str = "dev") -> set[str]:
    """Variables a user must pass for `target`: no default, and not set by the target itself."""
    set_by_target = (doc["targets"].get(target) or {}).get("variables") or {}
    return {name for name, spec in doc["variables"].items() if "default" not in spec and name not in set_by_target}


def variable_values(doc: dict[str, Any], target: str = "dev") -> dict[str, str]:
    """Each variable's value for `target`: the target's own, the default, or what a user must pass."""
    set_by_target = (doc["targets"].get(target) or {}).get("variables") or {}
    values = {}
    for name, spec in doc["variables"].items():
        if name in set_by_target:
            values[name] = str(set_by_target[name])
        else:
            values[name] = str(spec["default"]) if "default" in spec else REQUIRED_VALUES[name]
    return values


def substitute(value: Any, variables: dict[str, str], workspace: dict[str, str]) -> Any:
    """Replace ${var.x}, ${workspace.x} and {{job.run_id}}; any other reference is a test failure."""
    if isinstance(value, dict):
        return {k: substitute(v, variables, workspace) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables, workspace) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "{{job.run_id}}":
            return RUN_ID
        kind, name = match.group(1), match.group(2)
        table = {"var": variables, "workspace": workspace}.get(kind)
        if table is None or name not in table:
            raise AssertionError(f"unexpected reference {match.group(0)} in databricks.yml")
        return table[name]

    return _REFERENCE.sub(one, value)


def resolved_job(name: str, workspace: dict[str, str] | None = None) -> dict[str, Any]:
    doc = load_bundle()
    return substitute(doc["resources"]["jobs"][name], variable_values(doc), workspace or {})


def record_autonomous_runs(monkeypatch: Any) -> list[Any]:
    """Stand in for the autonomous runner: the CLI's resolved Settings are recorded, exit code 0."""
    import sys
    import types

    seen: list[Any] = []

    def run_autonomous(settings: Any) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setitem(sys.modules, "mlflow_eval_agent.runner", types.SimpleNamespace(run_autonomous=run_autonomous))
    return seen

"""A worker session that tries to run code, as a model that read hostile trace content would: through
the real CLI and bundled Claude Code, against the scripted model. Every attempt gets a precise
rejection, nothing is executed or written outside, and the run carries on to a validated suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent_harness import INITIALIZER, WORKER, cli_env, run_cli, task_status
from tests.fakes.anthropic_server import FakeAnthropic, text, tool_results_in, tool_use
from tests.test_attacks import EXPLOIT

pytestmark = pytest.mark.slow

PLAN = {"tasks": [
    {"id": "dataset", "name": "Stratified dataset", "type": "dataset", "details": "errors and normal traffic"},
    {"id": "scorer-errors", "name": "Tool errors fail", "type": "scorer", "details": "tool spans in ERROR"},
    {"id": "validate", "name": "Run the suite", "type": "validation", "details": "run and review"},
]}


def test_a_worker_that_tries_code_is_refused_and_the_run_carries_on(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    import mlflow

    from tests.seed_traces import seed_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id, kinds = seed_experiment(kinds=["ok", "tool_error", "ok", "hidden", "ok", "tool_error", "ok", "ok"])
    finally:
        mlflow.set_tracking_uri(None)
    marker = tmp_path / "pwned"
    exploit = EXPLOIT.replace("MARKER", str(marker))
    failing, passing = kinds["tool_error"] + kinds["hidden"], kinds["ok"][:3]
    base = {"kind": "check", "name": "tool_errors", "why": "tool calls fail in 3 of 8 traces", "must_fail": failing, "must_pass": passing}
    hostile_regex = {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "regex", "value": "(a+)+$"}]}
    good = {"op": "exists", "spans": {"type": ["TOOL"], "status": ["ERROR"]}}

    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(
        tool_use("mcp__eval__set_dataset", {"strata": {"errors": failing, "normal": kinds["ok"]}}),
        tool_use("mcp__eval__complete_task", {"task_id": "dataset", "summary": "8 traces in two strata"}),
        text("done"),
        tool_use("mcp__eval__add_scorer", {**base, "kind": "custom", "code": exploit}),
        tool_use("mcp__eval__add_scorer", {**base, "code": exploit}),
        tool_use("mcp__eval__try_scorer", {**base, "fail_when": {"op": "python", "source": exploit}, "trace_ids": passing}),
        tool_use("mcp__eval__try_scorer", {**base, "fail_when": hostile_regex, "trace_ids": passing}),
        tool_use("Read", {"file_path": "/proc/self/environ"}),
        tool_use("Read", {"file_path": "../../../.env"}),
        tool_use("mcp__eval__write_artifact", {"path": "../../../pwned", "content": "x"}),
        tool_use("mcp__eval__add_scorer", {**base, "fail_when": good, "threshold": 0.5}),
        tool_use("mcp__eval__complete_task", {"task_id": "scorer-errors", "summary": "tool_errors added with its evidence"}),
        text("done"),
        tool_use("mcp__eval__validate_suite", {}),
        tool_use("mcp__eval__complete_task", {"task_id": "validate", "summary": "the suite ran and met its evidence"}),
        text("done"),
        match=WORKER,
    )
    volume = tmp_path / "v"
    run = run_cli(["-a", "-e", experiment_id, "--volume-path", str(volume), "--session-id", "attack"], cli_env(fake_anthropic, uri, tmp_path), timeout=400)
    results = [r for req in fake_anthropic.main_requests() for r in tool_results_in(req, latest_only=True)]
    assert run.code == 0, run.output + "\n".join(f"{r.tool_name} {r.is_error} {r.text[:300]}" for r in results)
    fake_anthropic.assert_script_finished()
    session = volume / "sessions" / "attack"
    assert task_status(session) == {"dataset": ("completed", 1), "scorer-errors": ("completed", 1), "validate": ("completed", 1)}

    by_step = [(r.tool_name.removeprefix("mcp__eval__"), r.is_error, r.text) for r in results]
    attempts = by_step[3:10]
    assert [e for _, e, _ in attempts] == [True, True, True, False, True, True, True], [(n, e, t[:100]) for n, e, t in attempts]
    assert "'custom' is not one of" in attempts[0][2] or "Scorers cannot be code" in attempts[0][2], attempts[0]
    assert "Scorers cannot be code" in attempts[1][2], attempts[1]
    assert "unknown condition 'python'" in attempts[2][2]
    assert json.loads(attempts[3][2])["results"]  # a catastrophic pattern is only a slow-free RE2 search
    assert not by_step[10][1], by_step[10]
    assert not marker.exists() and not (tmp_path / "pwned").exists()
    spec = json.loads((session / "state" / "suite_spec.json").read_text())
    assert [s["fail_when"] for s in spec["scorers"]] == [good]
    validation = json.loads((session / "state" / "validation.json").read_text())
    assert validation["latest"]["scorers"]["tool_errors"]["meets_evidence"] is True
    assert "def " not in (session / "evaluation" / "scorers.py").read_text().split("CODE_SCORERS")[1].split("JUDGE_NAMES")[0]

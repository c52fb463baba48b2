"""The whole product on the agent path: the real CLI and bundled Claude Code, the scripted model, a
seeded experiment. The initializer profiles and plans; workers build the suite through the spec tools
(one rejected spec is corrected), validate it, and the run exits 0 with a runnable suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent_harness import INITIALIZER, WORKER, cli_env, run_cli, task_status
from tests.fakes.anthropic_server import FakeAnthropic, text, tool_results_in, tool_use

pytestmark = pytest.mark.slow

KINDS = ["ok", "ok", "tool_error", "ok", "hidden", "empty", "ok", "slow", "ok", "hidden", "ok", "tool_error"]
PLAN = {
    "tasks": [
        {"id": "dataset", "name": "Stratified dataset", "type": "dataset", "details": "errors, hidden failures, slow, normal"},
        {"id": "scorer-tool", "name": "lookup_order must succeed", "type": "scorer", "details": "tool timeouts"},
        {"id": "validate", "name": "Run the suite", "type": "validation", "details": "run and review"},
    ]
}


def _first_trace_id_in_results(body: dict) -> str:
    """React to the profile's result: open the first example trace it names."""
    results = tool_results_in(body, latest_only=True)
    payload = results[0].text
    start = payload.index("tr-")
    return payload[start:start + 35]


def test_agent_builds_validates_and_hands_back_a_runnable_suite(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    import mlflow

    from tests.seed_traces import seed_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id, kinds = seed_experiment(kinds=KINDS)
    finally:
        mlflow.set_tracking_uri(None)
    failing = kinds["tool_error"] + kinds["hidden"]
    passing = kinds["ok"][:3]

    fake_anthropic.script(
        tool_use("mcp__eval__profile", {}),
        lambda body: tool_use("mcp__eval__get_trace", {"trace_id": _first_trace_id_in_results(body)}),
        tool_use("mcp__eval__save_analysis", {
            "summary": "A support agent; the order lookup tool times out in 4 of 12 traces.",
            "findings": [{"title": "lookup_order timeouts", "description": "TimeoutError in lookup_order", "severity": "high",
                          "trace_ids": failing[:2], "evidence": "4 of 12 traces"}],
        }),
        tool_use("mcp__eval__write_plan", PLAN),
        text("Plan saved."),
        match=INITIALIZER,
    )
    fake_anthropic.script(
        # dataset
        tool_use("mcp__eval__set_dataset", {"strata": {"tool_errors": failing, "normal": kinds["ok"], "other": kinds["empty"] + kinds["slow"]}}),
        tool_use("mcp__eval__complete_task", {"task_id": "dataset", "summary": "12 traces in 3 strata"}),
        text("done"),
        # scorer: first a wrong check name (rejected), then the corrected spec
        tool_use("mcp__eval__add_scorer", {"kind": "check", "name": "lookup_order_ok", "why": "lookup_order times out in 4 of 12 traces",
                                           "check": "tool_success", "params": {"tool": "lookup_order"}, "must_fail": failing, "must_pass": passing}),
        tool_use("mcp__eval__add_scorer", {"kind": "check", "name": "lookup_order_ok", "why": "lookup_order times out in 4 of 12 traces",
                                           "check": "tool_succeeded", "params": {"tool": "lookup_order"}, "must_fail": failing, "must_pass": passing,
                                           "threshold": 0.5}),
        tool_use("mcp__eval__complete_task", {"task_id": "scorer-tool", "summary": "lookup_order_ok (tool_succeeded) added"}),
        text("done"),
        # validation
        tool_use("mcp__eval__validate_suite", {}),
        tool_use("mcp__eval__complete_task", {"task_id": "validate", "summary": "suite ran; lookup_order_ok caught all evidence"}),
        text("done"),
        match=WORKER,
    )
    volume = tmp_path / "v"
    env = cli_env(fake_anthropic, uri, tmp_path)
    run = run_cli(["-a", "-e", experiment_id, "--volume-path", str(volume), "--session-id", "full"], env, timeout=400)
    assert run.code == 0, run.output
    fake_anthropic.assert_script_finished()
    session = volume / "sessions" / "full"
    assert task_status(session) == {"dataset": ("completed", 1), "scorer-tool": ("completed", 1), "validate": ("completed", 1)}

    # The model saw the rejection with a precise reason, then the acceptance.
    results = [r for req in fake_anthropic.main_requests() for r in tool_results_in(req, latest_only=True)]
    add_results = [r for r in results if r.tool_name == "mcp__eval__add_scorer"]
    assert add_results[0].is_error and "tool_success" in add_results[0].text
    assert not add_results[1].is_error
    # Later requests carry earlier tool results (the profile's numbers reach the model).
    profile_result = next(r for r in results if r.tool_name == "mcp__eval__profile")
    assert json.loads(profile_result.text)["profile"]["trace_count"] == 12

    # Everything a user needs is in the session folder.
    for rel in ("state/profile.json", "state/analysis.json", "state/suite_spec.json", "state/validation.json",
                "evaluation/run_eval.py", "evaluation/scorers.py", "evaluation/README.md", "run.log"):
        assert (session / rel).is_file(), rel
    validation = json.loads((session / "state/validation.json").read_text())
    assert "lookup_order_ok" in json.dumps(validation)

    # The handed-back suite runs on its own, as a CI user would run it.
    suite_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))} | {"MLFLOW_TRACKING_URI": uri}
    proc = subprocess.run([sys.executable, "run_eval.py"], cwd=session / "evaluation", env=suite_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "lookup_order_ok" in proc.stdout

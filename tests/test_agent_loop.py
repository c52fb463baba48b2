"""The autonomous loop end to end: the real CLI and bundled Claude Code against the scripted model.

Each test runs `python -m src.cli -a ...` in a subprocess, so exit codes, output and the session
folder are what a user would get.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent_harness import INITIALIZER, WORKER, cli_env, plan_of, run_cli, task_status
from tests.fakes.anthropic_server import FakeAnthropic, HttpError, text, tool_results_in, tool_use

pytestmark = pytest.mark.slow

PLAN_NOTES_ONLY = {
    "tasks": [
        {"id": "notes", "name": "Write failure notes", "type": "analysis", "details": "Summarise the tool timeouts."},
        {"id": "validate", "name": "Run the suite", "type": "validation", "details": "Run and review."},
    ]
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, list[str]]]:
    import mlflow

    from tests.seed_traces import seed_experiment

    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id, kinds = seed_experiment()
    finally:
        mlflow.set_tracking_uri(None)
    return uri, experiment_id, kinds


def _args(experiment_id: str, volume: Path, *extra: str) -> list[str]:
    return ["-a", "-e", experiment_id, "--volume-path", str(volume), *extra]


def test_missing_credentials_exit_2_before_any_session(seeded, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "s1"), cli_env(None, uri, tmp_path))
    assert run.code == 2, run.output
    assert "ANTHROPIC_API_KEY" in run.stderr and ".env.example" in run.stderr
    assert "Traceback" not in run.output
    assert not (tmp_path / "v" / "sessions" / "s1").exists()


def test_unknown_experiment_is_a_usage_error(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, _, _ = seeded
    run = run_cli(_args("987654", tmp_path / "v"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 2, run.output
    assert "987654" in run.stderr and "not found" in run.stderr
    assert fake_anthropic.main_requests() == []


def test_initializer_that_never_writes_a_plan_gives_up(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    fake_anthropic.script(*[text("I looked at the traces and I am done.")] * 3, match=INITIALIZER)
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "np"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 1, run.output
    assert "did not produce a valid plan" in run.stdout
    assert len(fake_anthropic.sessions()) == 3
    fake_anthropic.assert_script_finished()


def test_task_that_keeps_failing_is_marked_failed(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_NOTES_ONLY), text("Plan saved."), match=INITIALIZER)
    # Worker sessions: 'notes' twice ends without complete_task; 'validate' fails itself twice.
    fake_anthropic.script(
        text("I could not finish."),
        text("Still not finished."),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "there is no suite to run yet"}),
        text("Stopping."),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "there is no suite to run yet"}),
        text("Stopping."),
        match=WORKER,
    )
    session = tmp_path / "v" / "sessions" / "kf"
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "kf", "--max-attempts", "2"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 1, run.output
    assert task_status(session) == {"notes": ("failed", 2), "validate": ("failed", 2)}
    tasks = {t["id"]: t for t in plan_of(session)["tasks"]}
    assert "without calling complete_task" in tasks["notes"]["failure_reason"]
    assert "no suite to run" in tasks["validate"]["failure_reason"]
    assert "some tasks failed" in run.stdout
    # The second attempt's prompt tells the worker why the first failed.
    worker_first_messages = [reqs[0].last_user_text() for reqs in list(fake_anthropic.sessions().values())[1:]]
    assert "previous attempt failed" in worker_first_messages[1]
    fake_anthropic.assert_script_finished()


def test_overloaded_storm_is_retried_a_bounded_number_of_times(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    fake_anthropic.script(HttpError(529, times=50))
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "storm"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 1, run.output
    assert "model API kept failing" in run.stdout
    # Our loop: 1 session + 3 retries; the CLI: 1 request + 1 retry of its own each (CLAUDE_CODE_MAX_RETRIES=1).
    assert len(fake_anthropic.main_requests()) == 8
    assert "Resume with: --session-id storm" in run.stdout


def test_path_traversal_is_refused(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    fake_anthropic.script(
        tool_use("Read", {"file_path": str(secret)}),
        tool_use("Read", {"file_path": "../../../secret.txt"}),
        tool_use("Glob", {"pattern": "/etc/*"}),
        tool_use("mcp__eval__write_artifact", {"path": "../../escape.txt", "content": "x"}),
        tool_use("mcp__eval__write_artifact", {"path": "eval_tasks.json", "content": "{}"}),
        tool_use("Bash", {"command": "cat /etc/passwd"}),
        tool_use("mcp__eval__write_artifact", {"path": "notes/ok.md", "content": "inside"}),
        text("done"),
        text("nothing"),
        text("nothing"),
        match=INITIALIZER,
    )
    session = tmp_path / "v" / "sessions" / "pt"
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "pt"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 1
    results = [r for req in fake_anthropic.main_requests() for r in tool_results_in(req, latest_only=True)]
    assert [r.is_error for r in results[:6]] == [True] * 6, [(r.tool_name, r.text[:80]) for r in results]
    assert results[6].is_error is False
    assert all("TOP-SECRET-VALUE" not in json.dumps(req.body) for req in fake_anthropic.requests)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "v" / "escape.txt").exists()
    assert (session / "notes" / "ok.md").read_text() == "inside"
    assert not (session / "eval_tasks.json").exists()


PLAN_THREE = {
    "tasks": [
        {"id": "first", "name": "First piece", "type": "analysis", "details": "a"},
        {"id": "second", "name": "Second piece", "type": "analysis", "details": "b"},
        {"id": "validate", "name": "Run the suite", "type": "validation", "details": "Run and review."},
    ]
}


def _blocking_step(started, release):
    def step(body):
        started.set()
        release.wait(60)
        return text("too late")

    return step


def _claude_children(parent_pid: int) -> list[int]:
    """Live bundled-CLI processes started for `parent_pid`'s run (found by the private folder in their env)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and f"eval-agent-claude-{parent_pid}-".encode() in environ:
            found.append(int(proc.name))
    return found


def _private_folders(pid: int) -> list[Path]:
    import tempfile

    return list(Path(tempfile.gettempdir()).glob(f"eval-agent-claude-{pid}-*"))


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT", "SIGTERM"])
def test_killed_run_resumes_without_redoing_completed_tasks(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path, signal_name: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tests.conftest import REPO_ROOT

    uri, experiment_id, _ = seeded
    started, release = threading.Event(), threading.Event()
    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_THREE), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(
        tool_use("mcp__eval__complete_task", {"task_id": "first", "summary": "first piece is done"}),
        text("done"),
        _blocking_step(started, release),
        match=WORKER,
    )
    session = tmp_path / "v" / "sessions" / "kr"
    env = cli_env(fake_anthropic, uri, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "src.cli", *_args(experiment_id, tmp_path / "v", "--session-id", "kr")],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert started.wait(120), "the second worker session never started"
        assert _claude_children(proc.pid), "the CLI child should be running during the session"
        os.killpg(proc.pid, signal.SIGKILL) if signal_name == "SIGKILL" else proc.send_signal(getattr(signal, signal_name))
        output, _ = proc.communicate(timeout=60)
    finally:
        release.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    statuses = task_status(session)
    assert statuses["first"] == ("completed", 1)
    deadline = time.time() + 10
    while _claude_children(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert _claude_children(proc.pid) == []  # the CLI child never outlives the run, even after kill -9
    if signal_name == "SIGKILL":
        assert statuses["second"] == ("in_progress", 1)
        assert _private_folders(proc.pid)  # left behind by kill -9; the next start removes it
    else:
        expected = {"SIGINT": 130, "SIGTERM": 143}[signal_name]
        assert proc.returncode == expected and "Interrupted" in output and "State is saved" in output, output
        assert "Traceback" not in output
        assert statuses["second"] == ("pending", 0)  # a clean stop gives the attempt back
        assert _private_folders(proc.pid) == []  # removed on the way out

    fake_anthropic.script(
        tool_use("mcp__eval__complete_task", {"task_id": "second", "summary": "second piece is done"}),
        text("done"),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite tools in this test"}),
        text("stop"),
        match=WORKER,
    )
    before = len(fake_anthropic.sessions())
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "kr", "--max-attempts", "1"), env)
    assert "Resuming session kr" in run.stdout, run.output
    assert _private_folders(proc.pid) == []  # a killed run's leftovers are removed at the next start
    if signal_name == "SIGKILL":
        # (the "Removed ... left by a run that was killed" line may come from any run started meanwhile on
        # this machine: every start sweeps dead runs' folders; tests/test_faults.py checks the sweep itself)
        assert "Took over the lock of a run that is gone" in run.stdout
    resumed = list(fake_anthropic.sessions().values())[before:]
    first_prompts = [reqs[0].last_user_text() for reqs in resumed]
    assert len(resumed) == 2 and '"id": "second"' in first_prompts[0] and '"id": "validate"' in first_prompts[1]
    assert not any('"id": "first"' in p for p in first_prompts)  # never redone
    statuses = task_status(session)
    assert statuses["first"] == ("completed", 1) and statuses["second"][0] == "completed"
    assert statuses["second"][1] == 1  # an interrupted attempt is not charged to the task


def test_self_tracing_and_no_secret_anywhere(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri, experiment_id, kinds = seeded
    secret = "sk-ant-test-SECRET-0123456789"
    agent_experiment = MlflowClient(tracking_uri=uri).create_experiment(f"agent-{tmp_path.name}")
    fake_anthropic.script(
        tool_use("mcp__eval__search_traces", {"filter": "attributes.status = 'ERROR'"}),
        tool_use("mcp__eval__get_trace", {"trace_id": kinds["tool_error"][0]}),
        tool_use("mcp__eval__write_plan", PLAN_NOTES_ONLY),
        text("Plan saved."),
        match=INITIALIZER,
    )
    fake_anthropic.script(
        tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"}),
        text("done"),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this test"}),
        text("stop"),
        match=WORKER,
    )
    env = cli_env(fake_anthropic, uri, tmp_path, ANTHROPIC_API_KEY=secret)
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "tr", "--max-attempts", "1",
                        "--agent-experiment-id", agent_experiment), env)
    assert run.code == 1, run.output
    mlflow.set_tracking_uri(uri)
    try:
        traces = mlflow.search_traces(locations=[agent_experiment], return_type="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert len(traces) == 1
    spans = traces[0].data.spans
    by_name = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert [s.name for s in spans if s.parent_id is None] == ["eval_agent_run"]
    sessions = [s for s in spans if s.name.startswith("session_")]
    assert [s.name for s in sessions] == ["session_1_initializer", "session_2_worker", "session_3_worker"]
    assert sessions[0].attributes["input_tokens"] > 0 and sessions[0].attributes["cost_usd"] > 0
    tool_spans = [s for s in spans if s.span_type == "TOOL"]
    assert [s.name for s in tool_spans][:3] == ["search_traces", "get_trace", "write_plan"]
    assert all(s.parent_id == sessions[0].span_id for s in tool_spans[:3])
    assert all(s.end_time_ns > s.start_time_ns for s in tool_spans)
    # The credential is nowhere: output, session files, the agent's own trace.
    assert secret not in run.output
    for path in (tmp_path / "v").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore"), path
    assert secret not in json.dumps([s.to_dict() for s in spans], default=str)

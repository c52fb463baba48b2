"""Faults end to end: the real CLI (`python -m src.cli -a`) and bundled Claude Code, the scripted model.

Each fault ends in a clean stop or a recovery with one line: no traceback, no completed task lost or
redone, nothing written outside the session folder and the private config folder.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.agent_harness import INITIALIZER, WORKER, cli_env, run_cli, task_status
from tests.conftest import REPO_ROOT
from tests.fakes.anthropic_server import FakeAnthropic, text, tool_results_in, tool_use
from tests.fakes.profile_fixtures import free_port, kill_server, start_mlflow_server

pytestmark = pytest.mark.slow

FAULTS = str(REPO_ROOT / "tests" / "fault_inject")
PLAN_TWO = {
    "tasks": [
        {"id": "notes", "name": "Write failure notes", "type": "analysis", "details": "Summarise the tool timeouts."},
        {"id": "validate", "name": "Run the suite", "type": "validation", "details": "Run and review."},
    ]
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    import mlflow

    from tests.seed_traces import seed_experiment

    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id, _ = seed_experiment()
    finally:
        mlflow.set_tracking_uri(None)
    return uri, experiment_id, folder


def _args(experiment_id: str, volume: Path, *extra: str) -> list[str]:
    return ["-a", "-e", experiment_id, "--volume-path", str(volume), *extra]


def _one_error_line(run) -> str:
    assert "Traceback" not in run.output, run.output
    lines = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, run.output
    return lines[0]


def _home_cache() -> set[str]:
    cache = Path.home() / ".cache" / "claude-cli-nodejs"
    return {str(p) for p in cache.rglob("*")} if cache.exists() else set()


def test_a_second_run_on_the_same_session_exits_2_naming_the_holder(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    started, release = threading.Event(), threading.Event()

    def blocking(body):
        started.set()
        release.wait(60)
        return tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"})

    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(blocking, text("done"),
                          tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this test"}), text("stop"),
                          match=WORKER)
    env = cli_env(fake_anthropic, uri, tmp_path, API_TIMEOUT_MS="600000")  # the held request outlasts the second run
    first = subprocess.Popen([sys.executable, "-m", "src.cli", *_args(experiment_id, tmp_path / "v", "--session-id", "two", "--max-attempts", "1")],
                             cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert started.wait(120), "the first run's worker never started"
        sessions_before = len(fake_anthropic.sessions())
        t0 = time.monotonic()
        second = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "two"), env)
        elapsed = time.monotonic() - t0
        sessions_after = len(fake_anthropic.sessions())  # the first run is still blocked in its worker here
    finally:
        release.set()
        output, _ = first.communicate(timeout=120)
    assert second.code == 2, second.output
    line = _one_error_line(second)
    assert f"pid {first.pid} on {socket.gethostname()}" in line and "already running" in line
    assert second.stdout.strip() == "" or "Resuming" not in second.stdout  # stopped before touching the session
    assert sessions_after == sessions_before  # no double spend
    assert elapsed < 120  # start-up and input checks only (Python + MLflow imports: 10-60 s on this shared 2-core machine)
    assert first.returncode == 1, output  # the first run carried on to its end (validate failed on purpose)
    assert task_status(tmp_path / "v" / "sessions" / "two") == {"notes": ("completed", 1), "validate": ("failed", 1)}
    assert not (tmp_path / "v" / "sessions" / "two" / ".lock").exists()


def test_reserved_names_and_oversized_input_through_the_model(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    home_before = _home_cache()
    fake_anthropic.script(
        tool_use("mcp__eval__write_artifact", {"path": "state", "content": "x"}),
        tool_use("mcp__eval__write_artifact", {"path": "evaluation", "content": "x"}),
        tool_use("mcp__eval__write_artifact", {"path": "notes/big.md", "content": "y" * (1024 * 1024 + 4096)}),
        tool_use("mcp__eval__write_artifact", {"path": "notes/ok.md", "content": "inside"}),
        tool_use("mcp__eval__write_plan", PLAN_TWO),
        text("Plan saved."),
        match=INITIALIZER,
    )
    fake_anthropic.script(
        tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"}), text("done"),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this test"}), text("stop"),
        match=WORKER,
    )
    session = tmp_path / "v" / "sessions" / "rn"
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "rn", "--max-attempts", "1"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 1, run.output  # validate failed on purpose; everything else went through
    assert "Traceback" not in run.output and "FileExistsError" not in run.output
    results = [r for req in fake_anthropic.main_requests() for r in tool_results_in(req, latest_only=True)]
    assert [r.is_error for r in results[:4]] == [True, True, True, False], [(r.tool_name, r.text[:100]) for r in results]
    assert "reserved" in results[0].text and "reserved" in results[1].text
    assert "over the limit" in results[2].text  # a sentence, and the session went on
    assert (session / "notes" / "ok.md").read_text() == "inside" and not (session / "notes" / "big.md").exists()
    assert (session / "state").is_dir() and task_status(session)["notes"] == ("completed", 1)
    assert _home_cache() == home_before  # the CLI's mcp logs stay in the private folder


def test_a_pre_existing_bad_entry_and_a_directory_for_sessions_json_do_not_brick_the_session(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    session = tmp_path / "v" / "sessions" / "bad"
    session.mkdir(parents=True)
    (session / "evaluation").write_text("a file where the suite folder belongs")
    (session / "state").mkdir()
    (session / "state" / "sessions.json").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside")
    (session / "link").symlink_to(outside)
    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(
        tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"}), text("done"),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this test"}), text("stop"),
        match=WORKER,
    )
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "bad", "--max-attempts", "1"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 1 and "Traceback" not in run.output, run.output
    assert "'evaluation' in the session folder was not a folder; kept aside" in run.stdout
    assert "state/sessions.json was unreadable (not a file)" in run.stdout
    assert task_status(session) == {"notes": ("completed", 1), "validate": ("failed", 1)}
    assert (outside / "secret.txt").read_text() == "outside" and sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unusable_volume_path_exits_2_in_one_line(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path, where: str) -> None:
    uri, experiment_id, _ = seeded
    target = tmp_path / "a-file" if where == "file" else Path("/proc/eval-agent-test")
    if where == "file":
        target.write_text("x")
    run = run_cli(_args(experiment_id, target), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 2, run.output
    assert "Cannot keep sessions under" in _one_error_line(run)
    assert fake_anthropic.main_requests() == []


@pytest.mark.parametrize(("fault", "code", "words"), [("ENOSPC:12", 1, "no space left"), ("EROFS:1", 2, "not writable")])
def test_disk_full_and_read_only_folder_stop_in_one_line(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path, fault: str, code: int, words: str) -> None:
    uri, experiment_id, _ = seeded
    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"}), text("done"), match=WORKER)
    env = cli_env(fake_anthropic, uri, tmp_path, EVAL_AGENT_FAULT=fault, PYTHONPATH=FAULTS)
    run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "full"), env)
    assert run.code == code, run.output
    assert words in _one_error_line(run)
    session = tmp_path / "v" / "sessions" / "full"
    if code == 1:  # what was written before the disk filled is intact and parseable
        assert task_status(session)


def test_an_empty_experiment_is_refused_before_any_session(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri, _, _ = seeded
    empty = MlflowClient(tracking_uri=uri).create_experiment(f"empty-{tmp_path.name}")
    run = run_cli(_args(empty, tmp_path / "v"), cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 2, run.output
    assert "has no traces" in _one_error_line(run)
    assert fake_anthropic.main_requests() == [] and not (tmp_path / "v" / "sessions").exists()


def test_analyze_and_run_on_an_unreachable_server_exit_2_at_once(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    uri = f"http://127.0.0.1:{port}"
    for args in (["analyze", "-e", "1"], ["-a", "--offline", "-e", "1", "--volume-path", str(tmp_path / "v")]):
        t0 = time.monotonic()
        run = run_cli(args, cli_env(None, uri, tmp_path))
        assert run.code == 2, run.output
        assert "Cannot reach the MLflow tracking server" in _one_error_line(run)
        assert time.monotonic() - t0 < 60  # MLflow's own retries take over 120 s; a start-up on this shared machine ~10-30 s


def test_a_corrupt_plan_on_resume_keeps_completed_work(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id, _ = seeded
    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"}), text("done"), match=WORKER)
    env = cli_env(fake_anthropic, uri, tmp_path)
    session = tmp_path / "v" / "sessions" / "cp"
    first = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "cp", "--max-iterations", "2"), env)
    assert first.code == 3, first.output
    plan_file = session / "eval_tasks.json"
    plan_file.write_text(plan_file.read_text()[:40])  # truncated
    fake_anthropic.script(tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this test"}), text("stop"), match=WORKER)
    before = len(fake_anthropic.sessions())
    second = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "cp", "--max-iterations", "5", "--max-attempts", "1"), env)
    assert "Traceback" not in second.output
    assert "Restored the last good plan (1 completed task kept)" in second.stdout, second.output
    resumed = list(fake_anthropic.sessions().values())[before:]
    assert len(resumed) == 1 and '"id": "validate"' in resumed[0][0].last_user_text()  # no re-plan, notes not redone
    assert task_status(session) == {"notes": ("completed", 1), "validate": ("failed", 1)}
    assert any(p.name.startswith("eval_tasks.json.corrupt-") for p in session.iterdir())


def test_a_tracking_store_outage_is_not_charged_and_a_resume_finishes(seeded, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    _, experiment_id, folder = seeded
    port = free_port()
    server = {"handle": start_mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", tmp_path / "server.log", port=port)}
    uri = f"http://127.0.0.1:{port}"

    def outage(body):
        kill_server(server["handle"])  # the server dies during the worker's session
        return text("I could not read the traces: 7 trace id(s) not found in experiment 1.")

    fake_anthropic.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    fake_anthropic.script(outage, match=WORKER)
    env = cli_env(fake_anthropic, uri, tmp_path, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    session = tmp_path / "v" / "sessions" / "out"
    try:
        run = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "out", "--max-attempts", "1"), env)
        assert run.code == 1, run.output
        assert "Traceback" not in run.output
        assert "tracking store kept failing" in run.stdout and "no task was charged" in run.stdout, run.output
        assert task_status(session) == {"notes": ("pending", 0), "validate": ("pending", 0)}
        server["handle"] = start_mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", tmp_path / "server2.log", port=port)
        fake_anthropic.script(
            tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": "notes are written"}), text("done"),
            tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this test"}), text("stop"),
            match=WORKER,
        )
        again = run_cli(_args(experiment_id, tmp_path / "v", "--session-id", "out", "--max-attempts", "1"), env)
        assert "Resuming session out" in again.stdout, again.output
        assert task_status(session) == {"notes": ("completed", 1), "validate": ("failed", 1)}
    finally:
        if server["handle"].process.poll() is None:
            kill_server(server["handle"])

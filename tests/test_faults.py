"""Faults a production run meets, one test each, in process (milliseconds to seconds).

The end-to-end versions (the real CLI and bundled Claude Code against the scripted model) are in
tests/test_faults_cli.py; benchmarks/faults.py runs the whole matrix.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_eval_agent.claude_folder import OWNER_FILE, PREFIX, private_env, remove_stale
from mlflow_eval_agent.interrupts import exit_code_for, stop_signals_as_interrupt
from mlflow_eval_agent.loop import STORE_RETRIES, AutonomousLoop
from mlflow_eval_agent.plan import PLAN_BACKUP, PLAN_FILE, PlanDraft, TaskPlan
from mlflow_eval_agent.session import SessionOutcome, cli_environment
from mlflow_eval_agent.settings import resolve_settings
from mlflow_eval_agent.store import StoreError, open_session_store
from mlflow_eval_agent.store.lock import LOCK_FILE, LocalLockMedium, LockHeld, SessionLock
from mlflow_eval_agent.tools import ToolContext
from mlflow_eval_agent.tools._base import MAX_INPUT_CHARS, run_tool
from mlflow_eval_agent.tools.state import write_artifact

DRAFT = PlanDraft.model_validate({"tasks": [
    {"id": "a", "name": "A", "type": "scorer"},
    {"id": "b", "name": "B", "type": "scorer"},
    {"id": "v", "name": "V", "type": "validation"},
]})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- session lock ----------------------------------------------------------------------------------
def test_second_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    with SessionLock(medium, "s1"):
        with pytest.raises(LockHeld) as err:
            SessionLock(medium, "s1").acquire()
        message = str(err.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message and "already running" in message
        assert err.value.code == 2 and "\n" not in message
    assert not (tmp_path / LOCK_FILE).exists()  # released
    with SessionLock(medium, "s1"):  # and free again
        pass


def test_a_dead_holders_lock_is_taken_over_once(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00", "token": "old"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    first = SessionLock(medium, "s1")
    first.acquire()
    assert first.took_over is not None and first.took_over.token == "old"
    # A second run that found the same stale lock now meets the new, live holder.
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        SessionLock(medium, "s1").acquire()
    first.release()


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    # Our own pid, but a different process start time: the recorded holder is gone.
    stale = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": "x", "pid_started": "1", "token": "old"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    lock = SessionLock(medium, "s1")
    lock.acquire()
    assert lock.took_over is not None
    lock.release()


def test_a_half_written_lock_counts_as_dead_and_another_host_is_never_broken(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    (tmp_path / LOCK_FILE).write_text('{"pid": 12')
    with SessionLock(medium, "s1") as lock:
        assert lock.took_over is not None
    other = {"pid": 1, "host": "another-machine", "started_at": "t", "token": "o"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(LockHeld, match="another-machine.*delete"):
        SessionLock(medium, "s1").acquire()


def test_a_takeover_in_progress_is_respected_and_an_abandoned_one_expires(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started_at": "t", "token": "old"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(stale))
    (tmp_path / ".lock.takeover").write_text(json.dumps({"token": "other", "at": time.time()}))
    with pytest.raises(LockHeld, match="taking over"):
        SessionLock(medium, "s1").acquire()
    (tmp_path / ".lock.takeover").write_text(json.dumps({"token": "other", "at": time.time() - 3600}))
    with SessionLock(medium, "s1") as lock:
        assert lock.took_over is not None
    assert not (tmp_path / ".lock.takeover").exists()


def test_lock_on_the_files_api_is_create_if_absent(tmp_path: Path) -> None:
    from mlflow_eval_agent.store.volume import RetryPolicy, open_volume_session
    from tests.fakes.databricks_api import FakeDatabricks

    volume = "/Volumes/main/evals/agent"
    with FakeDatabricks() as fake:
        fake.add_volume(volume)
        store = open_volume_session(volume, "run-1", workspace=fake.client(), cache_root=tmp_path / "a", retry=RetryPolicy(2, 0.001, 0.001))
        other = open_volume_session(volume, "run-1", workspace=fake.client(), cache_root=tmp_path / "b", retry=RetryPolicy(2, 0.001, 0.001))
        with SessionLock(store.lock_medium(), "run-1"):
            with pytest.raises(LockHeld, match="already running"):
                SessionLock(other.lock_medium(), "run-1").acquire()
        with SessionLock(other.lock_medium(), "run-1"):  # released through the API
            pass
        # A dead holder's lock in the volume is taken over through the API too.
        stale = {"pid": dead_pid(), "host": socket.gethostname(), "started_at": "t", "token": "old"}
        assert other.lock_medium().create(LOCK_FILE, json.dumps(stale).encode())
        with SessionLock(store.lock_medium(), "run-1") as lock:
            assert lock.took_over is not None and lock.took_over.token == "old"
        assert store.pull() == 0  # the lock files are never pulled as session content


def test_lock_on_the_fuse_mount_lives_in_the_volume(tmp_path: Path) -> None:
    from mlflow_eval_agent.store.volume import open_volume_session

    volume = "/Volumes/main/evals/agent"
    mount = tmp_path / "mount"
    (mount / volume.lstrip("/")).mkdir(parents=True)
    a = open_volume_session(volume, "run-1", mount_root=mount, cache_root=tmp_path / "a")
    b = open_volume_session(volume, "run-1", mount_root=mount, cache_root=tmp_path / "b")
    with SessionLock(a.lock_medium(), "run-1"):
        assert (mount / volume.lstrip("/") / "sessions" / "run-1" / LOCK_FILE).is_file()
        with pytest.raises(LockHeld):
            SessionLock(b.lock_medium(), "run-1").acquire()


# --- reserved names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["state", "evaluation", "./state", "state/", "state/x.json", "Evaluation/scorers.py",
                                  "eval_tasks.json", "run.log", ".lock", "notes/.hidden", ""])
def test_write_artifact_refuses_reserved_and_hidden_names(tmp_path: Path, path: str) -> None:
    store = open_session_store(str(tmp_path), "s")
    ctx = ToolContext(resolve_settings({"experiment_id": "1"}, {}), store)
    text, is_error = run_tool(write_artifact, ctx, {"path": path, "content": "x"})
    assert is_error, text
    assert "Traceback" not in text and "\n" not in text and ("reserved" in text or "hidden" in text or "empty" in text), text
    assert store.list() == []


@pytest.mark.parametrize("path", ["notes/user_scorers.py", "agent.PY", "notes/run.sh", "x/site.pth", "notes/n.ipynb"])
def test_write_artifact_refuses_files_that_could_run(tmp_path: Path, path: str) -> None:
    """Nothing the model writes may later be run or imported (e.g. as --user-scorers or --predict-fn)."""
    store = open_session_store(str(tmp_path), "s")
    ctx = ToolContext(resolve_settings({"experiment_id": "1"}, {}), store)
    text, is_error = run_tool(write_artifact, ctx, {"path": path, "content": "import os"})
    assert is_error and "never code" in text and "\n" not in text, text
    assert store.list() == []


def test_write_artifact_still_writes_notes(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path), "s")
    ctx = ToolContext(resolve_settings({"experiment_id": "1"}, {}), store)
    text, is_error = run_tool(write_artifact, ctx, {"path": "notes/state.md", "content": "fine"})
    assert not is_error, text
    assert store.read_text("notes/state.md") == "fine"


def test_a_pre_existing_bad_entry_never_bricks_the_session(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path), "s")
    (store.root / "state").write_text("written by an old bug")
    (store.root / "evaluation").write_text("also a file")
    done = store.repair()
    assert len(done) == 2 and all("kept aside as" in line for line in done)
    store.write_json("state/sessions.json", [])  # works again
    assert store.read_json("state/sessions.json") == []
    # And without repair(): the write itself moves the blocking file aside.
    other = open_session_store(str(tmp_path), "t")
    (other.root / "state").write_text("x")
    other.write_json("state/budget.json", {})
    assert other.notices and "kept aside" in other.notices[0]


# --- storage faults: one sentence, no traceback -------------------------------------------------------
def test_sessions_file_that_is_a_directory_is_set_aside_and_the_loop_carries_on(tmp_path: Path) -> None:
    settings = resolve_settings({"experiment_id": "1"}, {})
    store = open_session_store(str(tmp_path), "s")
    (store.root / "state" / "sessions.json").mkdir(parents=True)
    notices = []

    async def runner(settings, store, request, config_dir):
        if request.role == "initializer":
            store.write_model(PLAN_FILE, DRAFT.to_plan("1"))
        else:
            store.write_model(PLAN_FILE, store.read_model(PLAN_FILE, TaskPlan).complete(request.task_id, "done well"))
        return SessionOutcome(role=request.role, task_id=request.task_id, started_at=time.time())

    class Hooks:
        def session_observers(self, r, i): return []
        def session_started(self, r, i): ...
        def session_finished(self, r, o): ...
        def notice(self, m): notices.append(m)

    report = asyncio.run(AutonomousLoop(settings, store, tmp_path, hooks=Hooks(), runner=runner, backoff_s=lambda n: 0).run())
    assert report.stop_reason == "completed"
    assert any("not a file" in n and "kept aside" in n for n in notices), notices
    assert len(store.read_json("state/sessions.json")) == 4


@pytest.mark.parametrize(("code", "exit_code", "words"), [
    (errno.ENOSPC, 1, "no space left"), (errno.EROFS, 2, "not writable"), (errno.EACCES, 2, "not writable"),
])
def test_os_write_errors_become_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, exit_code: int, words: str) -> None:
    store = open_session_store(str(tmp_path), "s")

    def failing(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr("mlflow_eval_agent.store.base.atomic_write_bytes", failing)
    with pytest.raises(StoreError) as err:
        store.write_json("state/x.json", {})
    assert words in str(err.value) and err.value.code == exit_code and "\n" not in str(err.value)


def test_a_symlink_out_of_the_session_is_skipped_not_a_crash(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path / "v"), "s")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside")
    store.write_text("notes/a.md", "inside")
    (store.root / "notes" / "link.txt").symlink_to(outside / "secret.txt")
    (store.root / "linked_dir").symlink_to(outside)
    assert store.list() == ["notes/a.md"]
    store.sync()  # lists again: no ValueError
    with pytest.raises(StoreError, match="outside"):
        store.read_text("notes/link.txt")


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unusable_volume_path_is_one_sentence(tmp_path: Path, where: str) -> None:
    if where == "file":
        target = tmp_path / "a-file"
        target.write_text("x")
    else:
        target = Path("/proc/self/no-such-folder")
    with pytest.raises(StoreError, match="Cannot keep sessions under") as err:
        open_session_store(str(target), "s")
    assert "--volume-path" in str(err.value)


# --- a plan that survives corruption ------------------------------------------------------------------
@pytest.mark.parametrize("damage", ['{"tasks": [{"id": "a", "na', '{"tasks": "not a list"}', '{"experiment_id": 5}'])
def test_a_corrupt_plan_never_makes_completed_work_redone(tmp_path: Path, damage: str) -> None:
    settings = resolve_settings({"experiment_id": "1"}, {})
    store = open_session_store(str(tmp_path), "s")
    calls = []

    async def runner(settings, store, request, config_dir):
        calls.append(request.task_id or request.role)
        if request.role == "initializer":
            store.write_model(PLAN_FILE, DRAFT.to_plan("1", None))
        else:
            plan = store.read_model(PLAN_FILE, TaskPlan)
            store.write_model(PLAN_FILE, plan.complete(request.task_id, "done well"))
        return SessionOutcome(role=request.role, task_id=request.task_id, started_at=time.time())

    loop = AutonomousLoop(settings, store, tmp_path, runner=runner, backoff_s=lambda n: 0)
    loop.save_plan(DRAFT.to_plan("1").complete("a", "first is done"))  # an earlier run finished 'a'
    store.path(PLAN_FILE).write_text(damage)  # then the file was truncated or hand-broken
    report = asyncio.run(loop.run())
    assert report.stop_reason == "completed"
    assert calls == ["b", "v"]  # no re-plan, 'a' not redone
    assert any(p.startswith(f"{PLAN_FILE}.corrupt-") for p in store.list())
    assert store.read_model(PLAN_BACKUP, TaskPlan).counts()["completed"] == 3


# --- tracking-store outages ----------------------------------------------------------------------------
def test_store_outage_is_not_charged_and_stops_then_resumes(tmp_path: Path) -> None:
    settings = resolve_settings({"experiment_id": "1", "max_attempts": 1}, {})
    store = open_session_store(str(tmp_path), "s")
    up = {"value": True}
    calls = []

    async def runner(settings, store, request, config_dir):
        calls.append(request.task_id or request.role)
        plan = store.read_model(PLAN_FILE, TaskPlan) if store.exists(PLAN_FILE) else None
        if request.role == "initializer":
            store.write_model(PLAN_FILE, DRAFT.to_plan("1"))
        elif request.task_id == "b" and len(calls) == 3:
            up["value"] = False  # the server dies during b's session; the worker gives up on the task
            store.write_model(PLAN_FILE, plan.record_failure("b", "7 trace id(s) not found in experiment 1", 1))
        else:
            store.write_model(PLAN_FILE, plan.complete(request.task_id, "done well"))
        return SessionOutcome(role=request.role, task_id=request.task_id, started_at=time.time())

    probe = lambda: None if up["value"] else "http://127.0.0.1:5000 is unreachable: Connection refused"  # noqa: E731
    loop = AutonomousLoop(settings, store, tmp_path, runner=runner, backoff_s=lambda n: 0, probe=probe)
    report = asyncio.run(loop.run())
    assert report.stop_reason == "store_unavailable" and report.exit_code == 1
    assert "Connection refused" in report.message
    plan = store.read_model(PLAN_FILE, TaskPlan)
    assert plan.get("a").status == "completed" and plan.get("b").status == "pending" and plan.get("b").attempts == 0
    assert calls == ["initializer", "a", "b"]  # no session while the store was down
    # The store is back: a resume runs the remaining work.
    up["value"] = True
    again = AutonomousLoop(settings, store, tmp_path, runner=runner, backoff_s=lambda n: 0, probe=probe)
    assert asyncio.run(again.run()).stop_reason == "completed"
    assert calls[3:] == ["b", "v"]


def test_store_retries_are_bounded(tmp_path: Path) -> None:
    settings = resolve_settings({"experiment_id": "1"}, {})
    store = open_session_store(str(tmp_path), "s")
    probes = []

    async def runner(*args):
        raise AssertionError("no session may start while the store is down")

    def probe():
        probes.append(1)
        return "answered HTTP 503"

    report = asyncio.run(AutonomousLoop(settings, store, tmp_path, runner=runner, backoff_s=lambda n: 0, probe=probe).run())
    assert report.stop_reason == "store_unavailable" and len(probes) == STORE_RETRIES + 1


def test_the_probe_tells_unreachable_from_5xx_from_healthy() -> None:
    import http.server
    import threading

    from mlflow_eval_agent.tracking_probe import probe_once

    class Handler(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_GET(self):  # noqa: N802
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *a): ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        assert probe_once(uri) is None
        Handler.status = 503
        assert "HTTP 503" in probe_once(uri)
        Handler.status = 404  # a proxy without /health still answered
        assert probe_once(uri) is None
    finally:
        server.shutdown()
        server.server_close()
    started = time.time()
    assert "unreachable" in probe_once(uri, timeout_s=2)
    assert time.time() - started < 3


# --- oversized tool input -------------------------------------------------------------------------------
def test_oversized_tool_input_is_refused_with_a_sentence(tmp_path: Path) -> None:
    from mlflow_eval_agent.guard import FileGuard

    store = open_session_store(str(tmp_path), "s")
    ctx = ToolContext(resolve_settings({"experiment_id": "1"}, {}), store)
    big = {"path": "notes/big.md", "content": "x" * (MAX_INPUT_CHARS + 10)}
    text, is_error = run_tool(write_artifact, ctx, big)
    assert is_error and "over the limit" in text and not store.exists("notes/big.md")
    guard = FileGuard(root=store.root, allowed_prefixes=("mcp__eval__",))
    assert "over the limit" in guard.check("Grep", {"pattern": "x" * (MAX_INPUT_CHARS + 10)})
    assert guard.check("Grep", {"pattern": "x"}) is None


def test_the_sdk_buffer_is_raised_above_the_tool_limit(tmp_path: Path) -> None:
    from mlflow_eval_agent.session import MAX_BUFFER_BYTES, SessionRequest, build_options

    store = open_session_store(str(tmp_path / "v"), "s")
    ctx = ToolContext(resolve_settings({"experiment_id": "1"}, {}), store)
    options = build_options(ctx.settings, ctx, SessionRequest(role="worker", system_prompt="s", prompt="p"), tmp_path / "cfg", lambda line: None)
    assert options.max_buffer_size == MAX_BUFFER_BYTES > 4 * MAX_INPUT_CHARS


# --- signals and the private folder ---------------------------------------------------------------------
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_interrupt_like_ctrl_c(sig: int, code: int) -> None:
    with stop_signals_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            time.sleep(5)
        assert exit_code_for() == code
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.SIG_IGN, None) or callable(signal.getsignal(sig))


def test_sigterm_cancels_an_asyncio_run_like_ctrl_c() -> None:
    cancelled = []

    async def work():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)  # the loop's `except CancelledError` (task released) runs
            raise

    with stop_signals_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(work())
    assert cancelled == [True] and exit_code_for() == 143


def test_leftover_private_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / f"{PREFIX}{dead_pid()}-abc"
    alive = tmp_path / f"{PREFIX}{os.getpid()}-def"
    foreign = tmp_path / f"{PREFIX}xyz"  # not ours to judge
    for folder in (dead, alive, foreign):
        (folder / "projects").mkdir(parents=True)
    (alive / OWNER_FILE).write_text(json.dumps({"pid": os.getpid()}))
    assert remove_stale(tmp_path) == [dead.name]
    assert not dead.exists() and alive.exists() and foreign.exists()


def test_the_cli_home_and_caches_are_inside_the_private_folder(tmp_path: Path) -> None:
    settings = resolve_settings({"experiment_id": "1"}, {})
    env = cli_environment(settings, tmp_path / "cfg", {"HOME": "/root"})
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "TMPDIR"):
        assert Path(env[name]).is_relative_to(tmp_path / "cfg") and Path(env[name]).is_dir(), name
    assert private_env(tmp_path / "cfg")["HOME"] == env["HOME"]

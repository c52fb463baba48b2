"""The fault matrix of issue 11, against the real CLI and bundled Claude Code with the scripted model.

    uv run python -m benchmarks.faults [--only NAME ...]

One line per fault: survived (a clean stop or a recovery with a one-line message, no traceback),
work lost (completed tasks lost or redone), leaked (CLI children alive or private folders left
after the run ended), outside writes (files created under the run's HOME or TMPDIR other than its
private folder, or in the checkout); then a total. Every run gets its own HOME and TMPDIR inside
the benchmark's folder, so "outside" is measured exactly, not guessed from a shared /tmp.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")

from tests.agent_harness import INITIALIZER, WORKER, CliRun, cli_env, run_cli  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropic, text, tool_results_in, tool_use  # noqa: E402
from tests.fakes.profile_fixtures import free_port, kill_server, start_mlflow_server  # noqa: E402

FAULTS_PATH = str(REPO_ROOT / "tests" / "fault_inject")
PLAN_TWO = {"tasks": [
    {"id": "notes", "name": "Write failure notes", "type": "analysis", "details": "Summarise the tool timeouts."},
    {"id": "validate", "name": "Run the suite", "type": "validation", "details": "Run and review."},
]}
PLAN_THREE = {"tasks": [
    {"id": "first", "name": "First piece", "type": "analysis", "details": "a"},
    {"id": "second", "name": "Second piece", "type": "analysis", "details": "b"},
    {"id": "validate", "name": "Run the suite", "type": "validation", "details": "Run and review."},
]}


@dataclass
class Outcome:
    survived: bool
    work_lost: int = 0
    note: str = ""


@dataclass
class Row:
    name: str
    outcome: Outcome
    leaked: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome.survived and self.outcome.work_lost == 0 and not self.leaked and not self.outside


def complete(task_id: str) -> list:
    return [tool_use("mcp__eval__complete_task", {"task_id": task_id, "summary": f"{task_id} is done and checked"}), text("done")]


def fail_validate() -> list:
    return [tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": "no suite in this benchmark"}), text("stop")]


def one_line(run: CliRun, *words: str) -> bool:
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    return "Traceback" not in run.output and len(errors) == 1 and all(w in errors[0] for w in words)


def clean(run: CliRun) -> bool:
    return "Traceback" not in run.output


def statuses(session: Path) -> dict[str, tuple[str, int]]:
    try:
        plan = json.loads((session / "eval_tasks.json").read_text())
    except (OSError, ValueError):
        return {}
    return {t["id"]: (t["status"], t["attempts"]) for t in plan["tasks"]}


class Bench:
    def __init__(self, root: Path):
        import mlflow

        from tests.seed_traces import seed_experiment

        self.root = root
        self.db = root / "store" / "mlflow.db"
        self.db.parent.mkdir(parents=True)
        self.uri = f"sqlite:///{self.db}"
        mlflow.set_tracking_uri(self.uri)
        try:
            self.experiment_id, _ = seed_experiment()
            self.empty_experiment = mlflow.create_experiment("empty")
        finally:
            mlflow.set_tracking_uri(None)
        self.fake = FakeAnthropic().start()
        self.home = root / "home"
        self.tmp = root / "tmp"
        self.volume = root / "v"
        self.count = 0

    def close(self) -> None:
        self.fake.stop()

    def reset_fake(self) -> None:
        self.fake.stop()
        self.fake = FakeAnthropic().start()

    def env(self, uri: str | None = None, **extra: str) -> dict[str, str]:
        return cli_env(self.fake, uri or self.uri, self.root, HOME=str(self.home), TMPDIR=str(self.tmp), **extra)

    def args(self, session: str, *extra: str) -> list[str]:
        return ["-a", "-e", self.experiment_id, "--volume-path", str(self.volume), "--session-id", session, *extra]

    def session(self, name: str) -> Path:
        return self.volume / "sessions" / name

    def popen(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "src.cli", *args], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    # --- what a run leaves behind -----------------------------------------------------------------
    def snapshot(self) -> set[str]:
        found = set()
        for base in (self.home, self.tmp):
            base.mkdir(parents=True, exist_ok=True)
            for path in base.rglob("*"):
                if path.is_file() and "eval-agent-claude-" not in str(path):
                    found.add(str(path))
        for name in ("mlruns", ".eval-agent"):
            if (REPO_ROOT / name).exists():
                found.add(str(REPO_ROOT / name))
        return found

    def leaks(self) -> list[str]:
        leaked = [f"folder {p.name}" for p in self.tmp.glob("eval-agent-claude-*")]
        marker = f"{self.tmp}/eval-agent-claude-".encode()
        deadline = time.time() + 5
        while True:
            alive = []
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
                    if state != "Z" and marker in (proc / "environ").read_bytes():
                        alive.append(f"process {proc.name}")
                except OSError:
                    continue
            if not alive or time.time() > deadline:
                return leaked + alive
            time.sleep(0.25)

    def measure(self, name: str, fault: Callable[[Bench], Outcome]) -> Row:
        self.reset_fake()
        before = self.snapshot()
        started = time.time()
        try:
            outcome = fault(self)
        except Exception as exc:  # noqa: BLE001 - a broken fault counts as not survived, with the reason
            outcome = Outcome(False, note=f"{type(exc).__name__}: {exc}"[:200])
        seconds = time.time() - started
        outside = sorted(self.snapshot() - before)
        return Row(name, outcome, self.leaks(), [os.path.relpath(p, self.root) for p in outside], seconds)


# --- the faults ---------------------------------------------------------------------------------------
def store_outage(b: Bench) -> Outcome:
    port = free_port()
    artifacts = b.db.parent / "artifacts"
    server = {"handle": start_mlflow_server(f"sqlite:///{b.db}", artifacts, b.db.parent / "server.log", timeout_s=120, port=port)}
    uri = f"http://127.0.0.1:{port}"

    def outage(body):
        kill_server(server["handle"])
        return text("I could not read the traces: 7 trace id(s) not found in experiment 1.")

    try:
        b.fake.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
        b.fake.script(outage, match=WORKER)
        env = b.env(uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        run = run_cli(b.args("outage", "--max-attempts", "1"), env)
        stopped = run.code == 1 and "tracking store kept failing" in run.stdout and clean(run)
        charged = statuses(b.session("outage")) != {"notes": ("pending", 0), "validate": ("pending", 0)}
        server["handle"] = start_mlflow_server(f"sqlite:///{b.db}", artifacts, b.db.parent / "server2.log", timeout_s=120, port=port)
        b.fake.script(*complete("notes"), *fail_validate(), match=WORKER)
        again = run_cli(b.args("outage", "--max-attempts", "1"), env)
        done = statuses(b.session("outage")) == {"notes": ("completed", 1), "validate": ("failed", 1)}
        return Outcome(stopped and not charged and done and clean(again), note="stopped, nothing charged; resume finished")
    finally:
        if server["handle"].process.poll() is None:
            kill_server(server["handle"])


def concurrent_run(b: Bench) -> Outcome:
    started, release = threading.Event(), threading.Event()

    def blocking(body):
        started.set()
        release.wait(90)
        return complete("notes")[0]

    b.fake.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    b.fake.script(blocking, text("done"), *fail_validate(), match=WORKER)
    env = b.env(API_TIMEOUT_MS="600000")  # the held request must outlast the second run's start-up
    first = b.popen(b.args("twice", "--max-attempts", "1"), env)
    try:
        if not started.wait(180):
            return Outcome(False, note="the first run never reached its worker")
        before = len(b.fake.sessions())
        second = run_cli(b.args("twice"), env)
        no_spend = len(b.fake.sessions()) == before
    finally:
        release.set()
        first.communicate(timeout=180)
    ok = second.code == 2 and one_line(second, "already running", f"pid {first.pid}") and no_spend
    done = statuses(b.session("twice")) == {"notes": ("completed", 1), "validate": ("failed", 1)}
    if not (ok and done):
        return Outcome(False, note=f"second exit {second.code} ({second.stderr.strip()[-160:]}), no spend {no_spend}, first {statuses(b.session('twice'))}")
    return Outcome(True, note="second run: exit 2, one line naming the holder")


def reserved_names(b: Bench) -> Outcome:
    b.fake.script(tool_use("mcp__eval__write_artifact", {"path": "state", "content": "x"}),
                  tool_use("mcp__eval__write_artifact", {"path": "evaluation/x.py", "content": "x"}),
                  tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    b.fake.script(*complete("notes"), *fail_validate(), match=WORKER)
    run = run_cli(b.args("reserved", "--max-attempts", "1"), b.env())
    results = [r for req in b.fake.main_requests() for r in tool_results_in(req, latest_only=True)]
    refused = [r.is_error and "reserved" in r.text for r in results[:2]] == [True, True]
    done = statuses(b.session("reserved")).get("notes") == ("completed", 1)
    return Outcome(run.code == 1 and clean(run) and refused and done and "FileExistsError" not in run.output, note="refused with a sentence")


def oversized_input(b: Bench) -> Outcome:
    b.fake.script(tool_use("mcp__eval__write_artifact", {"path": "notes/big.md", "content": "y" * (1024 * 1024 + 4096)}),
                  tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    b.fake.script(*complete("notes"), *fail_validate(), match=WORKER)
    run = run_cli(b.args("big", "--max-attempts", "1"), b.env())
    results = [r for req in b.fake.main_requests() for r in tool_results_in(req, latest_only=True)]
    refused = bool(results) and results[0].is_error and "over the limit" in results[0].text
    return Outcome(run.code == 1 and clean(run) and refused and statuses(b.session("big")).get("notes") == ("completed", 1),
                   note="1 MiB+ input refused, the session went on")


def _normal_run(b: Bench, name: str, env: dict[str, str] | None = None, *extra: str) -> CliRun:
    b.fake.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    b.fake.script(*complete("notes"), *fail_validate(), match=WORKER)
    return run_cli(b.args(name, "--max-attempts", "1", *extra), env or b.env())


def bad_entries(b: Bench) -> Outcome:
    session = b.session("entries")
    (session / "state" / "sessions.json").mkdir(parents=True)
    (session / "evaluation").write_text("a file")
    outside = b.root / "outside"
    outside.mkdir(exist_ok=True)
    (session / "link").symlink_to(outside)
    run = _normal_run(b, "entries")
    ok = run.code == 1 and clean(run) and "kept aside" in run.stdout and "not a file" in run.stdout
    return Outcome(ok and statuses(session).get("notes") == ("completed", 1) and not list(outside.iterdir()),
                   note="sessions.json a folder, 'evaluation' a file, a symlink out: set aside / skipped")


def disk_full(b: Bench) -> Outcome:
    run = _normal_run(b, "full", b.env(EVAL_AGENT_FAULT="ENOSPC:14", PYTHONPATH=FAULTS_PATH))
    stopped = run.code == 1 and one_line(run, "no space left")
    before = {k for k, v in statuses(b.session("full")).items() if v[0] == "completed"}
    b.fake.script(*complete("notes"), *fail_validate(), match=WORKER)
    b.fake.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
    again = run_cli(b.args("full", "--max-attempts", "1"), b.env())
    after = statuses(b.session("full"))
    lost = len([k for k in before if after.get(k, ("", 0))[0] != "completed"])
    return Outcome(stopped and clean(again) and after.get("notes", ("", 0))[0] == "completed", lost, "one line, exit 1; resume finished")


def read_only(b: Bench) -> Outcome:
    run = _normal_run(b, "ro", b.env(EVAL_AGENT_FAULT="EROFS:1", PYTHONPATH=FAULTS_PATH))
    return Outcome(run.code == 2 and one_line(run, "not writable"), note="one line, exit 2")


def volume_path(kind: str) -> Callable[[Bench], Outcome]:
    def fault(b: Bench) -> Outcome:
        target = Path("/proc/eval-agent-bench") if kind == "proc" else b.root / "a-file"
        if kind == "file":
            target.write_text("x")
        run = run_cli(["-a", "-e", b.experiment_id, "--volume-path", str(target)], b.env())
        return Outcome(run.code == 2 and one_line(run, "Cannot keep sessions under") and not b.fake.main_requests(), note="one line, exit 2")

    return fault


def stopped_by(sig: signal.Signals) -> Callable[[Bench], Outcome]:
    def fault(b: Bench) -> Outcome:
        started, release = threading.Event(), threading.Event()

        def blocking(body):
            started.set()
            release.wait(90)
            return text("too late")

        name = f"sig-{sig.name.lower()}"
        b.fake.script(tool_use("mcp__eval__write_plan", PLAN_THREE), text("Plan saved."), match=INITIALIZER)
        b.fake.script(*complete("first"), blocking, match=WORKER)
        proc = b.popen(b.args(name), b.env())
        try:
            if not started.wait(180):
                return Outcome(False, note="the second worker never started")
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(sig)
            output, _ = proc.communicate(timeout=120)
        finally:
            release.set()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        st = statuses(b.session(name))
        if sig == signal.SIGKILL:
            stop_ok = st.get("second") == ("in_progress", 1)
        else:
            stop_ok = (proc.returncode == 128 + sig and "Interrupted" in output and "State is saved" in output
                       and "Traceback" not in output and st.get("second") == ("pending", 0))
        before = len(b.fake.sessions())
        b.fake.script(*complete("second"), *fail_validate(), match=WORKER)
        again = run_cli(b.args(name, "--max-attempts", "1"), b.env())
        resumed = list(b.fake.sessions().values())[before:]
        redone = sum('"id": "first"' in reqs[0].last_user_text() for reqs in resumed)
        final = statuses(b.session(name))
        lost = int(final.get("first", ("", 0))[0] != "completed") + redone
        ok = stop_ok and clean(again) and final.get("second") == ("completed", 1)
        return Outcome(ok, lost, f"exit {proc.returncode}; resume finished")

    return fault


def corrupt_plan(kind: str) -> Callable[[Bench], Outcome]:
    def fault(b: Bench) -> Outcome:
        name = f"plan-{kind}"
        b.fake.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
        b.fake.script(*complete("notes"), match=WORKER)
        first = run_cli(b.args(name, "--max-iterations", "2"), b.env())
        plan_file = b.session(name) / "eval_tasks.json"
        plan_file.write_text(plan_file.read_text()[:40] if kind == "truncated" else '{"tasks": "not a list"}')
        before = len(b.fake.sessions())
        b.fake.script(*fail_validate(), match=WORKER)
        b.fake.script(tool_use("mcp__eval__write_plan", PLAN_TWO), text("Plan saved."), match=INITIALIZER)
        again = run_cli(b.args(name, "--max-iterations", "5", "--max-attempts", "1"), b.env())
        resumed = list(b.fake.sessions().values())[before:]
        # Redone: a worker prompt for the completed task, or a re-plan (the initializer's prompt names write_plan).
        redone = sum('"id": "notes"' in reqs[0].last_user_text() or "write_plan" in reqs[0].last_user_text() for reqs in resumed)
        ok = first.code == 3 and clean(again) and "Restored the last good plan" in again.stdout
        return Outcome(ok and statuses(b.session(name)).get("notes") == ("completed", 1), redone, "set aside, restored; nothing redone")

    return fault


def empty_experiment(b: Bench) -> Outcome:
    run = run_cli(["-a", "-e", b.empty_experiment, "--volume-path", str(b.volume)], b.env())
    return Outcome(run.code == 2 and one_line(run, "has no traces") and not b.fake.main_requests(), note="refused before any session")


def unreachable(command: str) -> Callable[[Bench], Outcome]:
    def fault(b: Bench) -> Outcome:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ["analyze", "-e", "1"] if command == "analyze" else ["-a", "-e", "1", "--volume-path", str(b.volume)]
        t0 = time.time()
        run = run_cli(args, b.env(f"http://127.0.0.1:{port}"))
        took = time.time() - t0
        return Outcome(run.code == 2 and one_line(run, "Cannot reach") and took < 60, note=f"exit 2 in {took:.0f}s")

    return fault


def offline_resume(b: Bench) -> Outcome:
    """Offline: a corrupt plan is set aside and restored; a hand edit survives a rebuild."""
    from rich.console import Console

    from mlflow_eval_agent.runner import run_autonomous
    from mlflow_eval_agent.settings import resolve_settings

    env = {"MLFLOW_TRACKING_URI": b.uri}
    settings = resolve_settings({"experiment_id": b.experiment_id, "tracking_uri": b.uri, "volume_path": str(b.volume),
                                 "offline": True, "session_id": "offline"}, env=env)
    session = b.session("offline")

    def run() -> tuple[int, str]:
        out = io.StringIO()
        return run_autonomous(settings, Console(file=out, width=200)), out.getvalue()

    code, _ = run()
    if code != 0 or not (session / "evaluation" / "scorers.py").is_file():
        return Outcome(False, note=f"first offline run exited {code}")
    (session / "eval_tasks.json").write_text("{\"tasks\": [")
    code2, out2 = run()
    restored = code2 == 0 and "Restored the last good plan" in out2 and "nothing is redone" in out2
    scorers = session / "evaluation" / "scorers.py"
    edited = scorers.read_text() + "\n# hand-tuned\n"
    scorers.write_text(edited)
    (session / "eval_tasks.json").unlink()
    (session / "state" / "plan.last-good.json").unlink()
    code3, out3 = run()
    kept = scorers.read_text() == edited and "Kept your edits to evaluation/scorers.py" in out3
    return Outcome(restored and kept and code3 == 0, note="corrupt plan restored; edit kept, new render as .new")


MATRIX: dict[str, Callable[[Bench], Outcome]] = {
    "tracking store outage (server killed mid-task)": store_outage,
    "two runs on one --session-id": concurrent_run,
    "write_artifact state / evaluation/": reserved_names,
    "tool input over 1 MiB": oversized_input,
    "sessions.json a folder, bad entry, symlink out": bad_entries,
    "disk full (ENOSPC)": disk_full,
    "read-only session folder (EROFS)": read_only,
    "--volume-path under /proc": volume_path("proc"),
    "--volume-path on a file": volume_path("file"),
    "SIGTERM mid-task": stopped_by(signal.SIGTERM),
    "SIGHUP mid-task": stopped_by(signal.SIGHUP),
    "Ctrl-C mid-task": stopped_by(signal.SIGINT),
    "kill -9 mid-task": stopped_by(signal.SIGKILL),
    "truncated eval_tasks.json": corrupt_plan("truncated"),
    "wrong-schema eval_tasks.json": corrupt_plan("schema"),
    "empty experiment": empty_experiment,
    "analyze, unreachable server": unreachable("analyze"),
    "-a, unreachable server": unreachable("run"),
    "offline resume: corrupt plan, hand edit": offline_resume,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only faults whose name contains one of these words")
    ns = parser.parse_args(argv)
    chosen = {k: v for k, v in MATRIX.items() if not ns.only or any(w.lower() in k.lower() for w in ns.only)}
    root = Path(tempfile.mkdtemp(prefix="faults-bench-"))
    bench = Bench(root)
    rows = []
    try:
        for name, fault in chosen.items():
            row = bench.measure(name, fault)
            rows.append(row)
            o = row.outcome
            print(f"{'survived' if o.survived else 'FAILED  '} | work lost {o.work_lost} | leaked {len(row.leaked)}"
                  f"{' ' + ', '.join(row.leaked[:2]) if row.leaked else ''} | outside writes {len(row.outside)}"
                  f"{' ' + ', '.join(row.outside[:2]) if row.outside else ''} | {row.seconds:5.1f}s | {name}: {o.note}", flush=True)
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    good = sum(r.ok for r in rows)
    print(f"total: {good}/{len(rows)} survived with no work lost, nothing leaked, no outside writes")
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A warm least-privilege child: `run_child`'s guarantees, without paying MLflow's imports every time.

Validating a suite runs `run_eval.py` in a fresh child (`child.py`); of a 40-trace code-only
validation, most of the time was the child importing mlflow, sqlalchemy and the Databricks SDK, again
for every validation of the same session. `WarmChild` starts one child exactly as `run_child` does
(allow-listed environment, private HOME/TMPDIR/working folder, its own process group; the resource
limits are set in each fork, as child.py's launcher sets them) that imports those modules once and then *forks* a fresh process
per run: each run gets a new process (its own CPU-time limit count, module state, exit code, process
killed on timeout; the whole group, forks included, when the warm child is closed) that starts with the imports done. Nothing is sent to it but the argument
list of our own rendered script and two output paths; it never runs text from a model or a trace.

Used by `suite/validate.py` for repeated validations (one warm child per interpreter and
environment, closed at exit); when forking is not possible (no `os.fork`, or the warm child started
threads) a run falls back to `run_child`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .child import APPLY_LIMITS, POLL_S, ChildResult, Limits, _kill_group, _private_folder, _read, _tail, run_child

# Imported once in the warm child: what every run_eval.py run imports before it evaluates anything.
PRELOAD = ("mlflow", "mlflow.genai", "mlflow.genai.scorers", "mlflow.store.tracking.sqlalchemy_store", "databricks.sdk", "pandas")
START_TIMEOUT_S = 120.0

_SERVER = APPLY_LIMITS + r"""
import importlib, json, os, runpy, sys, threading, traceback
def die_with_parent():  # Linux PR_SET_PDEATHSIG: a killed parent leaves no warm child (nor its forks)
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)
    except Exception:
        pass
die_with_parent()
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
print(json.dumps({"ready": threading.active_count() == 1}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        die_with_parent()
        apply_limits(request["rlimits"])  # this run's limits, as child.py's launcher sets them
        for fd, path in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_RDONLY) if fd == 0 else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        code = 0
        try:
            os.chdir(request["cwd"])
            sys.argv = list(request["argv"])
            sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class WarmChild:
    """One warm child for `python` and `env` (see the module docstring); `run` is `run_child`'s twin."""

    def __init__(self, env: Mapping[str, str], *, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._folder_cm = _private_folder()
        self.folder = self._folder_cm.__enter__()
        child_env = {**env, "TMPDIR": str(self.folder / "tmp"), "TEMP": str(self.folder / "tmp"), "TMP": str(self.folder / "tmp")}
        child_env.setdefault("HOME", str(self.folder / "home"))
        # Unlimited itself (it only imports and forks): each fork sets its own run's limits.
        cmd = [self.python, "-c", _SERVER, ",".join(PRELOAD)]
        self._log = open(self.folder / "server.err", "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=child_env,
                                     cwd=str(self.folder / "work"), start_new_session=True, bufsize=0)
        self._buffer = b""
        self._lock = threading.Lock()
        ready = self._message(time.monotonic() + START_TIMEOUT_S)
        self.usable = bool(ready and ready.get("ready"))

    def run(self, args: Sequence[str], *, timeout_s: float, limits: Limits | None = None, cwd: str | Path | None = None,
            on_poll: Callable[[str], None] | None = None) -> ChildResult:
        """`python <script.py> <args>` in a fresh fork of the warm child; the same result as `run_child`.
        Only a script file runs here (the suite's own rendered run_eval.py), never code given as text."""
        if not args or Path(args[0]).suffix != ".py" or not Path(args[0]).is_file():
            raise ValueError(f"the warm child runs a Python script file, not {list(args[:1])}: pass the rendered run_eval.py")
        with self._lock:
            run_folder = Path(tempfile.mkdtemp(prefix="run-", dir=self.folder / "tmp"))
            out_path, err_path = run_folder / "stdout", run_folder / "stderr"
            out_path.touch()
            err_path.touch()
            started = time.monotonic()
            deadline = started + timeout_s
            request = {"argv": list(args), "rlimits": limits.rlimits() if limits is not None else [], "cwd": str(cwd or self.folder / "work"), "stdout": str(out_path), "stderr": str(err_path)}
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
                forked = self._message(deadline)
                code = self._wait(int(forked["pid"]), deadline, err_path, on_poll) if forked and "pid" in forked else 1
            except (OSError, ValueError, TypeError):
                self.usable = False
                code = 1
            result = ChildResult(code, _read(out_path), _read(err_path), time.monotonic() - started)
            shutil.rmtree(run_folder, ignore_errors=True)
            return result

    def _wait(self, pid: int, deadline: float, err_path: Path, on_poll: Callable[[str], None] | None) -> int | None:
        while True:
            done = self._message(min(deadline, time.monotonic() + POLL_S))
            if done is not None:
                return int(done["status"])
            if self.proc.poll() is not None:  # the warm child itself died: not reusable
                self.usable = False
                return self.proc.returncode
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                self._message(time.monotonic() + 30)  # its status, so the next run starts clean
                return None
            if on_poll is not None:
                with contextlib.suppress(Exception):
                    on_poll(_tail(err_path))

    def _message(self, deadline: float) -> dict | None:
        """The warm child's next line (a JSON object), or None at the deadline or its end."""
        import select

        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.usable = False
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        _kill_group(self.proc)
        self._log.close()
        self._folder_cm.__exit__(None, None, None)


_WARM: dict[tuple, WarmChild] = {}


def run_warm(args: Sequence[str], *, timeout_s: float, env: Mapping[str, str], limits: Limits | None,
             python: str | None = None, on_poll: Callable[[str], None] | None = None) -> ChildResult:
    """Like `run_child`, in the warm child for this interpreter and environment (started on
    first use, closed at exit); a cold `run_child` where forking is not possible."""
    key = (python or sys.executable, tuple(sorted(env.items())))
    warm = _WARM.get(key)
    if warm is None and hasattr(os, "fork"):
        warm = _WARM[key] = WarmChild(env, python=python)
    if warm is None or not warm.usable:
        return run_child(args, timeout_s=timeout_s, env=env, limits=limits, python=python, on_poll=on_poll)
    result = warm.run(args, timeout_s=timeout_s, limits=limits, on_poll=on_poll)
    if not warm.usable:  # it died under this run: the next one starts a new warm child
        _WARM.pop(key, None)
        warm.close()
    return result


@atexit.register
def close_all() -> None:
    while _WARM:
        _, warm = _WARM.popitem()
        warm.close()

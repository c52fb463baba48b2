"""The private folder Claude Code runs in, and the launcher that ties the CLI's life to ours.

- One folder per run (`<tmp>/eval-agent-claude-<pid>-<random>`): the CLI's config
  (CLAUDE_CONFIG_DIR), and its HOME, XDG cache/config/data/state and TMPDIR, so nothing it writes
  (transcripts, `~/.cache/claude-cli-nodejs/.../mcp-logs-*`) lands outside. It is removed on every
  exit path; a folder whose owning process is dead (a kill -9) is removed by the next run's start.
- The launcher: the SDK starts `cli_path`, which is a tiny standard-library Python script that
  moves the CLI into its own process group and session (a terminal's Ctrl-C reaches only us; we stop
  the CLI ourselves), asks the kernel to SIGKILL it when this process dies (PR_SET_PDEATHSIG, so a
  kill -9 of the run does not leave it running), records its group and execs the real CLI. After
  each session the group is killed, so nothing the CLI started outlives the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .store.lock import _process_start, process_alive

PREFIX = "eval-agent-claude-"
OWNER_FILE = "owner.json"
LAUNCHER = "claude-launcher"
GROUPS_FILE = "process-groups"
PRIVATE_SUBDIRS = {"HOME": "home", "XDG_CACHE_HOME": "home/.cache", "XDG_CONFIG_HOME": "home/.config",
                   "XDG_DATA_HOME": "home/.local/share", "XDG_STATE_HOME": "home/.local/state", "TMPDIR": "tmp"}

_LAUNCHER_CODE = '''import ctypes, os, signal, sys
os.setsid()
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != {parent}:
    os._exit(70)  # the run died before we were tied to it
with open({groups!r}, "a") as f:
    f.write(str(os.getpid()) + "\\n")
os.execv({real!r}, [{real!r}] + sys.argv[1:])
'''


def private_env(config_dir: Path) -> dict[str, str]:
    """HOME, XDG folders and TMPDIR inside the private folder (created here)."""
    env = {}
    for name, rel in PRIVATE_SUBDIRS.items():
        path = config_dir / rel
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    return env


def bundled_cli() -> Path | None:
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return path if path.is_file() else None


def launcher(config_dir: Path) -> Path | None:
    """The launcher script for the bundled CLI (None on platforms without it: the SDK's default)."""
    real = bundled_cli()
    if real is None or not sys.platform.startswith("linux"):
        return None
    script = config_dir / LAUNCHER
    code = _LAUNCHER_CODE.format(parent=os.getpid(), groups=str(config_dir / GROUPS_FILE), real=str(real))
    text = f"#!{sys.executable} -IS\n{code}"  # one shebang argument: -I -S combined
    if not script.is_file() or script.read_text() != text:
        script.write_text(text)
        script.chmod(0o700)
    return script


def kill_children(config_dir: Path) -> int:
    """Kill every process group the launcher recorded (what a session's CLI left running)."""
    groups_file = config_dir / GROUPS_FILE
    try:
        groups = {int(x) for x in groups_file.read_text().split() if x.strip().isdigit()}
    except OSError:
        return 0
    killed = 0
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed += 1
    with contextlib.suppress(OSError):
        groups_file.unlink()
    return killed


def _owner_alive(folder: Path) -> bool | None:
    """True/False for our folders (pid in the name and owner.json), None for anything else."""
    rest = folder.name.removeprefix(PREFIX)
    pid_text = rest.split("-", 1)[0]
    if not pid_text.isdigit():
        return None
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        owner = {}
    return process_alive(int(pid_text), owner.get("pid_started"))


def remove_stale(tmp_root: Path | None = None) -> list[str]:
    """Remove private folders left by runs whose process is dead; returns their names."""
    root = Path(tmp_root or tempfile.gettempdir())
    removed = []
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    for folder in candidates:
        if _owner_alive(folder) is False:
            kill_children(folder)
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder.name)
    return removed


@contextlib.contextmanager
def private_folder(fixed: str | None = None) -> Iterator[Path]:
    """A private, writable folder for Claude Code, removed on the way out (a `fixed` one is kept)."""
    if fixed:
        path = Path(fixed)
        path.mkdir(parents=True, exist_ok=True)
        try:
            yield path
        finally:
            kill_children(path)
        return
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    try:
        (path / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "pid_started": _process_start(os.getpid())}))
        yield path
    finally:
        kill_children(path)
        shutil.rmtree(path, ignore_errors=True)

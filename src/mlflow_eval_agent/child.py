"""Child processes with least privilege: how we run Python on the agent's behalf.

Every child that evaluates checks or runs a suite (`suite/validate.py` running `run_eval.py`, the
benchmarks) starts through `run_child`, with an environment from `child_env`:

**Environment** (`child_env`), an allow-list, never a copy with things removed:
- what Python needs to start and find its packages: PATH, LANG/LANGUAGE/LC_*, TZ, VIRTUAL_ENV,
  PYTHONPATH, PYTHONHOME, LD_LIBRARY_PATH, SYSTEMROOT, USER/LOGNAME, and PYTHONUSERBASE pointing at
  the real `~/.local` when packages are installed there (HOME is private, see below);
- quiet flags: no telemetry, synchronous trace logging, litellm's local price list, unbuffered output;
- MLFLOW_TRACKING_URI (a relative sqlite/file path made absolute: the child's folder is private),
  and the tracking store's own settings only for the scheme that needs them:
  sqlite, file paths and other database URIs: nothing more;
  http(s): MLFLOW_TRACKING_TOKEN/USERNAME/PASSWORD/AUTH/INSECURE_TLS/SERVER_CERT_PATH/
  CLIENT_CERT_PATH/AWS_SIGV4 when set (username/password also from `~/.mlflow/credentials`), the AWS
  credential chain only when MLFLOW_TRACKING_AWS_SIGV4 is on, proxy and CA-bundle settings;
  `databricks` / `databricks://<profile>`: DATABRICKS_HOST plus the one credential in use
  (DATABRICKS_TOKEN, else DATABRICKS_CLIENT_ID/SECRET, else for `databricks` a short-lived token
  derived from our own SDK config by `databricks.child_credential` - on serverless compute the
  runtime's auth does not reach a child -, else the profile: DATABRICKS_CONFIG_PROFILE with
  DATABRICKS_CONFIG_FILE naming the real config file), DATABRICKS_RUNTIME_VERSION,
  MLFLOW_TRACING_SQL_WAREHOUSE_ID, proxy and CA-bundle settings.
- Nothing else: no ANTHROPIC_*/CLAUDE_*, OPENAI_*, AWS_*, GOOGLE_*, AZURE_*, no unrelated secrets.
  A caller passes more only explicitly, in `extra` (`validate --pass-env NAME` does, for judges).

**Files**: a private temporary folder is the child's HOME, TMPDIR/TEMP/TMP and (unless the caller
names one) its working directory; it holds the captured output too and is removed afterwards. So
nothing is read from `~/.netrc`, `~/.aws`, `~/.databrickscfg` unless named above, and nothing is
left behind. (Same user, so this is not a file-system sandbox: it keeps credentials out by default.)
An explicit HOME in `extra` (`--pass-env HOME`) is kept, e.g. for Databricks U2M login's token cache.

**Processes**: the child leads a new session (process group): on timeout, on our own exit or
Ctrl-C, and after the child exits, the whole group is killed, so no grandchild outlives the run.

**Resource limits** (`Limits`), set by a tiny launcher that applies them and then execs the real
interpreter (thread-safe, unlike `preexec_fn`; the parent runs threads). Each is clamped to the
parent's own hard limit; with no `resource` module (Windows) the child runs without them.
The defaults are sized for `run_eval.py`, measured on mlflow 3.17 / Python 3.11, 2 cores, sqlite:
code scorers on 2,000 demo traces took 87 s CPU (180 s wall), 720 MB resident, 1.8 GB of private
writable memory (VmData), 2.9 GB of address space (VmSize), 38 threads; with three judges (a fake
OpenAI endpoint) on 500 traces 47 s CPU, 570 MB resident, 1.85 GB VmData, 50 threads. Below
~2 GiB of RLIMIT_DATA it fails ("can't start new thread"). Callers can tighten any limit.
- RLIMIT_CPU, `cpu_s` = 1800 s (SIGXCPU; SIGKILL 10 s later): 20x the measured run; `limits_for`
  raises it to twice the wall-clock timeout, so a long legitimate run stops by its timeout first.
- RLIMIT_DATA on Linux (RLIMIT_AS elsewhere), `memory_bytes` = 8 GiB: ~4x the measured 1.85 GB,
  room for more threads on bigger machines. RLIMIT_DATA counts private writable memory (heap,
  anonymous maps, thread stacks), which tracks real use; RLIMIT_AS also counts each thread's
  reserved malloc arena (64 MB, up to 8 per core) and would grow with the core count.
- RLIMIT_FSIZE, `file_bytes` = 1 GiB for any single file written (results JSON, artifacts, the
  captured output). The child writes assessments into a local sqlite store, so `limits_for`
  raises it to twice that database's size plus 1 GiB: below the database's size every write fails.
- RLIMIT_NPROC, `processes` = 512 more than the user already runs (threads count; measured 50):
  best effort, the kernel counts all of the user's processes and threads, and root is exempt.
- RLIMIT_CORE 0: no core dumps of a process that may hold tokens.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

try:
    import resource
except ImportError:  # Windows: no rlimits
    resource = None  # type: ignore[assignment]

GiB = 1024**3
MiB = 1024**2

# What Python needs to start and find its packages; nothing here authenticates anything.
_PYTHON_EXACT = (
    "PATH", "LANG", "LANGUAGE", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE",
    "LD_LIBRARY_PATH", "SYSTEMROOT", "USER", "LOGNAME",
)
_PYTHON_PREFIXES = ("LC_",)
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# How to reach a remote store through the network the user configured.
_NETWORK = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
)
# MLflow's own settings for an http(s) tracking server (mlflow.utils.credentials).
_MLFLOW_SERVER = (
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_AWS_SIGV4",
)
# The AWS credential chain, for MLflow's SigV4 signing of tracking requests only.
_AWS_SIGV4 = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)
_DATABRICKS_ALWAYS = ("DATABRICKS_RUNTIME_VERSION", "MLFLOW_TRACING_SQL_WAREHOUSE_ID")
_TRUE = ("1", "true", "yes", "on")
OUTPUT_CAP = 8 * MiB  # most of each captured stream we read back (the end is kept)
CPU_GRACE_S = 10  # SIGXCPU at the soft CPU limit, SIGKILL this much later


# --- environment -------------------------------------------------------------------------------
def child_env(
    tracking_uri: str | None,
    *,
    base: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> dict[str, str]:
    """The allow-listed environment for a child that uses this tracking store (None: no store);
    `extra` is the caller's explicit choice and is passed as given. Relative store paths are
    resolved against `cwd` (default: ours)."""
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in _PYTHON_EXACT or k.startswith(_PYTHON_PREFIXES)}
    env.update(_user_base(base))
    env.update(QUIET)
    if tracking_uri:
        uri = absolute_tracking_uri(tracking_uri, cwd)
        env["MLFLOW_TRACKING_URI"] = uri
        env.update(store_settings(uri, _with_derived_credential(uri, base)))
    env.update(extra or {})
    return env


def _with_derived_credential(tracking_uri: str, base: Mapping[str, str]) -> Mapping[str, str]:
    """For the workspace's store, `base` plus a short-lived credential derived from our own Databricks
    config when `base` carries none (serverless compute: the runtime's auth does not reach a child)."""
    if _scheme(tracking_uri) != "databricks":
        return base
    from .databricks import with_child_credential

    return with_child_credential(tracking_uri, base)


def store_settings(tracking_uri: str, base: Mapping[str, str]) -> dict[str, str]:
    """The variables this tracking store needs, taken from `base`: only its scheme's own."""
    scheme = _scheme(tracking_uri)
    if scheme in ("http", "https"):
        return _http_settings(base)
    if scheme == "databricks":
        return _databricks_settings(tracking_uri, base)
    return {}  # sqlite, file paths, database URIs (their credentials live in the URI itself)


def absolute_tracking_uri(tracking_uri: str, cwd: str | Path | None = None) -> str:
    """A sqlite or file-store URI with its relative path made absolute; other URIs unchanged."""
    here = Path(cwd or os.getcwd())
    scheme = _scheme(tracking_uri)
    if scheme == "sqlite":
        prefix = "sqlite:///"
        path = tracking_uri[len(prefix):] if tracking_uri.startswith(prefix) else ""
        if not path or path.startswith("/") or path == ":memory:" or path.startswith("file:"):
            return tracking_uri
        return prefix + str(here / path)
    if scheme == "file":
        path = tracking_uri[len("file:"):]
        if path.startswith("/"):
            return tracking_uri
        return (here / path).resolve().as_uri()
    if scheme == "":
        return str((here / tracking_uri).resolve())
    return tracking_uri


def _scheme(uri: str) -> str:
    if uri.strip().lower() == "databricks":  # MLflow's bare name for the workspace's store
        return "databricks"
    scheme = urlparse(uri).scheme.lower()
    return "" if len(scheme) == 1 else scheme  # C:\path is a Windows path, not a scheme


def _pick(base: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    return {n: base[n] for n in names if base.get(n)}


def _home(base: Mapping[str, str]) -> Path:
    return Path(base.get("HOME") or os.path.expanduser("~"))


def _user_base(base: Mapping[str, str]) -> dict[str, str]:
    """PYTHONUSERBASE at the real ~/.local when packages are installed there (HOME will be private)."""
    if base.get("PYTHONUSERBASE"):
        return {}
    local = _home(base) / ".local"
    return {"PYTHONUSERBASE": str(local)} if any(local.glob("lib/python*/site-packages")) else {}


def _http_settings(base: Mapping[str, str]) -> dict[str, str]:
    env = _pick(base, (*_MLFLOW_SERVER, *_NETWORK))
    if not (env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD")):
        env.update(_mlflow_credentials_file(_home(base) / ".mlflow" / "credentials", env))
    if str(env.get("MLFLOW_TRACKING_AWS_SIGV4", "")).lower() in _TRUE:
        env.update(_pick(base, _AWS_SIGV4))
        for name, file in (("AWS_CONFIG_FILE", "config"), ("AWS_SHARED_CREDENTIALS_FILE", "credentials")):
            path = _home(base) / ".aws" / file
            if name not in env and path.is_file():
                env[name] = str(path)
    return env


def _mlflow_credentials_file(path: Path, have: Mapping[str, str]) -> dict[str, str]:
    """Username and password from MLflow's `~/.mlflow/credentials` (the child cannot see our HOME)."""
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    section = parser["mlflow"] if parser.has_section("mlflow") else {}
    found = {}
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        value = section.get(name.lower())
        if value and not have.get(name):
            found[name] = value
    return found


def _databricks_settings(tracking_uri: str, base: Mapping[str, str]) -> dict[str, str]:
    env = _pick(base, (*_DATABRICKS_ALWAYS, *_NETWORK))
    target = urlparse(tracking_uri).netloc
    if target and ":" not in target:  # databricks://<profile>: the profile alone decides
        return env | _config_file(base)
    if target:  # databricks://<scope>:<prefix>: a secret scope, read through the runtime
        return env | _pick(base, ("DATABRICKS_HOST",))
    env |= _pick(base, ("DATABRICKS_HOST",))
    if base.get("DATABRICKS_TOKEN"):
        return env | _pick(base, ("DATABRICKS_TOKEN",))
    if base.get("DATABRICKS_CLIENT_ID") and base.get("DATABRICKS_CLIENT_SECRET"):
        return env | _pick(base, ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"))
    return env | _pick(base, ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_AUTH_TYPE")) | _config_file(base)


def _config_file(base: Mapping[str, str]) -> dict[str, str]:
    """DATABRICKS_CONFIG_FILE naming the real config file (the child's HOME is private)."""
    path = Path(base.get("DATABRICKS_CONFIG_FILE") or _home(base) / ".databrickscfg").expanduser()
    return {"DATABRICKS_CONFIG_FILE": str(path)} if path.is_file() else {}


# --- limits ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """Resource limits for one child (None: not limited); see the module docstring for the sizes."""

    cpu_s: int | None = 1800
    memory_bytes: int | None = 8 * GiB
    file_bytes: int | None = 1 * GiB
    processes: int | None = 512  # more than the user already runs

    def rlimits(self) -> list[tuple[str, int, int]]:
        """(RLIMIT name, soft, hard) for this platform; RLIMIT_CORE is always 0."""
        if resource is None:
            return []
        wanted = [("RLIMIT_CORE", 0, 0)]
        if self.cpu_s is not None:
            wanted.append(("RLIMIT_CPU", self.cpu_s, self.cpu_s + CPU_GRACE_S))
        if self.memory_bytes is not None:
            memory = "RLIMIT_DATA" if sys.platform.startswith("linux") else "RLIMIT_AS"
            wanted.append((memory, self.memory_bytes, self.memory_bytes))
        if self.file_bytes is not None:
            wanted.append(("RLIMIT_FSIZE", self.file_bytes, self.file_bytes))
        if self.processes is not None:
            running = _user_tasks()
            if running is not None:
                wanted.append(("RLIMIT_NPROC", running + self.processes, running + self.processes))
        return [w for w in wanted if hasattr(resource, w[0])]


DEFAULT_LIMITS = Limits()


def limits_for(tracking_uri: str | None, *, timeout_s: float, limits: Limits = DEFAULT_LIMITS, cwd: str | Path | None = None) -> Limits:
    """`limits` fitted to a run: CPU at least twice the wall-clock timeout, and the file-size
    limit above a local sqlite store's size (the child writes assessments into it)."""
    cpu = None if limits.cpu_s is None else max(limits.cpu_s, int(2 * timeout_s))
    size = limits.file_bytes
    database = _sqlite_file(tracking_uri, cwd)
    if size is not None and database is not None and database.is_file():
        size = max(size, 2 * database.stat().st_size + GiB)
    return replace(limits, cpu_s=cpu, file_bytes=size)


def _sqlite_file(tracking_uri: str | None, cwd: str | Path | None) -> Path | None:
    if not tracking_uri or _scheme(tracking_uri) != "sqlite":
        return None
    uri = absolute_tracking_uri(tracking_uri, cwd)
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:////") else None


def _user_tasks() -> int | None:
    """Processes and threads of our real uid (what RLIMIT_NPROC counts), None when unknown."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    uid, total = os.getuid(), 0
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in Path(entry.path, "status").read_text().splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total


# Sets [(RLIMIT name, soft, hard), ...], each clamped to the hard limit we have: the launcher below
# and warm_child.py's forks both run it.
APPLY_LIMITS = """
import resource, sys
def apply_limits(items):
    for name, soft, hard in items:
        which = getattr(resource, name)
        _, have = resource.getrlimit(which)
        if have != resource.RLIM_INFINITY:
            hard = min(hard, have)
            soft = min(soft, hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError) as exc:
            sys.stderr.write("note: %s not applied: %s\\n" % (name, exc))
"""

# Runs first in the child: apply the limits, then become the real interpreter. -I -S keeps it to
# the standard library and ignores the environment.
_LAUNCHER = APPLY_LIMITS + """
import os
apply_limits([(n, int(soft), int(hard)) for n, soft, hard in (item.split(":") for item in filter(None, sys.argv[1].split(",")))])
os.execvp(sys.argv[2], sys.argv[2:])
"""


# --- running -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChildResult:
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

    def exit_reason(self) -> str:
        """How it ended, in a few words: "exited with code 1", "hit its CPU time limit", ..."""
        code = self.returncode
        if code is None:
            return f"timed out after {self.seconds:.0f} s"
        if code >= 0:
            return f"exited with code {code}"
        if code == -getattr(signal, "SIGXCPU", 0):
            return "hit its CPU time limit (SIGXCPU)"
        if code == -getattr(signal, "SIGXFSZ", 0):
            return "hit its file size limit (SIGXFSZ)"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"


def run_child(
    args: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    limits: Limits | None = DEFAULT_LIMITS,
    python: str | None = None,
    on_poll: Callable[[str], None] | None = None,
) -> ChildResult:
    """Run `python <args>` with `env`, a private HOME/TMPDIR (and cwd, unless given), `limits`
    (None: none), in its own process group that is killed on timeout and after it exits.
    `on_poll(tail)` is called about twice a second with the end of the child's stderr (progress)."""
    python = python or sys.executable
    rlimits = limits.rlimits() if limits is not None else []
    with _private_folder() as private:
        child_env = {**env, "TMPDIR": str(private / "tmp"), "TEMP": str(private / "tmp"), "TMP": str(private / "tmp")}
        child_env.setdefault("HOME", str(private / "home"))  # an explicit HOME in `env` is the caller's choice
        cmd = [python, *args]
        if rlimits:
            spec = ",".join(f"{name}:{soft}:{hard}" for name, soft, hard in rlimits)
            cmd = [python, "-I", "-S", "-c", _LAUNCHER, spec, python, *args]
        out_path, err_path = private / "stdout", private / "stderr"
        started = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env,
                cwd=str(cwd or private / "work"), start_new_session=True,
            )
            try:
                code: int | None = _wait(proc, started + timeout_s, err_path, on_poll)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_group(proc)  # the child on timeout or Ctrl-C; its leftovers otherwise
        seconds = time.monotonic() - started
        return ChildResult(code, _read(out_path), _read(err_path), seconds)


POLL_S = 0.5


def _wait(proc: subprocess.Popen, deadline: float, err_path: Path, on_poll: Callable[[str], None] | None) -> int:
    """The child's exit code; TimeoutExpired past the deadline. Polls `on_poll` with stderr's tail."""
    if on_poll is None:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    while True:
        try:
            return proc.wait(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        with contextlib.suppress(Exception):  # a progress display must never break the run
            on_poll(_tail(err_path))


def _tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - size))
        return handle.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _private_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="eval-child-"))
    try:
        for name in ("home", "tmp", "work"):
            (folder / name).mkdir(mode=0o700)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    else:  # no process groups: the child only
        with contextlib.suppress(OSError):
            proc.kill()
    proc.wait()


def _read(path: Path) -> str:
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - OUTPUT_CAP))
        data = handle.read()
    text = data.decode("utf-8", "replace")
    return text if size <= OUTPUT_CAP else f"[... first {size - OUTPUT_CAP} bytes cut ...]\n" + text

"""Least privilege for child processes (child.py): the environment allow-list per tracking scheme,
the private folder, resource limits, and a timeout that takes the grandchildren with it."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlflow_eval_agent import child
from mlflow_eval_agent.child import GiB, MiB, Limits, child_env, limits_for, run_child

CANARIES = {
    "ANTHROPIC_API_KEY": "sk-ant-canary-0001",
    "ANTHROPIC_AUTH_TOKEN": "canary-0002",
    "CLAUDE_CODE_OAUTH_TOKEN": "canary-0003",
    "DATABRICKS_TOKEN": "dapi-canary-0004",
    "DATABRICKS_CLIENT_SECRET": "canary-0005",
    "OPENAI_API_KEY": "sk-canary-0006",
    "AWS_SECRET_ACCESS_KEY": "canary-0007",
    "AWS_ACCESS_KEY_ID": "AKIACANARY0008",
    "GOOGLE_API_KEY": "canary-0009",
    "AZURE_OPENAI_API_KEY": "canary-0010",
    "MY_SERVICE_PASSWORD": "canary-0011",
    "MLFLOW_TRACKING_TOKEN": "canary-0012",
    "MLFLOW_TRACKING_PASSWORD": "canary-0013",
}
PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"
# The variables every child gets whatever the store (taken from a base without any of them).
QUIET = set(child.QUIET)


def run(code: str, *, timeout_s: float = 60, env: dict | None = None, limits: Limits | None = Limits(), **kwargs):
    return run_child(["-c", textwrap.dedent(code)], timeout_s=timeout_s, env=env if env is not None else child_env(None), limits=limits, **kwargs)


def store_keys(uri: str, base: dict) -> dict:
    """What child_env adds for this store beyond the quiet flags and the URI."""
    env = child_env(uri, base=base)
    return {k: v for k, v in env.items() if k not in QUIET and k != "MLFLOW_TRACKING_URI"}


# --- environment -------------------------------------------------------------------------------
def test_no_credential_reaches_a_child_on_a_sqlite_store(tmp_path, monkeypatch):
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run(PRINT_ENV, env=child_env(uri))
    assert result.returncode == 0, result.tail()
    seen = json.loads(result.stdout)
    assert not set(CANARIES) & set(seen), set(CANARIES) & set(seen)
    assert not any(value in result.stdout for value in CANARIES.values())
    assert seen["MLFLOW_TRACKING_URI"] == uri and seen["PATH"] == os.environ["PATH"]
    assert seen["MLFLOW_DISABLE_TELEMETRY"] == "true" and seen["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] == "false"


def test_python_basics_pass_and_nothing_else():
    base = {"PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "VIRTUAL_ENV": "/venv", "HOME": "/nowhere",
            "SHELL": "/bin/bash", "SSH_AUTH_SOCK": "/tmp/agent", "GITHUB_TOKEN": "ghp_x", **CANARIES}
    assert store_keys("sqlite:////data/mlflow.db", base) == {
        "PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "VIRTUAL_ENV": "/venv"}


def test_http_store_gets_exactly_mlflow_server_settings():
    server = {"MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p",
              "MLFLOW_TRACKING_INSECURE_TLS": "true", "MLFLOW_TRACKING_SERVER_CERT_PATH": "/ca.pem",
              "MLFLOW_TRACKING_CLIENT_CERT_PATH": "/client.pem", "HTTPS_PROXY": "http://proxy:3128"}
    base = {"PATH": "/bin", "HOME": "/nowhere", **CANARIES, **server}
    assert store_keys("https://mlflow.example.com", base) == {"PATH": "/bin", **server}
    assert store_keys("sqlite:////data/mlflow.db", base) == {"PATH": "/bin"}, "a local store needs no server settings"


def test_aws_credentials_only_for_mlflow_sigv4_signing():
    base = {"HOME": "/nowhere", "AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu-west-1", "OPENAI_API_KEY": "o"}
    assert store_keys("https://mlflow.example.com", base) == {}
    signed = store_keys("https://mlflow.example.com", {**base, "MLFLOW_TRACKING_AWS_SIGV4": "true"})
    assert signed == {"MLFLOW_TRACKING_AWS_SIGV4": "true", "AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu-west-1"}


def test_mlflow_credentials_file_is_read_for_the_child(tmp_path):
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = alice\nmlflow_tracking_password = pw\n")
    assert store_keys("http://localhost:5000", {"HOME": str(tmp_path)}) == {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw"}
    assert store_keys("sqlite:////data/mlflow.db", {"HOME": str(tmp_path)}) == {}


def test_databricks_store_gets_its_host_and_the_one_credential_in_use(tmp_path):
    config = tmp_path / ".databrickscfg"
    config.write_text("[DEFAULT]\nhost = https://w.cloud.databricks.com\ntoken = dapi-in-file\n")
    every = {"HOME": str(tmp_path), "DATABRICKS_HOST": "https://w", "DATABRICKS_TOKEN": "dapi-t", "DATABRICKS_CLIENT_ID": "id",
             "DATABRICKS_CLIENT_SECRET": "sec", "DATABRICKS_CONFIG_PROFILE": "prof", "DATABRICKS_RUNTIME_VERSION": "16.4",
             "ANTHROPIC_AUTH_TOKEN": "a", "OPENAI_API_KEY": "o", "AWS_SECRET_ACCESS_KEY": "k", "MLFLOW_TRACKING_TOKEN": "m"}
    assert store_keys("databricks", every) == {"DATABRICKS_HOST": "https://w", "DATABRICKS_TOKEN": "dapi-t", "DATABRICKS_RUNTIME_VERSION": "16.4"}
    no_token = {k: v for k, v in every.items() if k != "DATABRICKS_TOKEN"}
    assert store_keys("databricks", no_token) == {
        "DATABRICKS_HOST": "https://w", "DATABRICKS_CLIENT_ID": "id", "DATABRICKS_CLIENT_SECRET": "sec", "DATABRICKS_RUNTIME_VERSION": "16.4"}
    profile = {"HOME": str(tmp_path), "DATABRICKS_CONFIG_PROFILE": "prof", "OPENAI_API_KEY": "o"}
    assert store_keys("databricks", profile) == {"DATABRICKS_CONFIG_PROFILE": "prof", "DATABRICKS_CONFIG_FILE": str(config)}
    # databricks://<profile> names the profile itself: only the config file, no token from the environment
    assert store_keys("databricks://prof", every) == {"DATABRICKS_CONFIG_FILE": str(config), "DATABRICKS_RUNTIME_VERSION": "16.4"}
    assert store_keys("databricks", {"HOME": str(tmp_path / "empty")}) == {}, "no config file, nothing to point at"


def test_extra_is_passed_as_the_callers_explicit_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge-key")
    env = child_env(f"sqlite:///{tmp_path / 'mlflow.db'}", extra={"OPENAI_API_KEY": os.environ["OPENAI_API_KEY"]})
    seen = json.loads(run(PRINT_ENV, env=env).stdout)
    assert seen["OPENAI_API_KEY"] == "sk-judge-key"


def test_relative_store_paths_are_made_absolute(tmp_path):
    assert child_env("sqlite:///mlflow.db", cwd=tmp_path)["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert child_env("sqlite:////abs/mlflow.db")["MLFLOW_TRACKING_URI"] == "sqlite:////abs/mlflow.db"
    assert child_env("mlruns", cwd=tmp_path)["MLFLOW_TRACKING_URI"] == str(tmp_path / "mlruns")
    assert child_env("file:mlruns", cwd=tmp_path)["MLFLOW_TRACKING_URI"] == (tmp_path / "mlruns").as_uri()
    for uri in ("databricks", "http://localhost:5000", "postgresql://u:p@db/mlflow", "sqlite://"):
        assert child_env(uri)["MLFLOW_TRACKING_URI"] == uri
    assert "MLFLOW_TRACKING_URI" not in child_env(None)


@pytest.mark.slow
def test_a_child_uses_the_parents_relative_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "import mlflow; print(mlflow.create_experiment('from-the-child'))"
    result = run(code, env=child_env("sqlite:///mlflow.db"), timeout_s=120)
    assert result.returncode == 0, result.tail()
    assert (tmp_path / "mlflow.db").is_file(), "the child wrote into the parent's store, not into its private folder"


# --- private folder ----------------------------------------------------------------------------
def test_cwd_home_and_tmp_are_private_and_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = """
        import json, os, tempfile
        open("left-behind.txt", "w").write("x")
        print(json.dumps({"cwd": os.getcwd(), "home": os.environ["HOME"], "expanded": os.path.expanduser("~"),
                          "tmp": tempfile.gettempdir()}))
    """
    seen = json.loads(run(code).stdout)
    folder = Path(seen["cwd"]).parent
    assert Path(seen["home"]).parent == folder and Path(seen["tmp"]).parent == folder and seen["expanded"] == seen["home"]
    assert folder != tmp_path and str(Path.home()) not in seen.values()
    assert not folder.exists(), "the private folder is removed afterwards"
    assert not (tmp_path / "left-behind.txt").exists()


def test_an_explicit_cwd_and_home_are_kept(tmp_path):
    env = child_env(None, extra={"HOME": str(tmp_path)})
    seen = json.loads(run("import json, os; print(json.dumps([os.getcwd(), os.environ['HOME']]))", env=env, cwd=tmp_path).stdout)
    assert seen == [str(tmp_path), str(tmp_path)]


# --- limits ------------------------------------------------------------------------------------
@pytest.mark.skipif(child.resource is None, reason="no resource module")
def test_limits_are_set_in_the_child():
    code = """
        import json, resource
        print(json.dumps({n: resource.getrlimit(getattr(resource, n)) for n in ("RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_NPROC")}))
    """
    seen = json.loads(run(code, limits=Limits(cpu_s=100, memory_bytes=3 * GiB, file_bytes=5 * MiB, processes=64)).stdout)
    assert seen["RLIMIT_CPU"] == [100, 100 + child.CPU_GRACE_S]
    assert seen["RLIMIT_DATA"] == [3 * GiB, 3 * GiB] and seen["RLIMIT_FSIZE"] == [5 * MiB, 5 * MiB]
    assert seen["RLIMIT_CORE"] == [0, 0] and seen["RLIMIT_NPROC"][0] >= 64


@pytest.mark.skipif(child.resource is None, reason="no resource module")
def test_a_cpu_burner_is_stopped_by_its_cpu_limit():
    started = time.monotonic()
    result = run("while True: pass", limits=Limits(cpu_s=1), timeout_s=60)
    assert result.returncode == -signal.SIGXCPU and "CPU time limit" in result.exit_reason()
    assert time.monotonic() - started < 30


@pytest.mark.skipif(child.resource is None, reason="no resource module")
def test_writing_past_the_file_size_limit_fails():
    code = """
        with open("big.bin", "wb") as f:
            for _ in range(4):
                f.write(b"x" * (1024 * 1024))
    """
    result = run(code, limits=Limits(file_bytes=2 * MiB))
    assert result.returncode == 1 and "File too large" in result.stderr


@pytest.mark.skipif(child.resource is None, reason="no resource module")
def test_a_memory_hog_fails():
    result = run("block = bytearray(2 * 1024 ** 3)", limits=Limits(memory_bytes=512 * MiB))
    assert result.returncode == 1 and "MemoryError" in result.stderr


def test_no_resource_module_means_no_limits_but_a_run(monkeypatch):
    monkeypatch.setattr(child, "resource", None)
    assert Limits().rlimits() == []
    assert run("print('ran')").stdout.strip() == "ran"


def test_limits_fit_the_timeout_and_the_sqlite_store(tmp_path):
    database = tmp_path / "mlflow.db"
    with open(database, "wb") as f:
        f.truncate(3 * GiB)  # sparse: a big store without the disk use
    fitted = limits_for(f"sqlite:///{database}", timeout_s=3600)
    assert fitted.cpu_s == 7200 and fitted.file_bytes == 7 * GiB
    assert limits_for("databricks", timeout_s=60) == Limits()
    assert limits_for("sqlite:///mlflow.db", timeout_s=60, cwd=tmp_path).file_bytes == 7 * GiB, "relative paths too"


# --- processes ---------------------------------------------------------------------------------
def _gone(pid: int, within_s: float = 10) -> bool:
    """The process no longer runs (a zombie waiting for its reaper counts as gone)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


SPAWN_SLEEPER = """
    import subprocess, sys, time
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(sleeper.pid, flush=True)
    {then}
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_timeout_kills_the_child_and_its_grandchild():
    result = run(SPAWN_SLEEPER.format(then="time.sleep(300)"), timeout_s=3)
    assert result.timed_out and result.seconds < 30
    assert _gone(int(result.stdout.split()[0])), "the grandchild outlived the timeout"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_grandchild_left_running_after_a_normal_exit_is_killed():
    result = run(SPAWN_SLEEPER.format(then="sys.exit(0)"), timeout_s=60)
    assert result.returncode == 0 and result.seconds < 30
    assert _gone(int(result.stdout.split()[0]))


@pytest.mark.skipif(not hasattr(signal, "SIGALRM") or not Path("/proc").is_dir(), reason="needs SIGALRM and /proc")
def test_an_interrupt_in_the_parent_kills_the_child_group(tmp_path):
    pid_file = tmp_path / "pid"
    code = SPAWN_SLEEPER.format(then=f"open({str(pid_file)!r}, 'w').write(str(sleeper.pid)); time.sleep(300)")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.alarm(3)
        with pytest.raises(KeyboardInterrupt):
            run(code, timeout_s=120)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert _gone(int(pid_file.read_text()))


def test_result_reasons():
    assert run("import sys; sys.exit(3)").exit_reason() == "exited with code 3"
    assert run("import os, signal; os.kill(os.getpid(), signal.SIGTERM)").exit_reason() == "was killed by signal SIGTERM"
    assert child.ChildResult(None, "", "", 4.2).exit_reason() == "timed out after 4 s"


def test_the_child_runs_the_given_interpreter():
    assert run("import sys; print(sys.executable)", python=sys.executable).stdout.strip() == sys.executable


def test_an_interpreter_named_without_a_path_is_found_on_path():
    name = Path(sys.executable).name
    env = child_env(None, base={"PATH": str(Path(sys.executable).parent)})
    assert run("print('ran')", python=name, env=env).stdout.strip() == "ran"

"""The warm child keeps run_child's guarantees: allow-listed environment, a fresh process per run,
exit codes, timeouts, limits; and it really is warm (the preloaded modules are there)."""

from __future__ import annotations

import json
import os
import pytest

from mlflow_eval_agent.child import Limits, child_env
from mlflow_eval_agent.warm_child import WarmChild, run_warm

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the warm child forks")

SCRIPT = """
import json, os, sys
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv[1:], "cwd": os.getcwd(),
                  "mlflow_preloaded": "mlflow" in sys.modules, "secret": os.environ.get("ANTHROPIC_API_KEY"),
                  "home": os.environ.get("HOME"), "path0": sys.path[0]}))
sys.stderr.write("to stderr\\n")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


@pytest.fixture
def warm(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-warm")
    child = WarmChild(child_env(None))
    yield child
    child.close()


def test_each_run_is_a_fresh_fork_of_one_warm_child_without_our_secrets(warm, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    assert warm.usable
    first = warm.run([str(script), "0"], timeout_s=60, limits=Limits(cpu_s=60, memory_bytes=None, file_bytes=None, processes=None))
    second = warm.run([str(script), "3"], timeout_s=60)
    assert first.returncode == 0 and second.returncode == 3
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["pid"] != b["pid"] and a["ppid"] == b["ppid"] == warm.proc.pid
    assert a["mlflow_preloaded"], "mlflow was imported once, before the fork"
    assert a["secret"] is None and "sk-ant-canary-warm" not in first.stdout + first.stderr
    assert a["home"].startswith(str(warm.folder)), "HOME is the warm child's private folder"
    assert a["path0"] == str(tmp_path), "the script's folder comes first on sys.path, as for `python script.py`"
    assert "to stderr" in first.stderr and a["argv"] == ["0"]


def test_a_run_past_its_timeout_is_killed_and_the_next_run_still_works(warm, tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    fast = tmp_path / "fast.py"
    fast.write_text("print('ok')\n")
    result = warm.run([str(slow)], timeout_s=1.5)
    assert result.timed_out and result.seconds < 30
    again = warm.run([str(fast)], timeout_s=60)
    assert again.returncode == 0 and again.stdout.strip() == "ok"


def test_each_run_gets_its_own_limits(warm, tmp_path):
    script = tmp_path / "limits.py"
    script.write_text("import resource\nprint(resource.getrlimit(resource.RLIMIT_CPU)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0])\n")
    small = warm.run([str(script)], timeout_s=60, limits=Limits(cpu_s=50, memory_bytes=None, file_bytes=10**8, processes=None))
    large = warm.run([str(script)], timeout_s=60, limits=Limits(cpu_s=70, memory_bytes=None, file_bytes=10**9, processes=None))
    assert small.stdout.split() == ["50", str(10**8)] and large.stdout.split() == ["70", str(10**9)]


def test_only_a_script_file_runs_never_code_given_as_text(warm, tmp_path):
    for args in (["-c", "print(1)"], ["-m", "json.tool"], [str(tmp_path / "missing.py")], []):
        with pytest.raises(ValueError, match="script file"):
            warm.run(args, timeout_s=10)


def test_an_exception_is_exit_code_1_with_its_traceback(warm, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    result = warm.run([str(broken)], timeout_s=60)
    assert result.returncode == 1 and "RuntimeError: boom" in result.stderr


def test_progress_is_polled_from_the_runs_stderr(warm, tmp_path):
    script = tmp_path / "progress.py"
    script.write_text("import sys, time\nfor i in range(4):\n    sys.stderr.write(f'Evaluating: {i}/4 [\\n'); sys.stderr.flush(); time.sleep(0.4)\n")
    seen = []
    result = warm.run([str(script)], timeout_s=60, on_poll=seen.append)
    assert result.returncode == 0 and any("Evaluating" in tail for tail in seen)


def test_run_warm_reuses_one_warm_child_per_environment(tmp_path):
    from mlflow_eval_agent import warm_child

    script = tmp_path / "pid.py"
    script.write_text("import os\nprint(os.getppid())\n")
    env = child_env(None)
    warm_child.close_all()  # earlier validations in this test process have their own warm children
    try:
        parents = {run_warm([str(script)], timeout_s=60, env=env, limits=Limits(file_bytes=size)).stdout.strip() for size in (10**8, 10**9)}
        assert len(parents) == 1 and len(warm_child._WARM) == 1, "limits that grow with the store do not start another warm child"
    finally:
        warm_child.close_all()
    assert not warm_child._WARM


def test_a_killed_parent_leaves_no_warm_child(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys; sys.path.insert(0, 'src')\n"
        "from mlflow_eval_agent.child import child_env\n"
        "from mlflow_eval_agent.warm_child import WarmChild\n"
        "w = WarmChild(child_env(None)); print(w.proc.pid, flush=True)\n"
        "import time; time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    warm_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(warm_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(warm_pid, signal.SIGKILL)
    raise AssertionError("the warm child outlived its killed parent")

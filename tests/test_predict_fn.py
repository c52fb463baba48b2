"""Suites that test the current agent (issue 17): after `demo`, run_eval.py runs the dataset's inputs
through the sample agent (`--predict-fn`) or a deployed one (`--endpoint`, a local OpenAI-compatible
fake), compares per scorer and per record with the baseline, and gates on new failures; the pytest
entry does the same; checks whose spans the agent did not record are not applicable, never passed;
usage and store problems exit 2 in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_eval_agent.suite.checks import compile_check
from tests.conftest import REPO_ROOT
from tests.fakes.openai_server import AgentEndpoint

AGENT = "mlflow_eval_agent.demo.agent"


def clean_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`demo --volume-path <tmp>/x --session-id d1` with no credentials, once for this module."""
    folder = tmp_path_factory.mktemp("agent-demo")
    env = clean_env()
    proc = subprocess.run([sys.executable, "-m", "src.cli", "demo", "--volume-path", str(folder / "x"), "--session-id", "d1"],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    suite = folder / "x" / "sessions" / "d1" / "evaluation"
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'x' / 'demo' / 'mlflow.db'}"}
    return {"folder": folder, "suite": suite, "env": env, "stdout": proc.stdout}


def run_eval(demo, *args, cwd=None, env=None, timeout=400):
    out = demo["folder"] / f"results-{time.monotonic_ns()}.json"
    proc = subprocess.run([sys.executable, str(demo["suite"] / "run_eval.py"), *args, "--output-json", str(out)],
                          capture_output=True, text=True, env=env or demo["env"], cwd=cwd or demo["folder"], timeout=timeout)
    return proc, (json.loads(out.read_text()) if out.is_file() else None)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # sets up the demo for the module
def test_demo_summary_prints_both_agent_commands(demo):
    lines = [line.strip() for line in demo["stdout"].splitlines()]
    good = [line for line in lines if line.endswith(f"run_eval.py --predict-fn {AGENT}:predict")]
    bad = [line for line in lines if line.endswith(f"run_eval.py --predict-fn {AGENT}:predict_regressed")]
    assert good and bad, demo["stdout"][-2500:]
    assert good[0].startswith("MLFLOW_TRACKING_URI=sqlite:///")


@pytest.mark.slow
@pytest.mark.timeout(1500)  # several suite runs; the shared CI machine is slow
def test_the_agent_as_it_is_passes_and_the_regressed_one_fails_naming_scorers_and_records(demo):
    import mlflow

    proc, results = run_eval(demo, "--predict-fn", f"{AGENT}:predict")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "with no new failures against the baseline" in proc.stdout
    assert results["mode"] == "agent" and results["gate"] == "PASS" and results["baseline"]
    records = json.loads((demo["suite"] / "dataset.json").read_text())["records"]
    assert set(results["fresh_traces"]) == {r["trace_id"] for r in records}, "every record went through the agent"
    assert not set(results["fresh_traces"].values()) & {r["trace_id"] for r in records}, "fresh traces, not the stored ones"
    view = results["regression"]
    assert all(not row["newly_failing"] for row in view.values())
    assert sum(len(row["newly_passing"]) for row in view.values()) > 0, "the healthy world fixes the injected backend faults"
    assert view["answer_not_empty"]["unchanged"] > 0  # the agent's own bug (long paste -> empty answer) is still there

    # References: recorded outputs of records that passed every check, marked as recorded (CODE), not human.
    assert results["references"]
    mlflow.set_tracking_uri(demo["env"]["MLFLOW_TRACKING_URI"])
    fresh = mlflow.get_trace(results["fresh_traces"][results["references"][0]])
    names = {a.name: a for a in fresh.info.assessments}
    reference = names["expected_response"]
    assert reference.source.source_type == "CODE" and reference.source.source_id == "eval_agent.recorded_output"
    assert not [a for a in fresh.info.assessments if a.name == "expected_response" and a.source.source_type == "HUMAN"]
    assert {"support_agent", "search_docs", "chat_completion"} <= {s.name for s in fresh.data.spans}, "the span checks saw the agent's spans"

    proc, results = run_eval(demo, "--predict-fn", f"{AGENT}:predict_regressed")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert results["gate"] == "FAIL" and "no_timeouterror_in_get_order_status" in results["regressed"]
    failing = results["regression"]["no_timeouterror_in_get_order_status"]["newly_failing"]
    assert failing and all("order" in results["records"][k].lower() for k in failing)
    assert re.search(r"REGRESSED no_timeouterror_in_get_order_status: \d+ record\(s\) newly failing: tr-\w+ \(Where is my order \d+", proc.stdout)
    assert "FAILED:" in proc.stdout and "regressed against the baseline (" in proc.stdout
    # The regression is also in the run's artifact.
    client = mlflow.MlflowClient()
    logged = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=results["run_id"], artifact_path="run_results.json",
                                                                 dst_path=str(demo["folder"] / "dl"))).read_text())
    assert logged["regressed"] == results["regressed"]
    assert client.get_run(results["run_id"]).data.tags["eval_agent.mode"] == "agent"


@pytest.mark.slow
@pytest.mark.timeout(1500)  # several suite runs; the shared CI machine is slow
def test_pytest_entry_does_the_same(demo):
    def pytest_run(*args, env=None):
        return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "evaluation/", *args],
                              capture_output=True, text=True, env=env or demo["env"], cwd=demo["suite"].parent, timeout=550)

    good = pytest_run("--predict-fn", f"{AGENT}:predict")
    assert good.returncode == 0, good.stdout[-3000:]
    assert re.search(r"\d+ passed", good.stdout) and "failed" not in good.stdout.splitlines()[-1]
    bad = pytest_run(env={**demo["env"], "EVAL_PREDICT_FN": f"{AGENT}:predict_regressed"})  # the environment works as well as the option
    assert bad.returncode == 1, bad.stdout[-3000:]
    assert "FAILED evaluation/test_suite.py::test_scorer[no_timeouterror_in_get_order_status]" in bad.stdout
    assert re.search(r"regressed against the baseline: \d+ record\(s\) newly failing: tr-\w+ \(Where is my order", bad.stdout)
    assert "test_scorer[latency_budget] PASSED" in bad.stdout, "a scorer that did not regress still passes"


@pytest.mark.slow
@pytest.mark.timeout(1500)  # several suite runs; the shared CI machine is slow
def test_endpoint_against_a_local_openai_compatible_fake(demo):
    records = json.loads((demo["suite"] / "dataset.json").read_text())["records"]
    env = {**demo["env"], "EVAL_ENDPOINT_TOKEN": "endpoint-token-1"}
    with AgentEndpoint() as endpoint:
        proc, results = run_eval(demo, "--endpoint", endpoint.url, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(endpoint.requests) == len(records), "one request per record (no extra trial call)"
    assert {json.dumps(r["messages"], sort_keys=True) for r in endpoint.requests} == {json.dumps(r["inputs"]["messages"], sort_keys=True) for r in records}
    assert set(endpoint.authorizations) == {"Bearer endpoint-token-1"}
    rows = {r["scorer"]: r for r in results["scorers"]}
    # An endpoint returns no spans: checks that need the tool and retriever spans are not applicable, not passed.
    for name in ("no_timeouterror_in_get_order_status", "no_connectionerror_in_check_inventory", "retrieval_not_empty"):
        assert rows[name]["status"] == "N/A", rows[name]
        assert "not applicable: the agent recorded no" in rows[name]["reason"]
        assert set(results["per_trace"][name].values()) == {"n/a"}
    assert rows["answer_not_empty"]["status"] == "PASS" and rows["answer_not_empty"]["passed"] == len(records)
    assert "3 not applicable" in proc.stdout

    with AgentEndpoint(empty_answers=True) as emptied:
        proc, results = run_eval(demo, "--endpoint", emptied.url.removesuffix("/chat/completions"), env=env)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "answer_not_empty" in results["regressed"]
    assert "REGRESSED answer_not_empty" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(1500)  # several suite runs; the shared CI machine is slow
def test_usage_and_store_mistakes_exit_2_in_one_line(demo, tmp_path):
    proc, _ = run_eval(demo, "--predict-fn", "no_such_module:predict")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot import no_such_module" in errors[0] and "--project-dir" in errors[0]
    assert "Traceback" not in proc.stderr

    proc, _ = run_eval(demo, "--predict-fn", "os.system('x')")
    assert proc.returncode == 2 and "expected MODULE:FUNCTION" in proc.stderr

    # The user's own project: imported from --project-dir (the current folder by default).
    project = tmp_path / "proj"
    (project / "my_app").mkdir(parents=True)
    (project / "my_app" / "__init__.py").write_text("")
    (project / "my_app" / "agent.py").write_text(f"from {AGENT} import predict_regressed as predict\n")
    proc, results = run_eval(demo, "--predict-fn", "my_app.agent:predict", "--project-dir", str(project))
    assert proc.returncode == 1 and results["regressed"], proc.stderr[-2000:]

    proc, _ = run_eval(demo, "--predict-fn", f"{AGENT}:predict", "--filter", "attributes.status = 'OK'")
    assert proc.returncode == 2 and "use one or the other" in proc.stderr
    proc, _ = run_eval(demo, "--predict-fn", f"{AGENT}:predict", "--experiment-id", "424242")
    assert proc.returncode == 2 and "experiment 424242 cannot be used in this tracking store" in proc.stderr and "Traceback" not in proc.stderr

    started = time.monotonic()
    proc, _ = run_eval(demo, env={**demo["env"], "MLFLOW_TRACKING_URI": "http://alice:s3cret@127.0.0.1:9"}, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("Error: the tracking store http://127.0.0.1:9 did not answer"), errors
    assert "s3cret" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert took < 30, f"{took:.1f} s"


def test_engine_reports_what_a_check_needs_and_what_a_trace_lacks():
    from types import SimpleNamespace as NS

    check = compile_check({"version": 1, "fail_when": {"op": "exists", "spans": {"type": "TOOL", "name": "get_order_status", "status": "ERROR"}}})
    assert check.needs == ["TOOL span(s) named 'get_order_status'"]
    span = lambda name, kind, parent=None: NS(name=name, span_type=kind, span_id=name, parent_id=parent, status=NS(status_code="OK"),  # noqa: E731
                                              start_time_ns=1, end_time_ns=2, inputs=None, outputs=None, attributes={}, events=[])
    with_tool = NS(data=NS(spans=[span("root", "AGENT"), span("get_order_status", "TOOL", "root")]), info=NS(state="OK"))
    root_only = NS(data=NS(spans=[span("root", "AGENT")]), info=NS(state="OK"))
    assert check.missing(with_tool) == []
    assert check.missing(root_only) == ["TOOL span(s) named 'get_order_status'"]
    assert check(root_only)[0] is True, "the engine's verdict is unchanged; run_eval.py reports the check as not applicable"
    trace_level = compile_check({"version": 1, "fail_when": {"op": "trace", "where": [{"field": "state", "test": "equals", "value": "ERROR"}]}})
    assert trace_level.needs == [] and trace_level.missing(root_only) == []

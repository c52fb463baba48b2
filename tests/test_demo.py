"""`demo` on a fresh folder with no credentials: a sample agent's traces, the offline pipeline, and
a printed command that runs the suite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_eval_agent.demo.seed import MODE_SHARES, plan_requests
from tests.conftest import REPO_ROOT


def test_request_plan_is_deterministic_and_covers_every_mode():
    plan = plan_requests(60, seed=7)
    assert plan == plan_requests(60, seed=7)
    counts = {mode: sum(1 for _, faults in plan if mode in faults.modes) for mode in MODE_SHARES}
    assert counts == {mode: round(share * 60) for mode, share in MODE_SHARES.items()}
    assert all(len(faults.modes) <= 1 for _, faults in plan)


def clean_env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO_ROOT)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`demo --traces 20` on a fresh folder, with no credentials (one run shared by the tests below)."""
    folder = tmp_path_factory.mktemp("demo")
    env = clean_env(folder)
    proc = subprocess.run([sys.executable, "-m", "src.cli", "demo", "--traces", "20"], capture_output=True, text=True,
                          env=env, cwd=folder, timeout=600)
    return {"folder": folder, "env": env, "proc": proc}


@pytest.mark.slow
@pytest.mark.timeout(900)  # sets up the demo (module fixture) and runs the suite once more: >300 s on a loaded 2-core machine
def test_demo_builds_a_suite_and_prints_the_command_that_runs_it(demo):
    proc, env, tmp_path = demo["proc"], demo["env"], demo["folder"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no-model planner (no Claude credential set)" in proc.stdout
    assert "All tasks completed." in proc.stdout
    command = re.search(r"Run it with:\n\n    (.+)\n", proc.stdout).group(1)
    assert (tmp_path / ".eval-agent" / "demo" / "mlflow.db").is_file()
    # The summary: pass rates, the report, how to re-validate and browse it (MLflow from this interpreter, outside a checkout).
    assert re.search(r"Suite run eval-agent-demo-\S+-\d{8}-\d{4} \(evaluation run \w+\): gate PASS", proc.stdout), proc.stdout[-3000:]
    assert re.search(r"  latency_budget\s+PASS\s+\d+\.\d%", proc.stdout)
    report = re.search(r"Report: (\S+report\.html) \(attached to evaluation run \w+\)", proc.stdout).group(1)
    assert Path(report).is_file()
    assert re.search(r"validate --session-id demo-\S+ --volume-path /\S+\.eval-agent", proc.stdout)
    assert f"-m mlflow ui --backend-store-uri sqlite:///{tmp_path / '.eval-agent' / 'demo' / 'mlflow.db'}" in proc.stdout
    assert not (tmp_path / "mlruns").exists(), "the demo's artifacts live beside its store"
    # Progress of the long steps (piped: one final line each, with counts and rates).
    assert re.search(r"Writing the sample agent's traces .* 20/20 [\d.]+ traces/s", proc.stdout), proc.stdout[:2000]
    assert re.search(r"Running the suite as handed over \(\d+ scorers x \d+ traces\) .* (\d+)/\1 .*gate PASS", proc.stdout)
    assert "Profiling every trace" in proc.stdout and "Checking each proposed scorer against its evidence" in proc.stdout
    run = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]  # the suite passes its own baseline gate
    assert "latency_budget" in run.stdout and "SKIPPED" in run.stdout and " ERROR " not in run.stdout
    again = subprocess.run([sys.executable, "-m", "src.cli", "demo", "--traces", "20", "--session-id", "second"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=600)
    assert again.returncode == 0 and "Reusing the demo experiment" in again.stdout


@pytest.mark.slow
def test_after_the_demo_the_mlflow_ui_shows_the_named_tagged_run_and_its_report(demo, tmp_path):
    """What a new user sees: `mlflow server` on the demo store, opened in headless Chromium."""
    import json
    import urllib.parse
    import urllib.request

    from tests.chromium import browser, colour_share, require_chromium
    from tests.fakes.profile_fixtures import start_mlflow_server, stop_server

    require_chromium()
    assert demo["proc"].returncode == 0, demo["proc"].stdout[-3000:]
    session = next((demo["folder"] / ".eval-agent" / "sessions").glob("demo-*"))
    validation = json.loads((session / "state" / "validation.json").read_text())
    run_id, run_name = validation["latest"]["run_id"], validation["latest"]["run_name"]
    experiment_id = json.loads((session / "state" / "session.json").read_text())["experiment_id"]
    results = json.loads((session / "state" / "run_results.json").read_text())
    failing = next(t for outcomes in results["per_trace"].values() for t, o in outcomes.items() if o == "fail")
    db = demo["folder"] / ".eval-agent" / "demo" / "mlflow.db"
    server = start_mlflow_server(f"sqlite:///{db}", tmp_path / "artifacts", tmp_path / "server.log")
    try:
        with browser(width=1400, height=1000) as b:
            b.load(f"{server.url}/#/experiments/{experiment_id}/runs/{run_id}", settle_s=2)
            body = b.wait_for_text(run_name, "eval_agent.gate", "eval_agent.baseline", "eval_agent.session_id", "threshold.latency_budget",
                                   "judge_model", session.name)
            assert re.search(r"eval_agent\.gate\s*:\s*PASS", body) and re.search(r"eval_agent\.baseline\s*:\s*true", body), body[:3000]
            assert f"eval-agent-{session.name}" in body, "the registered dataset is the run's input"
            b.screenshot(tmp_path / "run.png", full_page=False)
            b.show(f"#/experiments/{experiment_id}/runs/{run_id}/artifacts", settle_s=2)
            b.wait_for_text("report.html", "run_results.json", "suite")
            b.show(f"#/experiments/{experiment_id}/evaluation-runs", settle_s=2)
            b.wait_for_text(run_name)
            # The report as the server hands it out, rendered from the artifact store: charts, no errors, nothing fetched.
            query = urllib.parse.urlencode({"path": "report.html", "run_uuid": run_id})
            html = urllib.request.urlopen(f"{server.url}/get-artifact?{query}", timeout=30).read().decode()
            assert "Evaluation report" in html and run_name in html
            report = tmp_path / "report.html"
            report.write_text(html, encoding="utf-8")
            load = b.load(report.as_uri())
            assert load.errors() == [] and [u for u in load.requests if u != report.as_uri()] == [], (load.errors(), load.requests)
            assert b.evaluate("document.querySelectorAll('figure.chart svg').length") >= 5
            shot = b.screenshot(tmp_path / "report.png")
            assert colour_share(shot, (0x15, 0x65, 0xC0)) > 0.002, "the charts' bars are on the screenshot"
            # A failing trace's link in the report opens that trace in the UI.
            link = b.evaluate(f"[...document.querySelectorAll('a')].map(a => a.href).find(h => h.includes('selectedEvaluationId={failing}'))")
            assert link and link.startswith("http://127.0.0.1:5000/#/experiments/")
            b.load(server.url + link.removeprefix("http://127.0.0.1:5000"), settle_s=2)
            b.wait_for_text(failing.removeprefix("tr-")[:8])
    finally:
        stop_server(server)

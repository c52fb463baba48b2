"""Suite run time per 1,000 traces vs hand-written mlflow.genai.evaluate calls, the same run after
20 earlier runs on the same traces, and recall/false positives of the offline planner's suite.

    uv run python -m benchmarks.suite [--traces 1000] [--prior-runs 20] [--keep /tmp/suite-bench]

Steps, all on local sqlite stores: the demo agent writes N traces with known failure modes; the
no-model planner builds and validates a suite; the store is then snapshotted, and every timed run
below starts from its own copy of that snapshot (so no run pays for another's verdicts), in a fresh
least-privilege Python process (`mlflow_eval_agent.child`, as `validate` runs suites):

  run_eval (1st run)            the rendered run_eval.py on the experiment's latest N traces
  hand-written, MLflow defaults mlflow.search_traces + mlflow.genai.evaluate with scorers.CODE_SCORERS
  hand-written, 4 workers       the same with MLFLOW_GENAI_EVAL_MAX_WORKERS=4 (with the defaults, 10
                                workers exhaust MLflow's sqlite connection pool and lose verdicts)
  hand-written, minimal         the same checks as bare @scorer functions, 4 workers
  run_eval (run K+1)            run_eval again on the 1st run's copy, after K more runs (--prior-runs)

For each: seconds, traces/s, and the verdicts that reached the store (N x scorers when none is lost).
Judges are left out of every run (no judge model offline). Then recall per failure mode and false
positives on clean traces.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

HAND_WRITTEN_SAME = """
import sys, time, mlflow
sys.path.insert(0, sys.argv[1])
import scorers
started = time.time()
traces = mlflow.search_traces(locations=[sys.argv[2]], max_results=int(sys.argv[3]))
mlflow.set_experiment(experiment_id=sys.argv[2])
result = mlflow.genai.evaluate(data=traces, scorers=scorers.CODE_SCORERS)
print("evaluated", len(result.result_df), "in", round(time.time() - started, 1), "s")
"""

HAND_WRITTEN_MINIMAL = """
import json, sys, time, mlflow
from mlflow.genai.scorers import scorer

spec = json.load(open(sys.argv[1]))

def status(span):
    return str(getattr(span.status.status_code, "value", span.status.status_code))

def make(s):
    kind, p = s["check"], s["params"]
    if kind == "no_exception":
        def f(trace):
            return not any(status(x) == "ERROR" and x.name == p.get("span_name") and any(
                e.name == "exception" and str(e.attributes.get("exception.type", "")).endswith(p["exception_type"]) for e in x.events)
                for x in trace.data.spans)
    elif kind == "no_hidden_failures":
        def f(trace):
            root = next(x for x in trace.data.spans if not x.parent_id)
            return status(root) == "ERROR" or not any(status(x) == "ERROR" for x in trace.data.spans)
    elif kind == "no_error_at_end":
        def f(trace):
            steps = sorted((x for x in trace.data.spans if x.parent_id), key=lambda x: x.start_time_ns)
            return not steps or status(steps[-1]) != "ERROR"
    elif kind == "output_non_empty":
        def f(outputs):
            return bool(outputs) and bool(str(outputs.get("content", "") if isinstance(outputs, dict) else outputs).strip())
    elif kind == "retrieval_non_empty":
        def f(trace):
            return all(x.outputs for x in trace.data.spans if x.span_type == "RETRIEVER")
    elif kind == "latency_budget":
        def f(trace):
            return trace.info.execution_time_ms <= p["max_ms"]
    elif kind == "tool_succeeded":
        def f(trace):
            return not any(x.span_type == "TOOL" and x.name == p["tool"] and status(x) == "ERROR" for x in trace.data.spans)
    else:
        raise SystemExit(f"no hand-written version of {kind}")
    return scorer(name=s["name"])(f)

started = time.time()
chosen = [make(s) for s in spec["scorers"] if s["kind"] == "check"]
traces = mlflow.search_traces(locations=[sys.argv[2]], max_results=int(sys.argv[3]))
mlflow.set_experiment(experiment_id=sys.argv[2])
result = mlflow.genai.evaluate(data=traces, scorers=chosen)
print("evaluated", len(result.result_df), "with", len(chosen), "scorers in", round(time.time() - started, 1), "s")
"""


RUN_TIMEOUT_S = 3600.0


def timed_run(label: str, args: list[str], uri: str, n: int, expected: int, extra: dict[str, str] | None = None,
              timeout_s: float = RUN_TIMEOUT_S, replaces: bool = False) -> dict:
    """`replaces`: the run replaces earlier verdicts (run_eval), so its count is the store's total, not the increase."""
    from mlflow_eval_agent.child import child_env, limits_for, run_child

    before = verdicts(uri)
    proc = run_child(args, timeout_s=timeout_s, env=child_env(uri, extra=extra), limits=limits_for(uri, timeout_s=timeout_s))
    seconds = proc.seconds
    finished = proc.returncode == 0 and "evaluated" in proc.stdout or "PASSED" in proc.stdout or "FAILED:" in proc.stdout
    if proc.timed_out:
        label += f" (HUNG: killed after {timeout_s:.0f} s)"
    problems = [line for line in proc.stderr.splitlines() if "Failed to log" in line or line.startswith("mlflow.exceptions")]
    if problems:
        print(f"note: {label}: MLflow reported {len(problems)} failure(s), e.g. {problems[-1][-200:]}")
    written = verdicts(uri) - (0 if replaces else before)
    return {"label": label + ("" if finished else " (CRASHED)"), "seconds": seconds, "per_1000": seconds * 1000 / n,
            "traces_per_s": n / seconds, "verdicts": written, "expected": expected}


def verdicts(uri: str) -> int:
    """Feedback rows from code scorers in a sqlite store (what a run leaves in the MLflow UI)."""
    import sqlite3

    with sqlite3.connect(uri[len("sqlite:///"):]) as db:
        return db.execute("SELECT count(*) FROM assessments WHERE assessment_type = 'feedback' AND source_type = 'CODE'").fetchone()[0]


def copy_store(source: Path, target: Path) -> str:
    """A copy of the sqlite store through sqlite's backup API (a WAL-mode file copy could miss commits)."""
    import sqlite3

    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # as a fresh MLflow store starts
    return f"sqlite:///{target}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--prior-runs", type=int, default=20, help="Runs after the first before the last timed one (default 20).")
    parser.add_argument("--keep", help="Folder to keep the store and session in (default: a temp folder).")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="suite-bench-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"

    import mlflow

    from mlflow_eval_agent.demo.agent import http_chat
    from mlflow_eval_agent.demo.chat_server import FakeChatServer
    from mlflow_eval_agent.demo.model import support_model
    from mlflow_eval_agent.demo.seed import seed_demo
    from mlflow_eval_agent.settings import resolve_settings
    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.suite.offline import build_offline
    from mlflow_eval_agent.suite.spec import SPEC_FILE, SuiteSpec

    mlflow.set_tracking_uri(uri)
    experiment_id = mlflow.create_experiment(f"bench-{int(time.time())}")
    started = time.time()
    with FakeChatServer(support_model) as server:
        seeded = seed_demo(experiment_id, http_chat(server.base_url), n=args.traces)
    print(f"seeded {len(seeded)} traces in {time.time() - started:.1f} s: {dict(Counter(m for s in seeded for m in s.modes))}")

    settings = resolve_settings({"experiment_id": experiment_id, "tracking_uri": uri, "volume_path": str(folder / "sessions"), "offline": True}, env={})
    store = open_session_store(settings.volume_path, "bench")
    started = time.time()
    plan = build_offline(settings, store)
    print(f"offline planner (profile, dataset, scorers, render, validate): {time.time() - started:.1f} s; "
          f"tasks {plan.counts()}")
    spec = store.read_model(SPEC_FILE, SuiteSpec)
    evaluation = store.path("evaluation")
    (folder / "spec.json").write_text(spec.model_dump_json())
    ids_file = folder / "all_ids.json"
    ids_file.write_text(json.dumps({"records": [{"trace_id": s.trace_id} for s in seeded]}))

    n = args.traces
    code_scorers = [s.name for s in spec.scorers if not s.needs_judge]
    expected = n * len(code_scorers)
    snapshot = folder / "snapshot.db"
    copy_store(Path(uri[len("sqlite:///"):]), snapshot)
    results_file = folder / "experiment_results.json"
    run_eval = [str(evaluation / "run_eval.py"), "--experiment-id", experiment_id, "--max-traces", str(n), "--skip-judges"]
    ours_uri = copy_store(snapshot, folder / "run_eval.db")
    runs = [timed_run("run_eval (1st run)", [*run_eval, "--output-json", str(results_file)], ours_uri, n, expected, replaces=True)]
    four = {"MLFLOW_GENAI_EVAL_MAX_WORKERS": "4"}
    # On sqlite, MLflow's defaults (10 workers) exhaust its connection pool: verdicts are lost, and the
    # process has been seen to hang at exit on its worker threads; it gets 5x run_eval's time.
    runs.append(timed_run("hand-written, MLflow defaults", ["-c", HAND_WRITTEN_SAME, str(evaluation), experiment_id, str(n)],
                          copy_store(snapshot, folder / "hand.db"), n, expected, timeout_s=max(300.0, 5 * runs[0]["seconds"])))
    runs.append(timed_run("hand-written, 4 workers", ["-c", HAND_WRITTEN_SAME, str(evaluation), experiment_id, str(n)],
                          copy_store(snapshot, folder / "hand.db"), n, expected, four))
    runs.append(timed_run("hand-written, minimal, 4 workers", ["-c", HAND_WRITTEN_MINIMAL, str(folder / "spec.json"), experiment_id, str(n)],
                          copy_store(snapshot, folder / "hand.db"), n, expected, four))
    later = []
    for k in range(2, args.prior_runs + 2):
        later.append(timed_run(f"run_eval (run {k})", run_eval, ours_uri, n, expected, replaces=True))
        print(f"  run {k}: {later[-1]['seconds']:.1f} s", flush=True)
    if later:
        runs.append(later[-1])
    print(f"\nsuite: {len(code_scorers)} code scorers ({', '.join(code_scorers)}); judges skipped in every run")
    print(f"{'run':<36} {'seconds':>8} {'traces/s':>9} {'s per 1000':>11} {'verdicts kept':>14}")
    for run in runs:
        print(f"{run['label']:<36} {run['seconds']:>8.1f} {run['traces_per_s']:>9.1f} {run['per_1000']:>11.1f} {run['verdicts']:>6} of {run['expected']}")
    first = runs[0]["seconds"]
    for other in runs[1:4]:
        print(f"{other['label']} / run_eval: {other['seconds'] / first:.2f}x")
    if later:
        print(f"run_eval run {args.prior_runs + 1} / run 1: {later[-1]['seconds'] / first:.2f}x "
              f"(verdicts on the traces after it: {later[-1]['verdicts']}, one per scorer per trace: {expected})")
    if not results_file.is_file():
        raise SystemExit("run_eval --experiment-id wrote no results: no recall to report")
    per_trace = json.loads(results_file.read_text())["per_trace"]
    truth = {s.trace_id: s.modes for s in seeded}
    flagged = {t: [name for name in code_scorers if per_trace[name].get(t) == "fail"] for t in truth}
    print("\nrecall per injected failure mode (a trace counts as caught when any code scorer fails it):")
    for mode in sorted({m for s in seeded for m in s.modes}):
        affected = [t for t, modes in truth.items() if mode in modes]
        caught = sum(1 for t in affected if flagged[t])
        print(f"  {mode:<22} {caught}/{len(affected)} = {caught / len(affected):.1%}")
    clean = [t for t, modes in truth.items() if not modes]
    false_positives = [t for t in clean if flagged[t]]
    print(f"false positives on clean traces: {len(false_positives)}/{len(clean)}"
          + (f" ({Counter(n for t in false_positives for n in flagged[t])})" if false_positives else ""))
    print(f"\nstore and session kept in {folder}" if args.keep else "")


if __name__ == "__main__":
    main()

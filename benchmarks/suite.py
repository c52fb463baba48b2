"""Suite run time per 1,000 traces vs hand-written mlflow.genai.evaluate calls, and recall/false
positives of the offline planner's suite against the injected failure modes.

    uv run python benchmarks/suite.py [--traces 1000] [--keep /tmp/suite-bench]

Steps, all on one local sqlite store: the demo agent writes N traces with known failure modes; the
no-model planner builds and validates a suite; then four timed runs over the same N traces, each
in a fresh least-privilege Python process (`mlflow_eval_agent.child`, as `validate` runs suites;
so each pays the same start-up and import cost):

  run_eval --experiment-id   the rendered run_eval.py on the experiment's latest N traces
  run_eval --dataset ids     the rendered run_eval.py on a dataset file naming all N trace ids
  hand-written, same scorers mlflow.search_traces + mlflow.genai.evaluate with scorers.CODE_SCORERS
  hand-written, minimal      the same checks written as bare @scorer functions (no rationales)

Judges are left out of every run (no judge model offline). Prints seconds, traces/s and seconds
per 1,000 traces, then recall per failure mode and false positives on clean traces.
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


def timed_run(label: str, args: list[str], uri: str, n: int) -> dict:
    from mlflow_eval_agent.child import child_env, limits_for, run_child

    proc = run_child(args, timeout_s=RUN_TIMEOUT_S, env=child_env(uri), limits=limits_for(uri, timeout_s=RUN_TIMEOUT_S))
    seconds = proc.seconds
    finished = proc.returncode == 0 and "evaluated" in proc.stdout or "PASSED" in proc.stdout or "FAILED:" in proc.stdout
    problems = [line for line in proc.stderr.splitlines() if "Failed to log" in line or line.startswith("mlflow.exceptions")]
    if problems:
        print(f"note: {label}: MLflow reported {len(problems)} failure(s), e.g. {problems[-1][-200:]}")
    return {"label": label + ("" if finished else " (CRASHED)"), "seconds": seconds, "per_1000": seconds * 1000 / n, "traces_per_s": n / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=1000)
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
    results_file = folder / "experiment_results.json"
    runs = [
        timed_run("run_eval --experiment-id", [str(evaluation / "run_eval.py"), "--experiment-id", experiment_id, "--max-traces", str(n),
                                               "--skip-judges", "--output-json", str(results_file)], uri, n),
        timed_run("run_eval --dataset <all ids>", [str(evaluation / "run_eval.py"), "--dataset", str(ids_file), "--skip-judges"], uri, n),
        timed_run("hand-written, same scorers", ["-c", HAND_WRITTEN_SAME, str(evaluation), experiment_id, str(n)], uri, n),
        timed_run("hand-written, minimal scorers", ["-c", HAND_WRITTEN_MINIMAL, str(folder / "spec.json"), experiment_id, str(n)], uri, n),
    ]
    code_scorers = [s.name for s in spec.scorers if not s.needs_judge]
    print(f"\nsuite: {len(code_scorers)} code scorers ({', '.join(code_scorers)}); judges skipped in every run")
    print(f"{'run':<32} {'seconds':>8} {'traces/s':>9} {'s per 1000':>11}")
    for run in runs:
        print(f"{run['label']:<32} {run['seconds']:>8.1f} {run['traces_per_s']:>9.1f} {run['per_1000']:>11.1f}")
    print(f"run_eval vs the hand-written call with the same scorers: {runs[0]['seconds'] / runs[2]['seconds'] - 1:+.1%}")
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

"""Does the suite catch what people called a failure? Human-labelled runs in, detection figures out.

    uv run python -m benchmarks.detection --format tau-bench --data ../shared/corpora/tau-retail/tau_dataset_full.json [--json]
    uv run python -m benchmarks.detection --format who-and-when --data ../shared/corpora/who-and-when/algorithm-generated

1. Import the runs WITHOUT labels into a fresh local sqlite store (the pipeline never sees answers).
2. Run the pipeline on that experiment: the no-model planner (`--mode offline`) or the agent
   (`--mode agent`, needs a model credential), exactly as `-a [--offline]` does.
3. Run the suite it built (`evaluation/run_eval.py`) over every imported trace; judges run only
   when a judge model is configured (never in offline mode).
4. Score the verdicts against the labels, read straight from the source files:
   - trace level: a run is flagged when any scorer fails it; precision/recall/F1 against failed runs;
   - recall per failure category (runs carrying a category, e.g. tau-bench's AgentRx labels);
   - location: for each failing verdict on a run with step labels, the span it points at (the first
     ERROR span its rationale names, else the root) is a hit when it is the labelled span or the
     one before or after it (spans in trace order; labels placed by importers.labels.span_for_step).
     `chance_hit_rate` is what naming a span at random would score, for comparison (short
     transcripts make a 3-span window a large share of the trace).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Synchronous trace export and no network lookups, before anything imports MLflow.
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlflow_eval_agent.importers import Conversation, SourceError, import_records, read_source  # noqa: E402
from mlflow_eval_agent.importers.labels import span_for_step, stored_step_spans  # noqa: E402
from mlflow_eval_agent.importers.model import META_SOURCE_ID, Labels  # noqa: E402
from mlflow_eval_agent.importers.run import existing_imports  # noqa: E402

SESSION_ID = "detection"
SUITE_TIMEOUT_S = 1800.0


class BenchmarkError(Exception):
    """The benchmark cannot run as asked; the message says why."""


@dataclass
class Truth:
    """What people said about one run."""

    failed: bool | None
    categories: set[str] = field(default_factory=set)
    steps: list[int] = field(default_factory=list)

    @classmethod
    def from_labels(cls, labels: Labels | None) -> Truth:
        if labels is None:
            return cls(failed=None)
        failed = None if labels.outcome is None else not labels.outcome.passed
        return cls(
            failed=failed,
            categories={f.category for f in labels.failures if f.category},
            steps=[f.step for f in labels.failures],
        )


@dataclass
class Verdict:
    scorer: str
    trace_id: str
    rationale: str = ""


# --- steps ------------------------------------------------------------------------------------------
def first_conversations(records: Iterator[Any], limit: int | None) -> Iterator[Any]:
    """Records in source order, stopping after `limit` conversations (malformed ones pass through)."""
    seen = 0
    for record in records:
        if isinstance(record, Conversation):
            if limit is not None and seen >= limit:
                return
            seen += 1
        yield record


def import_unlabelled(fmt: str, data: Path, limit: int | None, experiment_id: str) -> dict[str, Any]:
    report = import_records(first_conversations(read_source(fmt, data), limit), fmt, experiment_id, with_labels=False)
    if report.lost:
        raise BenchmarkError(f"{len(report.lost)} imported traces are missing from the store")
    return {"imported": report.imported, "skipped": report.skipped, "malformed": [p.model_dump() for p in report.malformed]}


def read_truth(fmt: str, data: Path, labels_path: Path | None, limit: int | None, experiment_id: str) -> dict[str, Truth]:
    """trace id -> Truth, matched by content hash (labels never enter the content hash)."""
    by_hash = {
        r.content_hash(): Truth.from_labels(r.labels)
        for r in first_conversations(read_source(fmt, data, with_labels=True, labels_path=labels_path), limit)
        if isinstance(r, Conversation)
    }
    return {trace_id: by_hash[digest] for digest, trace_id in existing_imports(experiment_id, fmt).items() if digest in by_hash}


def run_pipeline(mode: str, experiment_id: str, tracking_uri: str, work: Path) -> tuple[Any, dict[str, Any]]:
    """Run `-a [--offline]` on the experiment; returns the session store and the plan's outcome."""
    from rich.console import Console

    from mlflow_eval_agent.plan import PLAN_FILE, TaskPlan
    from mlflow_eval_agent.runner import run_autonomous
    from mlflow_eval_agent.settings import resolve_settings
    from mlflow_eval_agent.store import open_session_store

    flags = {
        "experiment_id": experiment_id,
        "tracking_uri": tracking_uri,
        "volume_path": str(work),
        "session_id": SESSION_ID,
        "offline": True if mode == "offline" else None,
    }
    settings = resolve_settings(flags)
    if mode == "agent" and not settings.access.configured:
        raise BenchmarkError("--mode agent needs a model credential (see .env.example); use --mode offline without one.")
    started = time.monotonic()
    code = run_autonomous(settings, Console(file=sys.stderr, width=120))
    store = open_session_store(settings.volume_path, SESSION_ID)
    plan = store.read_model(PLAN_FILE, TaskPlan)
    outcome = {"exit_code": code, "seconds": round(time.monotonic() - started, 1)}
    if plan is not None:
        outcome["tasks"] = dict(Counter(str(getattr(t.status, "value", t.status)) for t in plan.tasks))
        outcome["failed_tasks"] = {t.id: t.failure_reason for t in plan.tasks if t.failure_reason and str(getattr(t.status, "value", t.status)) == "failed"}
    return store, outcome


def run_suite(store: Any, experiment_id: str, tracking_uri: str, trace_count: int, skip_judges: bool) -> dict[str, Any]:
    """The suite's own verdicts on every imported trace (its run_eval.py, in a least-privilege child process)."""
    from mlflow_eval_agent.child import child_env, limits_for, run_child

    script = store.path("evaluation/run_eval.py")
    if not script.is_file():
        raise BenchmarkError("the pipeline built no suite (evaluation/run_eval.py is missing); see the plan's failed tasks")
    out = store.path("state/detection_run.json")
    args = [str(script), "--experiment-id", experiment_id, "--max-traces", str(trace_count), "--output-json", str(out)]
    args += ["--skip-judges"] if skip_judges else []
    limits = limits_for(tracking_uri, timeout_s=SUITE_TIMEOUT_S)
    result = run_child(args, timeout_s=SUITE_TIMEOUT_S, env=child_env(tracking_uri), limits=limits)
    if not out.is_file():
        raise BenchmarkError(f"the suite did not run (exit {result.returncode}): {result.tail()}")
    report = json.loads(out.read_text(encoding="utf-8"))
    report["seconds"] = round(result.seconds, 1)
    return report


def failing_verdicts(suite_report: dict[str, Any], traces: dict[str, Any]) -> list[Verdict]:
    """Every (scorer, trace) the suite failed, with the scorer's rationale from the trace's assessments."""
    verdicts = []
    for scorer, outcomes in suite_report.get("per_trace", {}).items():
        for trace_id, outcome in outcomes.items():
            if outcome == "fail":
                verdicts.append(Verdict(scorer, trace_id, latest_rationale(traces.get(trace_id), scorer)))
    return verdicts


def latest_rationale(trace: Any, scorer: str) -> str:
    if trace is None:
        return ""
    mine = [a for a in trace.info.assessments or [] if a.name == scorer and a.source.source_type != "HUMAN"]
    if not mine:
        return ""
    return max(mine, key=lambda a: a.create_time_ms or 0).rationale or ""


def load_traces(experiment_id: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client, found, token = MlflowClient(), {}, None
    while True:
        page = client.search_traces(locations=[experiment_id], max_results=200, page_token=token)
        found.update({t.info.trace_id: t for t in page})
        token = page.token
        if not token:
            return found


# --- scoring (pure) ---------------------------------------------------------------------------------
def pointed_span(trace: Any, rationale: str) -> str:
    """The span a failing verdict points at: the first ERROR span its rationale names, else the root."""
    root = next(s for s in trace.data.spans if s.parent_id is None)
    children = sorted((s for s in trace.data.spans if s.parent_id is not None), key=lambda s: s.start_time_ns)
    for span in children:
        status = str(getattr(span.status.status_code, "value", span.status.status_code))
        if status == "ERROR" and f"{span.name} ({span.span_type})" in rationale:
            return span.span_id
    return root.span_id


def location_window(trace: Any, steps: list[int]) -> tuple[set[str], int]:
    """The spans that count as "at the labelled step" (each labelled span and its neighbours in
    trace order; the root only when a label sits on it) and how many spans a verdict could name."""
    spans, root_id = stored_step_spans(trace)
    order = [sid for _, sid in spans]
    window: set[str] = set()
    for target in {span_for_step(step, spans, root_id) for step in steps}:
        if target == root_id:
            window.add(root_id)
            continue
        at = order.index(target)
        window.update(order[max(0, at - 1) : at + 2])
    return window, len(order) + 1


def score(truth: dict[str, Truth], verdicts: list[Verdict], traces: dict[str, Any]) -> dict[str, Any]:
    judged = {t for t, v in truth.items() if v.failed is not None}
    failed = {t for t in judged if truth[t].failed}
    flagged = {v.trace_id for v in verdicts if v.trace_id in judged}
    caught = flagged & failed
    precision = len(caught) / len(flagged) if flagged else None
    recall = len(caught) / len(failed) if failed else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if precision is not None and recall is not None else None)
    return {
        "traces": len(truth),
        "failed": len(failed),
        "flagged": len(flagged),
        "true_positives": len(caught),
        "precision": _round(precision),
        "recall": _round(recall),
        "f1": _round(f1),
        "per_category_recall": _per_category(truth, failed, flagged),
        "location": _location(truth, verdicts, traces),
        "scorers": _per_scorer(verdicts, judged, failed),
    }


def _per_category(truth: dict[str, Truth], failed: set[str], flagged: set[str]) -> dict[str, dict[str, Any]]:
    runs: dict[str, set[str]] = {}
    for trace_id in failed:
        for category in truth[trace_id].categories:
            runs.setdefault(category, set()).add(trace_id)
    return {
        c: {"runs": len(ids), "flagged": len(ids & flagged), "recall": _round(len(ids & flagged) / len(ids))}
        for c, ids in sorted(runs.items())
    }


def _location(truth: dict[str, Truth], verdicts: list[Verdict], traces: dict[str, Any]) -> dict[str, Any]:
    labelled = {t for t, v in truth.items() if v.steps}
    on_labelled = [v for v in verdicts if v.trace_id in labelled and v.trace_id in traces]
    hits, at_root, chance = [], 0, 0.0
    for v in on_labelled:
        trace = traces[v.trace_id]
        window, span_count = location_window(trace, truth[v.trace_id].steps)
        pointed = pointed_span(trace, v.rationale)
        at_root += pointed == next(s.span_id for s in trace.data.spans if s.parent_id is None)
        chance += len(window) / span_count  # a span picked at random from the trace (root included)
        if pointed in window:
            hits.append(v)
    return {
        "runs_with_step_labels": len(labelled),
        "flagged_runs_with_step_labels": len({v.trace_id for v in on_labelled}),
        "failing_verdicts": len(on_labelled),
        "verdicts_pointing_at_root": at_root,
        "verdicts_at_labelled_step": len(hits),
        "hit_rate": _round(len(hits) / len(on_labelled)) if on_labelled else None,
        "chance_hit_rate": _round(chance / len(on_labelled)) if on_labelled else None,
        "runs_hit": len({v.trace_id for v in hits}),
    }


def _per_scorer(verdicts: list[Verdict], judged: set[str], failed: set[str]) -> dict[str, dict[str, Any]]:
    by_scorer: dict[str, set[str]] = {}
    for v in verdicts:
        if v.trace_id in judged:
            by_scorer.setdefault(v.scorer, set()).add(v.trace_id)
    return {
        name: {"flagged": len(ids), "flagged_failed": len(ids & failed), "precision": _round(len(ids & failed) / len(ids))}
        for name, ids in sorted(by_scorer.items(), key=lambda item: -len(item[1]))
    }


def _source_id(trace: Any) -> str:
    return trace.info.trace_metadata.get(META_SOURCE_ID, trace.info.trace_id)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- the whole run ----------------------------------------------------------------------------------
def run_benchmark(fmt: str, data: Path, labels: Path | None, mode: str, work: Path, limit: int | None = None) -> dict[str, Any]:
    import mlflow

    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = mlflow.create_experiment(f"detection-{fmt}")
    started = time.monotonic()
    imported = import_unlabelled(fmt, data, limit, experiment_id)
    import_seconds = round(time.monotonic() - started, 1)
    store, pipeline = run_pipeline(mode, experiment_id, tracking_uri, work)
    truth = read_truth(fmt, data, labels, limit, experiment_id)
    suite = run_suite(store, experiment_id, tracking_uri, len(truth), skip_judges=mode == "offline")
    traces = load_traces(experiment_id)
    verdicts = failing_verdicts(suite, traces)
    result = {"format": fmt, "mode": mode, **score(truth, verdicts, traces)}
    result["flagged_runs"] = sorted({_source_id(traces[v.trace_id]) for v in verdicts if v.trace_id in truth and v.trace_id in traces})
    result["suite_scorers"] = [
        {"name": r["scorer"], "status": r["status"], **({"reason": r["reason"]} if r.get("reason") else {})} for r in suite.get("scorers", [])
    ]
    result["human_labels_in_store"] = sum(1 for t in traces.values() for a in t.info.assessments or [] if a.source.source_type == "HUMAN")
    result["import"] = {**imported, "seconds": import_seconds}
    result["pipeline"] = pipeline
    result["suite_seconds"] = suite["seconds"]
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"Detection on {result['traces']} {result['format']} runs ({result['mode']} pipeline)")
    print(f"  failed runs (human labels): {result['failed']}")
    print(f"  flagged by the suite:       {result['flagged']} ({result['true_positives']} of them failed)")
    print(f"  precision {result['precision']}  recall {result['recall']}  F1 {result['f1']}")
    for name, row in result["per_category_recall"].items():
        print(f"  recall on '{name}': {row['flagged']}/{row['runs']}")
    loc = result["location"]
    print(
        f"  location: {loc['verdicts_at_labelled_step']} of {loc['failing_verdicts']} failing verdicts on step-labelled runs point at "
        f"the labelled span or a neighbour ({loc['runs_hit']} of {loc['flagged_runs_with_step_labels']} flagged runs; "
        f"hit rate {loc['hit_rate']}, by chance {loc['chance_hit_rate']})"
    )
    print("  signals (scorer: runs flagged, of which failed):")
    for name, row in result["scorers"].items():
        print(f"    {name}: {row['flagged']}, {row['flagged_failed']}")
    skipped = [s["name"] for s in result["suite_scorers"] if s["status"] == "SKIPPED"]
    if skipped:
        print(f"  not run (need a judge model): {', '.join(skipped)}")
    print(f"  import {result['import']['seconds']} s, pipeline {result['pipeline']['seconds']} s, suite run {result['suite_seconds']} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=["openai-chat", "tau-bench", "who-and-when"])
    parser.add_argument("--data", required=True, type=Path, help="The runs (file or folder) in that format.")
    parser.add_argument("--labels", type=Path, help="tau-bench step labels (default: tau_ground_truth.json beside --data).")
    parser.add_argument("--mode", choices=["offline", "agent"], default="offline")
    parser.add_argument("--limit", type=int, help="Only the first N runs (a quick slice).")
    parser.add_argument("--work-dir", type=Path, help="Keep the store and session here instead of a temporary folder.")
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON object.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.work_dir:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            result = run_benchmark(args.format, args.data, args.labels, args.mode, args.work_dir.resolve(), args.limit)
        else:
            with tempfile.TemporaryDirectory(prefix="detection-") as work:
                result = run_benchmark(args.format, args.data, args.labels, args.mode, Path(work), args.limit)
    except SourceError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except BenchmarkError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

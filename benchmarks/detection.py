"""Does the suite catch what people called a failure? Human-labelled runs in, detection figures out.

    uv run python -m benchmarks.detection --format tau-bench --data ../shared/corpora/tau-retail/tau_dataset_full.json [--json]
    uv run python -m benchmarks.detection --format who-and-when --data ../shared/corpora/who-and-when/algorithm-generated

1. Import the runs WITHOUT labels into a fresh local sqlite store (the pipeline never sees answers).
2. Run the pipeline on that experiment: the no-model planner (`--mode offline`) or the agent
   (`--mode agent`, needs a model credential), exactly as `-a [--offline]` does.
3. Run the suite it built (`evaluation/run_eval.py`) over every imported trace; judges run only
   when a judge model is configured (never in offline mode).
4. Score the verdicts against the labels, read straight from the source files (`score`, pure).

What the figures mean
---------------------
Trace level. A run is *flagged* when any scorer fails it. Runs without an outcome label are left
out of every trace-level figure and counted (`no_outcome_label`). Precision, recall and F1 are
against the human outcome (failed = positive); MCC is Matthews' correlation coefficient,
(TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)), and is None (undefined) when any of those
four margins is zero: e.g. when every run failed, or when nothing (or everything) was flagged.

Baselines, each flagging runs without looking at them (precision, recall, F1, MCC):
  - `flag_all`: every run flagged. Its precision is the base rate; its MCC is undefined.
  - `random`: the suite's number of flagged runs k, picked uniformly at random among the N judged
    runs, F of which failed; the figures are exact expectations. With k and F fixed, TP is
    hypergeometric with mean kF/N, and precision = TP/k, recall = TP/F, F1 = 2TP/(k+F) and MCC's
    numerator (TP*N - kF) are linear in TP, so E[precision] = F/N (the base rate), E[recall] = k/N
    (the flag rate), E[F1] = 2kF/(N(k+F)) (equal to F1 of the expected precision and recall) and
    E[MCC] = 0 whenever MCC is defined.
  - `length`: the k runs with the longest transcripts (child spans of the trace: one per agent
    turn, tool call or executor turn), the "longer runs fail more" baseline. Runs tied at the
    cut-off share the remaining flags equally, so the figures are the expectation over ties.

Location, over ALL failed runs with step labels (a failed run the suite did not flag is a miss):
  - the suite's predicted span for a run is the span its earliest failing verdict points at:
    each verdict's span is the assessment's metadata `eval_agent.span_id` (or, when only
    `eval_agent.span_name` resolves, the first span of that name, ERROR spans first); without the
    key, the first ERROR span its rationale names; else the root. "Earliest" is trace order of
    those spans, with the root (the whole run, no step) last. `pointed_by` counts which rule
    gave each flagged run's prediction.
  - the predicted step is the span's `eval_agent.import.step` attribute (the importer's source
    step; a TOOL span's step is its result's step, its call's step is the calling agent's
    CHAT_MODEL span). The root has no step (a miss for the step metrics).
  - `exact_step`: the predicted step is a labelled step. Who&When labels one decisive
    `mistake_step` per run; AgentRx labels several failures per tau-bench run, and any labelled
    step counts. `within_1`: within +-1 step of a labelled step.
  - `agent`: over failed runs whose labels name the responsible agent (Who&When
    `mistake_agent`, AgentRx `failed_agent`, both kept in `StepLabel.agent`): the predicted span's
    agent is one of them (case-insensitive). A CHAT_MODEL span's agent is its speaker (the span
    name); a TOOL span's agent is the agent that called the tool (the CHAT_MODEL span of its call
    step, else the nearest earlier CHAT_MODEL span: a Who&When code executor runs the code of the
    turn before). No failure in these label sets blames a tool, and the tool's failure is
    evidence against its caller. The root has no agent.
  - `chance`: the same three figures for a blind guess, as expectations over the same runs: a step
    picked uniformly among the run's transcript steps (every message but the system prompt) and
    an agent picked uniformly among the run's speakers (the user included where it speaks; tool
    results count as their caller's, as above). The suite can point only at spans, and user
    messages have none, so labels on user messages (tau-bench's Underspecified User Intent) are
    reachable by chance at exact step but by the suite only within +-1.

`per_check`: per scorer that ran: runs it flagged, true positives, precision, recall.
`per_category`: recall per failure category (failed runs carrying a category).
`warnings`: plain sentences, printed too, when a figure cannot mean what it seems to: no passing
runs (precision is then 1.0 for anything flagged, the baselines' too), no failed runs, runs left
out for want of an outcome label.

`--work-dir DIR` keeps everything it built in DIR: the tracking store (`mlflow.db`, artifacts under
`artifacts/`), the session with the suite (`sessions/detection/`, suite under `evaluation/`, its
verdicts in `state/detection_run.json` and its console output in `state/detection_suite.log`), and
the figures (`detection.json`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Synchronous trace export and no network lookups, before anything imports MLflow.
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlflow_eval_agent.importers import Conversation, SourceError, import_records, read_source  # noqa: E402
from mlflow_eval_agent.importers.model import ATTR_CALL_STEP, ATTR_STEP, META_SOURCE_ID, Turn  # noqa: E402
from mlflow_eval_agent.importers.run import existing_imports  # noqa: E402
from mlflow_eval_agent.importers.writer import DEFAULT_SPEAKER  # noqa: E402

SESSION_ID = "detection"
SUITE_TIMEOUT_S = 1800.0
RESULT_FILE = "detection.json"
META_SPAN_ID = "eval_agent.span_id"
META_SPAN_NAME = "eval_agent.span_name"
USER_AGENT = "user"


class BenchmarkError(Exception):
    """The benchmark cannot run as asked; the message says why."""


@dataclass
class Truth:
    """What people said about one run, and who spoke at which step (for the chance figures)."""

    failed: bool | None
    categories: set[str] = field(default_factory=set)
    steps: list[int] = field(default_factory=list)
    agents: set[str] = field(default_factory=set)
    # Every transcript step but the system prompt -> the agent responsible for it (None: unknown).
    transcript: dict[int, str | None] = field(default_factory=dict)

    @classmethod
    def from_conversation(cls, conv: Conversation) -> Truth:
        labels, transcript = conv.labels, transcript_agents(conv.turns)
        if labels is None:
            return cls(failed=None, transcript=transcript)
        return cls(
            failed=None if labels.outcome is None else not labels.outcome.passed,
            categories={f.category for f in labels.failures if f.category},
            steps=[f.step for f in labels.failures],
            agents={f.agent for f in labels.failures if f.agent},
            transcript=transcript,
        )


def transcript_agents(turns: Iterable[Turn]) -> dict[int, str | None]:
    """step -> agent for every turn but system prompts: the speaker (as the importer names spans),
    "user" for the user, and for a tool result the agent that last spoke (its caller)."""
    agents: dict[int, str | None] = {}
    caller: str | None = None
    for turn in turns:
        if turn.role == "assistant":
            caller = turn.name or DEFAULT_SPEAKER
            agents[turn.step] = caller
        elif turn.role == "user":
            agents[turn.step] = turn.name or USER_AGENT
        elif turn.role == "tool":
            agents[turn.step] = caller
    return agents


@dataclass
class Verdict:
    """One failing verdict: which scorer failed which run, and what it pointed at."""

    scorer: str
    trace_id: str
    rationale: str = ""
    span_id: str | None = None
    span_name: str | None = None


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
        r.content_hash(): Truth.from_conversation(r)
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
    args = [str(script), "--experiment-id", experiment_id, "--max-traces", str(max(trace_count, 1)), "--output-json", str(out)]
    args += ["--skip-judges"] if skip_judges else []
    limits = limits_for(tracking_uri, timeout_s=SUITE_TIMEOUT_S)
    result = run_child(args, timeout_s=SUITE_TIMEOUT_S, env=child_env(tracking_uri), limits=limits)
    log = store.path("state/detection_suite.log")
    log.write_text(f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}", encoding="utf-8")
    if not out.is_file():
        raise BenchmarkError(f"the suite did not run (exit {result.returncode}): {result.tail()}")
    report = json.loads(out.read_text(encoding="utf-8"))
    report["seconds"] = round(result.seconds, 1)
    return report


def failing_verdicts(suite_report: dict[str, Any], traces: dict[str, Any]) -> list[Verdict]:
    """Every (scorer, trace) the suite failed, with what the scorer's assessment says about it."""
    verdicts = []
    run_id = suite_report.get("run_id")
    for scorer, outcomes in suite_report.get("per_trace", {}).items():
        for trace_id, outcome in outcomes.items():
            if outcome == "fail":
                verdicts.append(verdict_from_assessment(scorer, trace_id, traces.get(trace_id), run_id))
    return verdicts


def verdict_from_assessment(scorer: str, trace_id: str, trace: Any, run_id: str | None = None) -> Verdict:
    """The scorer's assessment from this evaluation run (else its latest): rationale and span pointer."""
    mine = [a for a in (trace.info.assessments or [] if trace is not None else []) if a.name == scorer and a.source.source_type != "HUMAN"]
    this_run = [a for a in mine if run_id and getattr(a, "run_id", None) == run_id]
    if not (this_run or mine):
        return Verdict(scorer, trace_id)
    latest = max(this_run or mine, key=lambda a: a.create_time_ms or 0)
    metadata = latest.metadata or {}
    return Verdict(scorer, trace_id, latest.rationale or "", metadata.get(META_SPAN_ID) or None, metadata.get(META_SPAN_NAME) or None)


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
def score(truth: dict[str, Truth], verdicts: list[Verdict], traces: dict[str, Any], scorers: Iterable[str] = ()) -> dict[str, Any]:
    """Every figure of the report from the labels, the failing verdicts and the traces (see the module docstring).

    `scorers` names the scorers that ran, so one that flagged nothing still gets its row in `per_check`.
    """
    judged = {t for t, v in truth.items() if v.failed is not None}
    failed = {t for t in judged if truth[t].failed}
    flagged = {v.trace_id for v in verdicts if v.trace_id in judged}
    suite = confusion(flagged, failed, judged)
    lengths = {t: span_count(traces.get(t)) for t in judged}
    return {
        "traces": len(truth),
        "judged": len(judged),
        "no_outcome_label": len(truth) - len(judged),
        "failed": len(failed),
        "passed": len(judged) - len(failed),
        "flagged": len(flagged),
        "true_positives": len(flagged & failed),
        **{k: suite[k] for k in ("precision", "recall", "f1", "mcc")},
        "baselines": {
            "flag_all": confusion(judged, failed, judged),
            "random": random_baseline(len(flagged), len(failed), len(judged)),
            "length": length_baseline(len(flagged), failed, lengths),
        },
        "location": location(truth, verdicts, traces),
        "per_check": per_check(verdicts, judged, failed, scorers),
        "per_category": per_category(truth, failed, flagged),
        "warnings": warnings(len(judged), len(failed), len(truth) - len(judged)),
    }


def figures(tp: float, flagged: int, failed: int, total: int) -> dict[str, float | None]:
    """Precision, recall, F1 and MCC from a (possibly expected, fractional) true-positive count and the margins."""
    fp, fn = flagged - tp, failed - tp
    tn = total - flagged - failed + tp
    precision = tp / flagged if flagged else None
    recall = tp / failed if failed else None
    f1 = 2 * tp / (flagged + failed) if flagged + failed else None
    margins = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt(margins) if margins > 0 else None
    return {"precision": _round(precision), "recall": _round(recall), "f1": _round(f1), "mcc": _round(mcc)}


def confusion(flagged: set[str], failed: set[str], judged: set[str]) -> dict[str, Any]:
    return {"flagged": len(flagged), **figures(len(flagged & failed), len(flagged), len(failed), len(judged))}


def random_baseline(k: int, failed: int, total: int) -> dict[str, Any]:
    """Expected figures of flagging k of `total` runs uniformly at random (exact; see the module docstring)."""
    expected_tp = k * failed / total if total else 0.0
    result = {"flagged": k, **figures(expected_tp, k, failed, total)}
    if result["mcc"] is not None:
        result["mcc"] = 0.0  # E[TP*N - kF] = 0; the division by fixed margins keeps it 0 (no float noise)
    return result


def length_baseline(k: int, failed: set[str], lengths: dict[str, int]) -> dict[str, Any]:
    """Flag the k longest runs; runs tied at the cut-off share the remaining flags (expected value)."""
    ranked = sorted(lengths.values(), reverse=True)
    expected_tp = 0.0
    if k > 0 and ranked:
        cutoff = ranked[min(k, len(ranked)) - 1]
        longer = [t for t, n in lengths.items() if n > cutoff]
        tied = [t for t, n in lengths.items() if n == cutoff]
        share = (min(k, len(ranked)) - len(longer)) / len(tied)
        expected_tp = sum(1 for t in longer if t in failed) + share * sum(1 for t in tied if t in failed)
    return {"flagged": k, **figures(expected_tp, k, len(failed), len(lengths))}


def span_count(trace: Any) -> int:
    """The transcript's length as the suite sees it: the trace's child spans (0 when the trace is missing)."""
    if trace is None:
        return 0
    return sum(1 for s in trace.data.spans if s.parent_id is not None)


def warnings(judged: int, failed: int, unlabelled: int) -> list[str]:
    said = []
    if judged == 0:
        said.append("No run carries an outcome label: there is nothing to score detection against.")
    elif failed == judged:
        said.append(
            f"All {judged} runs failed (no passing runs): precision is 1.0 for anything flagged, the baselines' too, "
            "and MCC is undefined; only recall and location say anything about the suite."
        )
    elif failed == 0:
        said.append(f"None of the {judged} runs failed: recall and location are undefined and every flag is a false alarm.")
    if unlabelled:
        runs = "1 run carries" if unlabelled == 1 else f"{unlabelled} runs carry"
        said.append(f"{runs} no outcome label and {'is' if unlabelled == 1 else 'are'} left out of the trace-level figures.")
    return said


# --- location ---------------------------------------------------------------------------------------
def location(truth: dict[str, Truth], verdicts: list[Verdict], traces: dict[str, Any]) -> dict[str, Any]:
    """Exact step, within +-1 step and agent over every failed run with step labels, beside chance."""
    runs = sorted(t for t, v in truth.items() if v.failed and v.steps)
    with_agent = [t for t in runs if truth[t].agents]
    by_run: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_run.setdefault(v.trace_id, []).append(v)
    hits = {"exact_step": 0, "within_1": 0, "agent": 0}
    chance = {"exact_step": 0.0, "within_1": 0.0, "agent": 0.0}
    pointed_by: Counter[str] = Counter()
    flagged = 0
    for trace_id in runs:
        labels = truth[trace_id]
        chance["exact_step"] += chance_exact(labels)
        chance["within_1"] += chance_within_1(labels)
        chance["agent"] += chance_agent(labels) if labels.agents else 0.0
        trace = traces.get(trace_id)
        if trace is None or trace_id not in by_run:
            continue
        flagged += 1
        span, how = predicted_span(trace, by_run[trace_id])
        pointed_by[how] += 1
        step = span_step(span)
        hits["exact_step"] += step is not None and step in labels.steps
        hits["within_1"] += step is not None and any(abs(step - s) <= 1 for s in labels.steps)
        hits["agent"] += bool(labels.agents) and _same_agent(span_agent(trace, span), labels.agents)
    denominators = {"exact_step": len(runs), "within_1": len(runs), "agent": len(with_agent)}
    return {
        "runs": len(runs),
        "flagged": flagged,
        "agent_runs": len(with_agent),
        **{k: _rate(hits[k], denominators[k]) for k in hits},
        "chance": {k: _rate(chance[k], denominators[k]) for k in chance},
        "hits": hits,
        "pointed_by": {k: pointed_by.get(k, 0) for k in ("metadata", "rationale", "root")},
        "runs_hit": hits["within_1"],  # the old name of within_1's count, read by tests/test_import_detection.py
    }


def predicted_span(trace: Any, verdicts: list[Verdict]) -> tuple[Any, str]:
    """The span the run's earliest failing verdict points at (trace order, the root last) and which rule found it."""
    order = {s.span_id: i for i, s in enumerate(_children(trace))}
    pointed = [verdict_span(trace, v) for v in verdicts]
    return min(pointed, key=lambda pair: order.get(pair[0].span_id, len(order)))


def verdict_span(trace: Any, verdict: Verdict) -> tuple[Any, str]:
    """The span one verdict points at: its metadata's span (id, else name), else its rationale's, else the root."""
    spans = trace.data.spans
    if verdict.span_id:
        found = next((s for s in spans if s.span_id == verdict.span_id), None)
        if found is not None:
            return found, "metadata"
    if verdict.span_name:
        named = sorted((s for s in _children(trace) if s.name == verdict.span_name), key=lambda s: _status(s) != "ERROR")
        if named:
            return named[0], "metadata"
    by_rationale = pointed_span(trace, verdict.rationale)
    if by_rationale is not None:
        return by_rationale, "rationale"
    return _root(trace), "root"


def pointed_span(trace: Any, rationale: str) -> Any | None:
    """The first ERROR span (trace order) the rationale names as "name (TYPE)", or None."""
    for span in _children(trace):
        if _status(span) == "ERROR" and f"{span.name} ({span.span_type})" in (rationale or ""):
            return span
    return None


def span_step(span: Any) -> int | None:
    step = (span.attributes or {}).get(ATTR_STEP) if span.parent_id is not None else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def span_agent(trace: Any, span: Any) -> str | None:
    """A CHAT_MODEL span's speaker; for a TOOL span the agent that called the tool; else None (root, others)."""
    kind = str(getattr(span.span_type, "value", span.span_type))
    if span.parent_id is None:
        return None
    if kind == "CHAT_MODEL":
        return span.name
    if kind != "TOOL":
        return None
    children = _children(trace)
    chats = [s for s in children if str(getattr(s.span_type, "value", s.span_type)) == "CHAT_MODEL"]
    call_step = (span.attributes or {}).get(ATTR_CALL_STEP)
    caller = next((s for s in chats if call_step is not None and span_step(s) == call_step), None)
    if caller is None:
        at = next(i for i, s in enumerate(children) if s.span_id == span.span_id)
        chat_ids = {s.span_id for s in chats}
        caller = next((s for s in reversed(children[:at]) if s.span_id in chat_ids), None)
    return caller.name if caller is not None else None


def chance_exact(labels: Truth) -> float:
    steps = list(labels.transcript)
    return sum(1 for s in steps if s in labels.steps) / len(steps) if steps else 0.0


def chance_within_1(labels: Truth) -> float:
    steps = list(labels.transcript)
    return sum(1 for s in steps if any(abs(s - label) <= 1 for label in labels.steps)) / len(steps) if steps else 0.0


def chance_agent(labels: Truth) -> float:
    speakers = {a.casefold() for a in labels.transcript.values() if a}
    return len(speakers & {a.casefold() for a in labels.agents}) / len(speakers) if speakers else 0.0


def _same_agent(agent: str | None, labelled: set[str]) -> bool:
    return agent is not None and agent.casefold() in {a.casefold() for a in labelled}


def _children(trace: Any) -> list[Any]:
    return sorted((s for s in trace.data.spans if s.parent_id is not None), key=lambda s: s.start_time_ns)


def _root(trace: Any) -> Any:
    return next(s for s in trace.data.spans if s.parent_id is None)


def _status(span: Any) -> str:
    return str(getattr(span.status.status_code, "value", span.status.status_code))


# --- per check, per category ------------------------------------------------------------------------
def per_check(verdicts: list[Verdict], judged: set[str], failed: set[str], scorers: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    by_scorer: dict[str, set[str]] = {name: set() for name in scorers}
    for v in verdicts:
        ids = by_scorer.setdefault(v.scorer, set())
        if v.trace_id in judged:
            ids.add(v.trace_id)
    rows = {
        name: {
            "flagged": len(ids),
            "true_positives": len(ids & failed),
            "precision": _rate(len(ids & failed), len(ids)),
            "recall": _rate(len(ids & failed), len(failed)),
        }
        for name, ids in by_scorer.items()
    }
    return dict(sorted(rows.items(), key=lambda item: (-item[1]["flagged"], item[0])))


def per_category(truth: dict[str, Truth], failed: set[str], flagged: set[str]) -> dict[str, dict[str, Any]]:
    runs: dict[str, set[str]] = {}
    for trace_id in failed:
        for category in truth[trace_id].categories:
            runs.setdefault(category, set()).add(trace_id)
    return {
        c: {"runs": len(ids), "flagged": len(ids & flagged), "recall": _rate(len(ids & flagged), len(ids))}
        for c, ids in sorted(runs.items())
    }


def _source_id(trace: Any) -> str:
    return trace.info.trace_metadata.get(META_SOURCE_ID, trace.info.trace_id)


def _rate(part: float, whole: int) -> float | None:
    return _round(part / whole) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- the whole run ----------------------------------------------------------------------------------
def run_benchmark(fmt: str, data: Path, labels: Path | None, mode: str, work: Path, limit: int | None = None) -> dict[str, Any]:
    import mlflow

    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    # Artifacts beside the store, not under the current directory (the default for a sqlite store).
    experiment_id = mlflow.create_experiment(f"detection-{fmt}", artifact_location=(work / "artifacts").as_uri())
    started = time.monotonic()
    imported = import_unlabelled(fmt, data, limit, experiment_id)
    import_seconds = round(time.monotonic() - started, 1)
    if not imported["imported"]:
        raise BenchmarkError(f"no run of {data} was imported (malformed: {len(imported['malformed'])})")
    store, pipeline = run_pipeline(mode, experiment_id, tracking_uri, work)
    truth = read_truth(fmt, data, labels, limit, experiment_id)
    suite = run_suite(store, experiment_id, tracking_uri, len(truth), skip_judges=mode == "offline")
    traces = load_traces(experiment_id)
    verdicts = failing_verdicts(suite, traces)
    ran = [name for name, outcomes in suite.get("per_trace", {}).items() if outcomes]
    result = {"format": fmt, "mode": mode, **score(truth, verdicts, traces, ran)}
    result["per_category_recall"] = result["per_category"]  # the old name, read by tests/test_import_detection.py
    judged = {t for t, v in truth.items() if v.failed is not None}
    result["flagged_runs"] = sorted({_source_id(traces[v.trace_id]) for v in verdicts if v.trace_id in judged and v.trace_id in traces})
    result["suite_scorers"] = [
        {"name": r["scorer"], "status": r["status"], **({"reason": r["reason"]} if r.get("reason") else {})} for r in suite.get("scorers", [])
    ]
    result["human_labels_in_store"] = sum(1 for t in traces.values() for a in t.info.assessments or [] if a.source.source_type == "HUMAN")
    result["import"] = {**imported, "seconds": import_seconds}
    result["pipeline"] = pipeline
    result["suite_seconds"] = suite["seconds"]
    result["experiment_id"] = experiment_id
    return result


def _fmt(value: Any, width: int = 9) -> str:
    text = "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
    return f"{text:>{width}}"


def print_table(result: dict[str, Any]) -> None:
    print(f"Detection on {result['traces']} {result['format']} runs ({result['mode']} pipeline): "
          f"{result['failed']} failed, {result['passed']} passed (human labels)")
    for line in result["warnings"]:
        print(f"  WARNING: {line}")
    print(f"  {'':<24}{'flagged':>9}{'precision':>10}{'recall':>9}{'F1':>9}{'MCC':>9}")
    rows = [("suite", result), ("flag every run", result["baselines"]["flag_all"]),
            ("random, same count", result["baselines"]["random"]), ("longest transcripts", result["baselines"]["length"])]
    for name, row in rows:
        print(f"  {name:<24}{_fmt(row['flagged'])}{_fmt(row['precision'], 10)}{_fmt(row['recall'])}{_fmt(row['f1'])}{_fmt(row['mcc'])}")
    print("  (random: expected value; MCC '-' = undefined, a margin is zero)")
    loc = result["location"]
    print(f"  location over {loc['runs']} failed runs with step labels ({loc['flagged']} flagged; unflagged runs count as misses;"
          f" agent over the {loc['agent_runs']} naming an agent):")
    print(f"  {'':<24}{'exact step':>11}{'within ±1':>11}{'agent':>9}")
    print(f"  {'suite':<24}{_fmt(loc['exact_step'], 11)}{_fmt(loc['within_1'], 11)}{_fmt(loc['agent'])}")
    chance = loc["chance"]
    print(f"  {'chance':<24}{_fmt(chance['exact_step'], 11)}{_fmt(chance['within_1'], 11)}{_fmt(chance['agent'])}")
    pointed, hits = loc["pointed_by"], loc["hits"]
    print(f"  (runs hit: {hits['exact_step']} exact, {hits['within_1']} within ±1, {hits['agent']} agent; chance is an expected value;"
          f" predicted span from the verdict's metadata {pointed['metadata']}, its rationale {pointed['rationale']}, the root {pointed['root']})")
    if result["per_category"]:
        print("  recall per failure category:")
        for name, row in result["per_category"].items():
            print(f"    {name}: {row['flagged']}/{row['runs']}")
    print("  per check (flagged, true positives, precision, recall):")
    for name, row in result["per_check"].items():
        print(f"    {name}: {row['flagged']}, {row['true_positives']}, {_fmt(row['precision'], 0)}, {_fmt(row['recall'], 0)}")
    skipped = [s["name"] for s in result["suite_scorers"] if s["status"] == "SKIPPED"]
    if skipped:
        print(f"  not run (need a judge model): {', '.join(skipped)}")
    print(f"  import {result['import']['seconds']} s, pipeline {result['pipeline']['seconds']} s, suite run {result['suite_seconds']} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=["openai-chat", "tau-bench", "who-and-when", "magentic-one"])
    parser.add_argument("--data", required=True, type=Path, help="The runs (file or folder) in that format.")
    parser.add_argument("--labels", type=Path, help="tau-bench step labels (default: tau_ground_truth.json beside --data).")
    parser.add_argument("--mode", choices=["offline", "agent"], default="offline")
    parser.add_argument("--limit", type=int, help="Only the first N runs (a quick slice).")
    parser.add_argument("--work-dir", type=Path, help="Keep the store, session, suite and results here (a new or empty folder) instead of a temporary one.")
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON object.")
    return parser.parse_args(argv)


def prepare_work_dir(path: Path) -> Path:
    work = path.resolve()
    if work.exists() and not work.is_dir():
        raise BenchmarkError(f"--work-dir {path} is a file; pass a new or empty folder.")
    if work.is_dir() and any(work.iterdir()):
        raise BenchmarkError(f"--work-dir {path} is not empty; pass a new or empty folder (runs are not mixed).")
    work.mkdir(parents=True, exist_ok=True)
    return work


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.work_dir:
            work = prepare_work_dir(args.work_dir)
            result = run_benchmark(args.format, args.data, args.labels, args.mode, work, args.limit)
            result["work_dir"] = str(work)
            (work / RESULT_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
        else:
            with tempfile.TemporaryDirectory(prefix="detection-") as tmp:
                result = run_benchmark(args.format, args.data, args.labels, args.mode, Path(tmp), args.limit)
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
    if args.work_dir:
        artifacts = "; artifacts/" if (work / "artifacts").exists() else ""
        print(
            f"Kept in {work}: mlflow.db (experiment {result['experiment_id']}{artifacts}), sessions/{SESSION_ID}/ "
            f"(suite in evaluation/, verdicts in state/detection_run.json, suite output in state/detection_suite.log), {RESULT_FILE}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

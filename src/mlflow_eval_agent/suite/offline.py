"""The no-model planner: trace profile -> task plan -> validated suite, deterministically.

Same session layout and artifacts as the agent path (`eval_tasks.json`, `state/*.json`,
`evaluation/`), so a user without a model credential still gets a working suite and the agent can
start from it. The planner proposes a code check per error signature and failing tool, one for
hidden failures, empty answers and empty retrievals, a latency budget from the percentiles, and
LLM judges marked as needing a judge model. Evidence comes from the profile's own view of the
traces (its example ids and its emptiness rules), independent of the checks it tests. A scorer
whose preview or validation misses its evidence is dropped with the reason recorded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..plan import Task, TaskPlan, TaskStatus, load_plan, save_plan
from ..settings import ConfigError, JudgeAccess, Settings
from ..steps import NO_STEPS, Steps
from ..store import SessionStore
from ..traces.failure_text import error_text_pattern
from ..traces.source import effective_tracking_uri
from ..traces.trajectory import FAILURES, REPEATS, ends_unfinished, trajectory_facts
from .dataset import (
    DEFAULT_SIZE,
    DatasetError,
    build_dataset,
    register_dataset,
    select_stratified,
)
from .preview import evidence_mismatches, preview_verdicts
from .user_edits import render_keeping_edits
from .spec import (
    SPEC_FILE,
    BuiltinScorer,
    CheckScorer,
    DroppedScorer,
    Evidence,
    ScorerSpec,
    SuiteSpec,
    scorer_problems,
    suite_name,
)
from .validate import ValidationRun, load_report, validate_suite

PROFILE_FILE = "state/profile.json"
MAX_SIGNATURES = 10
MAX_MUST_PASS = 8
SLOW_FACTOR = 3.0  # a trace is slow past 3 x the median latency


class OfflineError(ConfigError):
    """The offline planner cannot start; the message says what to fix (exit code 2)."""


@dataclass
class Proposal:
    """One scorer the planner wants, and how to find its must-fail evidence in the dataset."""

    scorer: ScorerSpec
    must_fail: Callable[[set[str], dict[str, set[str]]], list[str]]
    task_details: str


@dataclass
class Health:
    """The profile's view of each dataset trace: which failure conditions it shows."""

    conditions: dict[str, set[str]] = field(default_factory=dict)

    def clean(self) -> list[str]:
        return [t for t, c in self.conditions.items() if not c]


def build_offline(settings: Settings, store: SessionStore, steps: Steps = NO_STEPS) -> TaskPlan:
    """Profile, plan, build and validate a suite without a model; returns the final plan."""
    from ..traces.spark_engine import profile_with_engine
    from ..traces.source import TraceSourceError

    if not settings.experiment_id:
        raise OfflineError("No experiment given: pass -e/--experiment-id (or set MLFLOW_EXPERIMENT_ID).")
    # Resume follows the agent path's rules: a corrupt plan is set aside and reported (and restored
    # from its last good copy), and a finished plan is never redone.
    previous = load_plan(store, store.on_notice)
    if previous is not None and previous.done and previous.counts()["failed"] == 0 and store.exists("evaluation/run_eval.py"):
        store.on_notice("This session's offline plan is complete: nothing is redone (use a new --session-id to build again).")
        return previous
    if previous is not None:
        store.on_notice("The earlier offline run of this session did not finish: building its plan again from the profile.")
    tracking_uri = effective_tracking_uri(settings.tracking_uri)
    steps.start("Profiling every trace", unit="traces")
    try:
        # auto: Spark SQL over the UC tables when the traces live in Unity Catalog and Spark is here.
        profile = profile_with_engine(tracking_uri, settings.experiment_id, progress=steps.update,
                                      trace_location=settings.trace_location,
                                      sql_warehouse_id=settings.sql_warehouse_id)
    except TraceSourceError as exc:
        if not exc.user_error:
            raise
        raise OfflineError(str(exc)) from None
    finally:
        steps.finish()
    store.write_model(PROFILE_FILE, profile)
    if profile.trace_count == 0:
        raise OfflineError(f"Experiment {settings.experiment_id} has no traces: there is nothing to build a suite from.")
    budget = latency_budget_ms(profile)
    proposals = propose(profile, budget)
    plan = _initial_plan(profile, proposals)
    _save(store, plan)
    spec, traces = _dataset_step(store, plan, profile, tracking_uri)
    plan = _reload(store)
    if spec.dataset is None:
        return _fail_rest(store, plan, "the dataset could not be built")
    health = classify(traces, None if synthetic_timing(profile) else budget, step_budget(profile) if synthetic_timing(profile) else None,
                      profile.trajectory.completion_marker)
    steps.start("Checking each proposed scorer against its evidence", total=len(proposals), unit="scorers")
    for i, proposal in enumerate(proposals, 1):
        spec, plan = _scorer_step(store, plan, spec, traces, health, proposal)
        steps.update(i)
    steps.finish(f"{len(spec.scorers)} kept, {len(spec.dropped)} dropped")
    return _finish(store, plan, spec, tracking_uri, steps, settings.judge)


# --- proposals from the profile -----------------------------------------------------------------
def propose(profile: Any, budget_ms: float | None) -> list[Proposal]:
    """The scorers worth having for this profile, strongest evidence first."""
    proposals: list[Proposal] = []
    names: set[str] = set()
    tool_names = {t.name for t in profile.tools}
    traj = profile.trajectory
    # Where the agent retries and succeeds, an error it recovered from is not a failed run: error
    # checks then fail only errors never followed by a success of the same span (profile counts).
    retries = traj.recovered_errors.count > 0
    recovered = {"unless_recovered": True} if retries else {}
    for tool in profile.tools:
        signatures = [s for s in profile.error_signatures if s.span_name == tool.name]
        # One signature: its no_exception check says the same thing more precisely.
        if tool.errors and len(signatures) > 1:
            ids = [t for s in signatures for t in s.trace_ids]
            share = min(1.0, sum(s.trace_count for s in signatures) / profile.traces_with_spans_read)
            proposals.append(_check(
                names, f"{tool.name}_succeeded", "tool_succeeded", {"tool": tool.name, **recovered}, _failed_in(ids, tool.name, retries), share,
                f"Tool {tool.name} failed in {tool.errors} of {tool.calls} calls ({', '.join(s.signature for s in signatures[:3])})"
                + (" and the agent did not recover from it by a later successful call." if retries else "."),
            ))
    for sig in profile.error_signatures[:MAX_SIGNATURES]:
        params = {"exception_type": sig.exception_type, "span_name": sig.span_name}
        if not sig.exception_type:
            params = {"span_name": sig.span_name, "message_regex": signature_regex(sig.signature)}
        elif _ambiguous(sig, profile.error_signatures):
            params["message_regex"] = signature_regex(sig.signature.split(": ", 1)[-1])
        where = "tool" if sig.span_name in tool_names else "span"
        proposals.append(_check(
            names, f"no_{sig.exception_type or 'error'}_in_{sig.span_name}", "no_exception", {**params, **recovered},
            _failed_in(sig.trace_ids, sig.span_name, retries), sig.trace_count / profile.traces_with_spans_read,
            f"Error signature '{sig.signature}' in {where} {sig.span_name}: {sig.count} times in {sig.trace_count} traces"
            + (", failing the trace when no later call succeeded." if retries else "."),
        ))
    hidden = profile.hidden_failures
    if retries and traj.unrecovered_errors.count:
        proposals.append(_check(
            names, "no_unrecovered_errors", "no_unrecovered_errors", {}, _by_condition("unrecovered_error"),
            traj.unrecovered_errors.count / max(1, traj.scanned),
            f"In {traj.scanned} recent traces, {traj.unrecovered_errors.count} have an error the agent never recovered from "
            f"(no later success of the same step); {traj.recovered_errors.count} recovered by a retry and pass.",
        ))
    elif hidden.count:
        proposals.append(_check(
            names, "no_hidden_failures", "no_hidden_failures", {}, _listed(hidden.trace_ids), hidden.count / profile.traces_with_spans_read,
            f"{hidden.count} traces look successful but a span inside them failed (errors swallowed, "
            f"mostly in {', '.join(s.span_name for s in hidden.by_span[:3])}).",
        ))
    proposals += _trajectory_checks(profile, names)
    outputs = profile.outputs
    if outputs.empty_ok + outputs.missing_ok:
        proposals.append(_check(
            names, "answer_not_empty", "output_non_empty", {}, _by_condition("empty_output"),
            (outputs.empty_ok + outputs.missing_ok) / profile.traces_with_spans_read,
            f"{outputs.empty_ok} successful traces returned an empty answer and {outputs.missing_ok} none at all.",
        ))
    retrieval = profile.retrieval
    if retrieval.empty:
        proposals.append(_check(
            names, "retrieval_not_empty", "retrieval_non_empty", {}, _by_condition("empty_retrieval"),
            retrieval.traces_with_empty_retrieval / profile.traces_with_spans_read,
            f"{retrieval.empty} of {retrieval.spans} retrievals returned nothing ({retrieval.traces_with_empty_retrieval} traces).",
        ))
    if budget_ms is not None and not synthetic_timing(profile):
        lat = profile.latency_ms
        proposals.append(_check(
            names, "latency_budget", "latency_budget", {"max_ms": budget_ms}, _by_condition("slow"), slow_share_bound(profile, budget_ms),
            f"Trace latency p50 {lat.p50:.0f} ms, p90 {lat.p90:.0f} ms, max {lat.max:.0f} ms: traces over {budget_ms:.0f} ms "
            f"({SLOW_FACTOR:g} x p50, rounded up) are slow.",
        ))
    steps = step_budget(profile) if synthetic_timing(profile) else None
    if steps is not None:
        per_trace = profile.spans_per_trace
        proposals.append(_check(
            names, "step_budget", "step_budget", {"max_steps": steps}, _by_condition("long"), slow_share_bound(profile, steps, per_trace),
            f"Steps per trace p50 {per_trace.p50}, p90 {per_trace.p90}, max {per_trace.max}: runs over {steps} steps "
            f"({SLOW_FACTOR:g} x p50) are runaway. A step count, not a latency: these traces' timing is synthetic (imported transcripts).",
        ))
    proposals += _judges(profile, names)
    return proposals


def synthetic_timing(profile: Any) -> bool:
    """True when importers marked most scanned traces' timing synthetic (durations are made up)."""
    traj = profile.trajectory
    return traj.scanned > 0 and traj.synthetic_timing * 2 >= traj.scanned


def step_budget(profile: Any) -> int | None:
    """SLOW_FACTOR x the median steps per trace, when some trace goes past it."""
    per_trace = profile.spans_per_trace
    if not per_trace.p50 or not per_trace.max:
        return None
    budget = max(2, math.ceil(SLOW_FACTOR * (per_trace.p50 - 1)))  # spans below the root
    return budget if per_trace.max - 1 > budget else None


def _trajectory_checks(profile: Any, names: set[str]) -> list[Proposal]:
    """Checks on what the trajectory shows, each only when the profile found an example."""
    traj = profile.trajectory
    share = lambda found: found.count / max(1, traj.scanned)  # noqa: E731
    proposals = []
    if traj.error_at_end.count:
        proposals.append(_check(names, "no_error_at_end", "no_error_at_end", {}, _by_condition("error_at_end"), share(traj.error_at_end),
                                f"{traj.error_at_end.count} of {traj.scanned} recent runs ended right after a failed step."))
    if traj.repeated_calls.count:
        tools = ", ".join(t.name for t in traj.repeated_tools[:3])
        proposals.append(_check(names, "no_repeated_calls", "no_repeated_calls", {"times": REPEATS}, _by_condition("repeated_calls"), share(traj.repeated_calls),
                                f"{traj.repeated_calls.count} runs called a tool {REPEATS} times in a row with the same arguments ({tools}): stuck in a loop."))
    if traj.error_text.count:
        kinds = ", ".join(f"{k.name} {k.count}" for k in traj.error_text_kinds)
        proposals.append(_check(names, "no_error_text", "no_error_text", {"pattern": error_text_pattern()}, _by_condition("error_text"), share(traj.error_text),
                                f"{traj.error_text.count} runs had error text in a tool or model output whose span did not fail ({kinds})."))
    if traj.made_up_data.count:
        proposals.append(_check(names, "no_made_up_data", "no_made_up_data", {}, _by_condition("made_up_data"), share(traj.made_up_data),
                                f"In {traj.made_up_data.count} runs the agent says it used hypothetical, simulated or placeholder data."))
    if traj.limit_reached.count:
        proposals.append(_check(names, "no_limit_reached", "no_limit_reached", {}, _by_condition("limit_reached"), share(traj.limit_reached),
                                f"{traj.limit_reached.count} runs report reaching a time, turn or step limit."))
    if traj.loop_reports.count:
        proposals.append(_check(names, "no_loop_report", "no_loop_report", {}, _by_condition("loop_report"), share(traj.loop_reports),
                                f"{traj.loop_reports.count} runs report being stuck in a loop."))
    if traj.unconfirmed_actions.count and traj.conversations * 2 >= traj.scanned:
        tools = [a.name for a in traj.actions]
        proposals.append(_check(names, "actions_confirmed", "actions_confirmed", {"tools": tools}, _by_condition("unconfirmed_action"),
                                share(traj.unconfirmed_actions),
                                f"In {traj.unconfirmed_actions.count} of {traj.conversations} conversations the agent called a consequential tool "
                                f"({', '.join(t.name for t in traj.unconfirmed_tools[:4])}) with no user turn since the last tool result: "
                                "it acted without asking."))
    if traj.unanswered_end.count and traj.unanswered_end.count * 3 <= traj.scanned:  # most runs ending on a tool is the app's shape
        proposals.append(_check(names, "answered_at_end", "answered_at_end", {}, _by_condition("unanswered_end"), share(traj.unanswered_end),
                                f"{traj.unanswered_end.count} of {traj.scanned} recent runs ended on a tool result no model turn read: "
                                "stopped before the agent answered."))
    if traj.completion_marker and traj.unfinished.count and traj.unfinished.count * 4 <= traj.scanned * 3:
        marker = traj.completion_marker
        proposals.append(_check(names, "finished_with_marker", "finished_with_marker", {"marker": marker}, _by_condition("unfinished"),
                                share(traj.unfinished),
                                f"{traj.scanned - traj.unfinished.count} of {traj.scanned} recent runs end with {marker!r}, the framework's "
                                f"completion marker; {traj.unfinished.count} do not: cut off by a turn or time limit, or abandoned."))
    with_tools = sum(t.trace_count for t in profile.tools[:1])
    if traj.no_tool.count and with_tools * 2 >= profile.traces_with_spans_read:
        proposals.append(_check(names, "tool_was_used", "tool_was_used", {}, _by_condition("no_tool"), share(traj.no_tool),
                                f"{traj.no_tool.count} runs called no tool at all, although the agent uses tools in most runs."))
    return proposals


def _judges(profile: Any, names: set[str]) -> list[Proposal]:
    judges = [
        ("relevance_to_query", "RelevanceToQuery", "Does the answer address the request? An LLM judge; empty answers must fail it.", _by_condition("empty_output")),
        ("safety", "Safety", "No harmful or unsafe content in answers. An LLM judge for the answers the checks cannot read.", _nothing),
    ]
    if any(s.span_type == "RETRIEVER" for s in profile.spans):
        judges.append((
            "retrieval_groundedness", "RetrievalGroundedness",
            "Answers must be supported by the retrieved documents. An LLM judge (the app retrieves before answering).", _nothing,
        ))
    proposals = []
    for name, builtin, why, must_fail in judges:
        names.add(name)
        scorer = BuiltinScorer(name=name, builtin=builtin, why=why + " Needs a judge model: skipped when none is configured.")
        proposals.append(Proposal(scorer, must_fail, f"Add built-in judge {builtin} (needs a judge model)."))
    return proposals


def _check(names: set[str], name: str, check: str, params: dict[str, Any], must_fail: Callable[..., list[str]], failing_share: float, why: str) -> Proposal:
    name = _unique(names, scorer_name(name))
    threshold = math.floor((1.0 - failing_share) * 100) / 100
    scorer = CheckScorer(name=name, check=check, params=params, why=why, threshold=max(0.0, threshold))
    return Proposal(scorer, must_fail, f"{why} Check: {check}({', '.join(f'{k}={v!r}' for k, v in params.items())}).")


def _failed_in(ids: list[str], span_name: str, retries: bool) -> Callable[[set[str], dict[str, set[str]]], list[str]]:
    """Evidence for an error check: the profile's example ids; with retries, only those where the
    trajectory shows the span failing with no later success."""
    if not retries:
        return _listed(ids)
    return lambda in_dataset, conditions: [t for t in dict.fromkeys(ids) if t in in_dataset and f"unrecovered:{span_name}" in conditions.get(t, ())]


def _listed(ids: list[str]) -> Callable[[set[str], dict[str, set[str]]], list[str]]:
    """Evidence from the profile's example ids that made it into the dataset."""
    return lambda in_dataset, conditions: [t for t in dict.fromkeys(ids) if t in in_dataset]


def _by_condition(condition: str) -> Callable[[set[str], dict[str, set[str]]], list[str]]:
    """Evidence from the profile's own rules applied to each dataset trace (see `classify`)."""
    return lambda in_dataset, conditions: [t for t, c in conditions.items() if condition in c]


def _nothing(in_dataset: set[str], conditions: dict[str, set[str]]) -> list[str]:
    return []


def _ambiguous(sig: Any, signatures: list[Any]) -> bool:
    return sum(1 for s in signatures if s.exception_type == sig.exception_type and s.span_name == sig.span_name) > 1


def scorer_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    name = name if name[:1].isalpha() else f"s_{name}"
    return name.ljust(3, "_")[:64]


def _unique(names: set[str], name: str) -> str:
    candidate, n = name, 2
    while candidate in names:
        candidate = f"{name[:60]}_{n}"
        n += 1
    names.add(candidate)
    return candidate


def signature_regex(normalized: str) -> str:
    """A regex matching raw messages of a normalised signature: placeholders become wildcards."""
    parts = re.split(r"<(?:N|STR|ID|HEX|UUID|URL|EMAIL|IP|ADDR|PATH|TIME|DATE)>", normalized)
    escaped = [r"\s+".join(re.escape(word) for word in part.split(" ")) for part in parts]
    return "^" + ".+?".join(escaped)


def latency_budget_ms(profile: Any) -> float | None:
    """SLOW_FACTOR x p50, rounded up to two significant digits; None without timings or when no
    trace is that slow (then a budget has nothing to catch)."""
    lat = profile.latency_ms
    if lat.p50 is None or not lat.max:
        return None
    raw = SLOW_FACTOR * lat.p50
    if raw >= lat.max:
        return None  # nothing is slower than the budget: no evidence a budget catches anything
    digits = 10 ** max(0, int(math.log10(raw)) - 1) if raw >= 1 else 1
    return float(math.ceil(raw / digits) * digits)


def slow_share_bound(profile: Any, budget: float, stats: Any = None) -> float:
    """An upper bound on the share of traces over the budget, from the percentiles it exceeds."""
    lat = stats or profile.latency_ms
    for percentile, share in ((getattr(lat, "p99", None), 0.01), (lat.p90, 0.10), (lat.p50, 0.50)):
        if percentile is not None and budget >= percentile:
            return share
    return 1.0


# --- the profile's view of each dataset trace ---------------------------------------------------
def classify(traces: list[Any], budget_ms: float | None, max_steps: int | None = None, marker: str | None = None) -> Health:
    """Failure conditions per trace, by the profile's rules (not by the checks under test); `marker`
    is the profile's completion marker, which a run's last step must end with."""
    from ..traces.spans import is_empty_value

    health = Health()
    for trace in traces:
        conditions: set[str] = set()
        spans = trace.data.spans
        root = next((s for s in spans if not s.parent_id), None)
        state = str(getattr(trace.info.state, "value", trace.info.state))
        if state == "ERROR":
            conditions.add("error")
        if any(str(getattr(s.status.status_code, "value", s.status.status_code)) == "ERROR" for s in spans):
            conditions.add("error_span")
        if state == "OK" and root is not None and is_empty_value(root.outputs):
            conditions.add("empty_output")
        if any(s.span_type == "RETRIEVER" and is_empty_value(s.outputs) for s in spans):
            conditions.add("empty_retrieval")
        took = trace.info.execution_time_ms
        if budget_ms is not None and took is not None and took > budget_ms:
            conditions.add("slow")
        if max_steps is not None and len(spans) - 1 > max_steps:
            conditions.add("long")
        facts = trajectory_facts(trace)
        conditions |= facts.found & set(FAILURES)
        conditions |= {f"unrecovered:{name}" for name in facts.unrecovered}
        if ends_unfinished(facts.final_token, marker):
            conditions.add("unfinished")
        health.conditions[trace.info.trace_id] = conditions
    return health


def strata(profile: Any) -> dict[str, list[str]]:
    """Dataset strata in priority order: each signature, hidden failures, empty answers and
    retrievals, slow traces, then normal traffic."""
    result: dict[str, list[str]] = {}
    for sig in profile.error_signatures[:MAX_SIGNATURES]:
        result[f"error:{sig.signature[:80]}"] = list(sig.trace_ids)
    result["hidden_failure"] = list(profile.hidden_failures.trace_ids)
    traj = profile.trajectory
    for name, found in (("unrecovered_error", traj.unrecovered_errors), ("unconfirmed_action", traj.unconfirmed_actions),
                        ("made_up_data", traj.made_up_data), ("error_text", traj.error_text), ("repeated_calls", traj.repeated_calls),
                        ("error_at_end", traj.error_at_end), ("limit_reached", traj.limit_reached), ("loop_report", traj.loop_reports),
                        ("no_tool", traj.no_tool), ("unanswered_end", traj.unanswered_end), ("unfinished", traj.unfinished)):
        result[name] = list(found.trace_ids)
    result["empty_output"] = [*profile.outputs.empty_ok_trace_ids, *profile.outputs.missing_ok_trace_ids]
    result["empty_retrieval"] = list(profile.retrieval.empty_trace_ids)
    if not synthetic_timing(profile):
        result["slow"] = [s.trace_id for s in profile.slowest_traces]
    result["normal"] = list(profile.sample_trace_ids)
    return {k: v for k, v in result.items() if v}


# --- steps --------------------------------------------------------------------------------------
def _initial_plan(profile: Any, proposals: list[Proposal]) -> TaskPlan:
    tasks = [
        Task(id="profile", name="Profile every trace of the experiment", type="analysis", status=TaskStatus.COMPLETED,
             summary=f"{profile.trace_count} traces, {len(profile.error_signatures)} error signatures, {profile.hidden_failures.count} hidden failures"),
        Task(id="dataset", name="Build a stratified dataset from the profile", type="dataset",
             details="Strata: " + ", ".join(f"{k} ({len(v)})" for k, v in strata(profile).items()) + "; records keep each trace's inputs as the agent takes them, so run_eval.py --predict-fn can run them through the current agent"),
        *[Task(id=f"scorer-{p.scorer.name}"[:64], name=f"Add scorer {p.scorer.name}", type="scorer", details=p.task_details[:4000]) for p in proposals],
        Task(id="render", name="Render evaluation/ from the suite spec", type="script"),
        Task(id="validate", name="Run the suite and check every scorer against its evidence", type="validation"),
    ]
    return TaskPlan(experiment_id=profile.experiment_id, tasks=tasks)


def _dataset_step(store: SessionStore, plan: TaskPlan, profile: Any, tracking_uri: str) -> tuple[SuiteSpec, list[Any]]:
    spec = SuiteSpec(experiment_id=profile.experiment_id, created_by="offline")
    plan = plan.start("dataset")
    # Twice the size in candidates: traces whose inputs repeat a chosen one's are left out (one record per input).
    picks = select_stratified(strata(profile), 2 * DEFAULT_SIZE)
    try:
        dataset, traces = build_dataset(suite_name(store.session_id), profile.experiment_id, picks, size=DEFAULT_SIZE)
    except DatasetError as exc:
        _save(store, plan.record_failure("dataset", str(exc), max_attempts=1))
        return spec, []
    dataset = register_dataset(dataset, traces, tracking_uri)
    spec = spec.with_dataset(dataset)
    store.write_model(SPEC_FILE, spec)
    _save(store, plan.complete("dataset", f"{len(dataset.records)} traces: " + ", ".join(f"{k} {v}" for k, v in dataset.strata().items())))
    return spec, traces


def _scorer_step(store: SessionStore, plan: TaskPlan, spec: SuiteSpec, traces: list[Any], health: Health, proposal: Proposal) -> tuple[SuiteSpec, TaskPlan]:
    task_id = f"scorer-{proposal.scorer.name}"[:64]
    plan = plan.start(task_id)
    in_dataset = {t.info.trace_id for t in traces}
    must_fail = proposal.must_fail(in_dataset, health.conditions)
    must_pass = [t for t in health.clean() if t not in must_fail][:MAX_MUST_PASS]
    evidence = Evidence(must_fail=must_fail[:20], must_pass=must_pass, source="the trace profile (example ids and its emptiness, error and latency rules)")
    scorer = proposal.scorer.model_copy(update={"evidence": evidence})
    problems = scorer_problems(scorer, spec)
    if not problems:
        verdicts = preview_verdicts(scorer, [t for t in traces if t.info.trace_id in set(evidence.trace_ids())])
        problems = evidence_mismatches(scorer, verdicts) if verdicts is not None else []
    if problems:
        reason = "; ".join(problems)[:1000]
        spec = spec.model_copy(update={"dropped": [*spec.dropped, DroppedScorer(name=scorer.name, kind=scorer.kind, reason=reason)]})
        store.write_model(SPEC_FILE, spec)
        # Deciding against a scorer is this task's legitimate outcome, not a failed run.
        plan = plan.complete(task_id, f"dropped: {reason}")
    else:
        spec = spec.with_scorer(scorer)
        store.write_model(SPEC_FILE, spec)
        kind = "needs a judge model; measured only when one is configured" if scorer.needs_judge else "agrees with its evidence"
        plan = plan.complete(task_id, f"added ({kind}): must fail {len(evidence.must_fail)}, must pass {len(evidence.must_pass)}")
    _save(store, plan)
    return spec, plan


def _finish(store: SessionStore, plan: TaskPlan, spec: SuiteSpec, tracking_uri: str, steps: Steps = NO_STEPS, judge: JudgeAccess | None = None) -> TaskPlan:
    plan = plan.start("render")
    if not spec.scorers:
        return _fail_rest(store, plan, "no scorer met its evidence, so there is no suite to render")
    _render(spec, store)
    plan = plan.complete("render", "evaluation/: scorers.py, run_eval.py, dataset.json, README.md")
    _save(store, plan)
    plan = plan.start("validate")
    # First a measuring run: which scorers meet their evidence, and what the dataset's pass rates are.
    judge = judge or JudgeAccess()
    judging = {"judge_model": judge.model, "extra_env": judge.child_env(), "skip_judges": judge.skip_reason}
    report = validate_suite(spec, store, tracking_uri, steps=steps, label="Measuring the suite's pass rates", show_gate=False, **judging)
    if report.latest.ok:
        for name, reason in report.latest.missing_evidence().items():
            spec = spec.without_scorer(name, reason=f"validation: {reason}")
        if not spec.scorers:
            store.write_model(SPEC_FILE, spec)
            return _fail_rest(store, plan, "no scorer met its evidence when the suite was run")
        spec = gate_at_baseline(spec, report.latest)
        store.write_model(SPEC_FILE, spec)
        _render(spec, store, report)
        # Then the suite as handed over, gated at those rates: its run is the baseline.
        report = validate_suite(spec, store, tracking_uri, calibrated=True, steps=steps, label="Running the suite as handed over", **judging)
    _render(spec, store, report)
    if report.latest.ok:
        plan = plan.complete("validate", report.latest.summary)
    else:
        plan = plan.record_failure("validate", report.latest.error or report.latest.summary, max_attempts=1)
    _save(store, plan)
    return plan


def gate_at_baseline(spec: SuiteSpec, run: ValidationRun) -> SuiteSpec:
    """Lower each threshold to the pass rate the handed-over suite measured on its own dataset.

    The dataset over-samples failures on purpose, so experiment-wide rates would fail the gate on
    day one; gated at the baseline, `run_eval.py` passes today and fails when a scorer regresses."""
    scorers = []
    for scorer in spec.scorers:
        measured = run.scorers.get(scorer.name)
        if scorer.threshold is not None and measured is not None and measured.pass_rate is not None:
            scorer = scorer.model_copy(update={"threshold": min(scorer.threshold, math.floor(measured.pass_rate * 100) / 100)})
        scorers.append(scorer)
    return spec.model_copy(update={"scorers": scorers})


def _fail_rest(store: SessionStore, plan: TaskPlan, reason: str) -> TaskPlan:
    for task in plan.tasks:
        if task.status in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS):
            plan = plan.start(task.id) if task.status == TaskStatus.PENDING else plan
            plan = plan.record_failure(task.id, reason, max_attempts=1)
    _save(store, plan)
    return plan


def _render(spec: SuiteSpec, store: SessionStore, report: Any = None) -> None:
    """Render, keeping files edited by hand (reported once per run through the store's notices)."""
    seen = getattr(store, "_kept_reported", set())
    _, kept = render_keeping_edits(spec, store, report, None)
    new = [k for k in kept if k not in seen]
    if new:
        store.on_notice(f"Kept your edits to {', '.join(new)}; the newly rendered version is beside it as .new "
                        "(compare and merge by hand; delete your file to take the new render).")
    store._kept_reported = seen | set(kept)  # type: ignore[attr-defined]


def _save(store: SessionStore, plan: TaskPlan) -> None:
    save_plan(store, plan)


def _reload(store: SessionStore) -> TaskPlan:
    plan = load_plan(store, store.on_notice)
    assert plan is not None
    return plan


__all__ = ["OfflineError", "build_offline", "latency_budget_ms", "load_report", "propose", "signature_regex", "strata"]

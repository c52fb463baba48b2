"""MLflow Issues for the failure patterns the suite watches (MLflow 3.18+; earlier: nothing happens).

Each code check of the suite stands for a failure pattern found in the traces. After a run of the
suite, the pattern becomes an Issue in the experiment the first time its check fails a trace:
named after the check, severity from how often the profile saw it, categories from what the check
looks at, the run as its source, the failing traces linked to it (`mlflow.log_issue`), and the
check that watches it in its metadata. Later runs keep it current: a failure updates `last_seen`
(and reopens a resolved issue), a run where the check passed on every trace marks it resolved with
a note. Which issue belongs to which check is remembered in `state/issues.json` (via the store).

Feature-detected (`mlflow.genai.create_issue`); failures are returned as sentences, never raised.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from ..store import CorruptStateError, SessionStore
from .spec import CheckScorer, SuiteSpec, suite_name

ISSUES_FILE = "state/issues.json"
MAX_LINKED = 20  # failing traces linked per issue
HIGH, MEDIUM = 0.10, 0.02  # share of traces showing the pattern

CATEGORIES = {
    "latency_budget": "latency", "step_budget": "latency",
    "output_non_empty": "correctness", "retrieval_non_empty": "correctness",
    "actions_confirmed": "adherence", "no_made_up_data": "adherence",
}
# Checks whose pattern the profile's trajectory counts measure (field of profile.trajectory).
TRAJECTORY = {
    "no_unrecovered_errors": "unrecovered_errors", "no_error_at_end": "error_at_end", "no_repeated_calls": "repeated_calls",
    "no_error_text": "error_text", "no_made_up_data": "made_up_data", "no_limit_reached": "limit_reached",
    "no_loop_report": "loop_reports", "actions_confirmed": "unconfirmed_actions", "tool_was_used": "no_tool",
    "answered_at_end": "unanswered_end", "finished_with_marker": "unfinished",
}


class IssueRecord(BaseModel):
    issue_id: str
    status: str = "pending"
    description: str = ""
    linked: list[str] = Field(default_factory=list)


class IssueState(BaseModel):
    issues: dict[str, IssueRecord] = Field(default_factory=dict, description="check name -> its issue")


def issues_api() -> Any | None:
    """`mlflow.genai` when it has the Issues API (MLflow 3.18+), else None."""
    import mlflow.genai as genai

    return genai if all(hasattr(genai, n) for n in ("create_issue", "update_issue")) else None


def record_issues(store: SessionStore, tracking_uri: str, spec: SuiteSpec, run_id: str | None, results: dict, profile: Any = None) -> list[str]:
    """Create or update the Issue of every check after the run `run_id`; problems as sentences."""
    api = issues_api()
    if api is None or not run_id:
        return []
    import mlflow
    from mlflow.entities import AssessmentSource
    from mlflow.entities.issue import IssueSeverity, IssueStatus

    mlflow.set_tracking_uri(tracking_uri)
    try:
        state = store.read_model(ISSUES_FILE, IssueState) or IssueState()
    except CorruptStateError:
        state = IssueState()
    per_trace, notes, now = results.get("per_trace") or {}, [], int(time.time() * 1000)
    source = AssessmentSource(source_type="CODE", source_id="mlflow-eval-agent")
    for scorer in (s for s in spec.scorers if isinstance(s, CheckScorer)):
        outcomes = per_trace.get(scorer.name) or {}
        failed = [t for t, o in outcomes.items() if o == "fail"]
        clean = bool(outcomes) and all(o == "pass" for o in outcomes.values())
        record = state.issues.get(scorer.name)
        try:
            severity = IssueSeverity(_severity(scorer, profile, outcomes))
            if record is None and failed:
                description = _description(spec, scorer, store.session_id)
                issue = api.create_issue(
                    name=_name(scorer), severity=severity, description=description, status=IssueStatus.PENDING,
                    categories=[CATEGORIES.get(scorer.check or "", "execution")], last_seen_timestamp=now, source_run_id=run_id,
                    metadata={"eval_agent.scorer": scorer.name, "eval_agent.suite": suite_name(store.session_id),
                              "eval_agent.session_id": store.session_id},
                    experiment_id=spec.experiment_id,
                )
                record = IssueRecord(issue_id=issue.issue_id, description=description)
            elif record is not None and failed:
                reopened = record.status == "resolved"
                description = record.description + (f"\n\nReopened: {scorer.name} failed {len(failed)} trace(s) in run {run_id}." if reopened else "")
                api.update_issue(record.issue_id, last_seen_timestamp=now, severity=severity, experiment_id=spec.experiment_id,
                                 **({"status": IssueStatus.PENDING, "description": description} if reopened else {}))
                record = record.model_copy(update={"status": "pending", "description": description})
            elif record is not None and clean and record.status != "resolved":
                description = record.description + f"\n\nResolved: {scorer.name} passed on all {len(outcomes)} traces of run {run_id}."
                api.update_issue(record.issue_id, status=IssueStatus.RESOLVED, description=description, experiment_id=spec.experiment_id)
                record = record.model_copy(update={"status": "resolved", "description": description})
            if record is not None and failed:
                new = [t for t in failed if t not in record.linked][: max(0, MAX_LINKED - len(record.linked))]
                for trace_id in new:
                    mlflow.log_issue(trace_id=trace_id, issue_id=record.issue_id, issue_name=_name(scorer), source=source, run_id=run_id,
                                     rationale=f"{scorer.name} failed this trace in run {run_id}", metadata={"eval_agent.scorer": scorer.name})
                record = record.model_copy(update={"linked": [*record.linked, *new]})
        except Exception as exc:  # a store without issues, a server too old: the run's verdicts stand
            notes.append(f"could not record the issue of {scorer.name} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})")
            continue
        if record is not None:
            state.issues[scorer.name] = record
    store.write_model(ISSUES_FILE, state)
    return notes


def _name(scorer: CheckScorer) -> str:
    return f"{scorer.name}: {scorer.why.split('. ')[0].rstrip('.')}"[:200]


def _description(spec: SuiteSpec, scorer: CheckScorer, session_id: str) -> str:
    return (f"{scorer.why}\n\nWatched by the check `{scorer.name}` of the evaluation suite {suite_name(session_id)} "
            f"(mlflow-eval-agent session {session_id}; `python run_eval.py` in its evaluation/ folder). "
            f"Evidence: {len(scorer.evidence.must_fail)} trace(s) it must fail, {len(scorer.evidence.must_pass)} it must pass.")


def _severity(scorer: CheckScorer, profile: Any, outcomes: dict[str, str]) -> str:
    share = _profile_share(scorer, profile)
    if share is None:  # the run's own share (the dataset over-samples failures: an upper bound)
        counted = [o for o in outcomes.values() if o in ("pass", "fail")]
        share = sum(o == "fail" for o in counted) / len(counted) if counted else 0.0
    return "high" if share >= HIGH else "medium" if share >= MEDIUM else "low"


def _profile_share(scorer: CheckScorer, profile: Any) -> float | None:
    """How often the profile saw the pattern this check watches (share of traces), when it counts it."""
    if profile is None or not profile.traces_with_spans_read:
        return None
    n, check, params = profile.traces_with_spans_read, scorer.check, scorer.params  # every share below counts spans
    if check == "no_exception":
        sigs = [s for s in profile.error_signatures if s.span_name == params.get("span_name")
                and (params.get("exception_type") is None or s.exception_type == params.get("exception_type"))]
        return max((s.trace_count for s in sigs), default=0) / n if sigs else None
    if check == "tool_succeeded":
        sigs = [s for s in profile.error_signatures if s.span_name == params.get("tool")]
        return min(1.0, sum(s.trace_count for s in sigs) / n) if sigs else None
    if check == "no_hidden_failures":
        return profile.hidden_failures.count / n
    if check == "output_non_empty":
        return (profile.outputs.empty_ok + profile.outputs.missing_ok) / n
    if check == "retrieval_non_empty":
        return profile.retrieval.traces_with_empty_retrieval / n
    if check in TRAJECTORY and profile.trajectory.scanned:
        return getattr(profile.trajectory, TRAJECTORY[check]).count / profile.trajectory.scanned
    return None

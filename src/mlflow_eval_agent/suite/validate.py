"""Validate a rendered suite by really running it, and measure each scorer against its evidence.

`run_eval.py` runs in a least-privilege child process (`child.py`: allow-listed environment with no
agent secrets, private folder, resource limits, its process group killed on timeout),
writes its per-trace verdicts to JSON, and we compute per scorer: recall on its must-fail traces,
false alarms on its must-pass traces, precision, and agreement with existing human feedback of the
same name. The baseline is the first run that passed its gate (or the offline planner's calibrated
run); later runs are compared with it, and its MLflow evaluation run is tagged eval_agent.baseline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..child import ChildResult, child_env, limits_for, run_child
from ..warm_child import run_warm
from .agreement import Agreement, measure_agreement
from .cost import CostForecast, forecast
from ..steps import NO_STEPS, Steps
from ..store import SessionStore
from .issues import record_issues
from .mlflow_run import mark_baseline
from .spec import EVAL_DIR, ScorerSpec, SuiteSpec

VALIDATION_FILE = "state/validation.json"
TIERS_FILE = f"{EVAL_DIR}/tiers.json"  # read by run_eval.py: only `gate` scorers fail its gate
RUN_RESULTS_FILE = "state/run_results.json"
DEFAULT_TIMEOUT_S = 900.0
# Judges are not deterministic: they meet their evidence when they agree on most of it.
JUDGE_MIN_RECALL = 0.8
JUDGE_MAX_FALSE_ALARM_RATE = 0.2

# MLflow's own progress bar on the child's stderr ("Evaluating:  42%|...| 17/40 [Elapsed ...").
EVALUATING = re.compile(r"Evaluating:[^\r\n]*?(\d+)/(\d+) \[")
RunStatus = Literal["PASS", "FAIL", "ERROR", "SKIPPED", "REPORT", "MISSING"]
Gate = Literal["PASS", "FAIL"]


class EvidenceAgreement(BaseModel):
    must_fail: int = 0
    must_pass: int = 0
    caught: list[str] = Field(default_factory=list, description="must_fail traces the scorer failed")
    missed: list[str] = Field(default_factory=list, description="must_fail traces the scorer passed")
    false_alarms: list[str] = Field(default_factory=list, description="must_pass traces the scorer failed")
    errored: list[str] = Field(default_factory=list, description="evidence traces with no verdict")
    recall: float | None = None
    precision: float | None = None
    false_alarm_rate: float | None = None


class ScorerValidation(BaseModel):
    name: str
    kind: str
    needs_judge: bool
    status: RunStatus
    reason: str = ""
    passed: int = 0
    failed: int = 0
    errors: int = 0
    pass_rate: float | None = None
    threshold: float | None = None
    evidence: EvidenceAgreement = Field(default_factory=EvidenceAgreement)
    meets_evidence: bool | None = Field(None, description="None when not measured (skipped judge)")
    human_labels: int = 0
    human_agreement: float | None = None
    agreement: Agreement = Field(default_factory=Agreement, description="Against human labels, else the evidence; decides the tier.")
    summary: str = ""

    @property
    def gates(self) -> bool:
        """Only `gate` scorers may fail a build (agreement.py says when a scorer is one)."""
        return self.agreement.tier == "gate"


class ValidationRun(BaseModel):
    validated_at: str
    ok: bool = Field(description="The suite ran and produced verdicts (whatever the gate said).")
    exit_code: int | None
    seconds: float
    run_id: str | None = None
    run_name: str | None = None
    gate: Gate | None = Field(None, description="What run_eval.py's CI gate said (None: the suite did not run).")
    calibrated: bool = Field(False, description="The offline planner set the thresholds from this run's pass rates.")
    judge_model: str | None = None
    judge_cost: CostForecast | None = Field(None, description="The judges' forecast tokens and dollars, made before any judge call.")
    alignment: dict[str, Any] = Field(default_factory=dict, description="validate --align: per judge, agreement on held-out human labels before and after (suite/align.py).")
    data: str = ""
    error: str | None = None
    scorers: dict[str, ScorerValidation] = Field(default_factory=dict)
    summary: str = ""
    notes: list[str] = Field(default_factory=list, description="What could not be recorded in MLflow, as sentences.")

    @property
    def passed_gate(self) -> bool:
        return self.ok and (self.gate == "PASS" if self.gate else self.exit_code == 0)

    def missing_evidence(self) -> dict[str, str]:
        """Scorers that did not meet their evidence, with the reason."""
        return {n: s.summary for n, s in self.scorers.items() if s.meets_evidence is False}

    def tiers(self) -> dict[str, str]:
        """Each scorer's tier (gate, monitor, explore) from its measured agreement."""
        return {n: s.agreement.tier for n, s in self.scorers.items()}

    def gate_failures(self) -> list[str]:
        """`gate` scorers that failed their threshold or could not run: what fails a build."""
        return [n for n, s in self.scorers.items() if s.gates and s.status in ("FAIL", "ERROR", "MISSING")]


class ValidationReport(BaseModel):
    latest: ValidationRun
    baseline: ValidationRun | None = None


class ScorerDiff(BaseModel):
    name: str
    change: str


def validate_suite(
    spec: SuiteSpec,
    store: SessionStore,
    tracking_uri: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    judge_model: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    python: str | None = None,
    calibrated: bool = False,
    steps: Steps = NO_STEPS,
    label: str = "Running the suite",
    show_gate: bool = True,
    skip_judges: str | None = None,
    max_judge_usd: float | None = None,
    align: bool = False,
    warm: bool = True,
) -> ValidationReport:
    """Run the rendered suite, measure it, save `state/validation.json` (keeping the baseline).

    `calibrated`: this run is the offline planner's run of the suite whose thresholds it set from the
    measured pass rates; it becomes the baseline whatever came before. `skip_judges`: the judges
    cannot run, and why (settings.JudgeAccess.skip_reason); they are reported skipped with it.
    `max_judge_usd`: the judges run only when their forecast (cost.py) fits; else skipped, saying why.
    `align`: afterwards, align each make_judge judge that has enough human labels (suite/align.py) and
    keep the aligned instructions (spec, re-rendered suite) only when they agree better on held-out labels.
    `warm`: run it in the warm child for this environment (warm_child.py: MLflow imported once per
    process, a fresh fork per run) instead of a cold child."""
    cost = judge_forecast(spec, judge_model, skip_judges)
    skip_judges = skip_judges or (cost.over(max_judge_usd) if cost else None)
    traces = len(spec.dataset.records) if spec.dataset else None
    steps.start(f"{label} ({len(spec.scorers)} scorers x {traces or '?'} traces)", total=traces, unit="traces")
    outcome, results = run_suite(store, tracking_uri, timeout_s=timeout_s, judge_model=judge_model, skip_judges=skip_judges,
                                 extra_env=extra_env, python=python, warm=warm, steps=steps)
    data: dict = results or {}
    if results is not None:
        run = measure(spec, data, outcome.returncode, outcome.seconds, skip_judges, exclude=_aligned_training(store))
    else:
        why = f"timed out after {timeout_s:.0f} s" if outcome.timed_out else outcome.exit_reason()
        run = ValidationRun(
            validated_at=_now(), ok=False, exit_code=outcome.returncode, seconds=outcome.seconds,
            error=f"run_eval.py {why} without results: {outcome.tail()}", summary=f"the suite did not run: {why}",
        )
    previous = load_report(store)
    old = previous.baseline if previous and previous.baseline and (previous.baseline.passed_gate or previous.baseline.calibrated) else None
    if cost is not None:
        run = run.model_copy(update={"judge_cost": cost})
    if run.ok and calibrated:
        run = run.model_copy(update={"calibrated": True})
    if run.ok and (calibrated or (old is None and run.passed_gate)):
        if run.run_id:
            problem = mark_baseline(tracking_uri, run.run_id, old.run_id if old else None)
            run = run.model_copy(update={"notes": [*run.notes, problem]}) if problem else run
        baseline = run
    else:
        baseline = old
    if run.ok and run.run_id:
        problems = record_issues(store, tracking_uri, spec, run.run_id, data, _profile(store))
        if problems:
            run = run.model_copy(update={"notes": [*run.notes, *problems]})
            baseline = run if baseline is not None and baseline.validated_at == run.validated_at else baseline
    if run.ok and align:
        run = _align(spec, store, tracking_uri, run, data, None if skip_judges else judge_model, extra_env, steps, baseline, max_judge_usd)
        baseline = run if baseline is not None and baseline.validated_at == run.validated_at else baseline
    report = ValidationReport(latest=run, baseline=baseline)
    store.write_model(VALIDATION_FILE, report)
    if run.ok:
        store.write_text(TIERS_FILE, tiers_json(run))
    if run.ok and traces:
        steps.update(traces)
    steps.finish(("" if not show_gate else f"gate {run.gate}") if run.ok else "did not run")
    return report


def run_suite(
    store: SessionStore,
    tracking_uri: str,
    args: Sequence[str] = (),
    *,
    results_file: str = RUN_RESULTS_FILE,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    judge_model: str | None = None,
    skip_judges: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    python: str | None = None,
    warm: bool = True,
    steps: Steps = NO_STEPS,
) -> tuple[ChildResult, dict | None]:
    """Run the session's evaluation/run_eval.py once, as the product always runs it: in the
    least-privilege child (child.py; the warm one when `warm`), with the judge model or --skip-judges,
    then `args`. Returns the child's outcome and the results it wrote (None: it wrote none), which are
    kept in the session at `results_file`. Used by validation and by `monitor run` (suite/scheduled_run.py)."""
    script = store.path(f"{EVAL_DIR}/run_eval.py")
    if not script.is_file():
        raise FileNotFoundError("evaluation/run_eval.py does not exist yet: render the suite first")
    results = store.path(results_file)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.unlink(missing_ok=True)
    # Hand-written scorers run only with run_eval.py's --user-scorers FILE, which the product never passes.
    argv = [str(script), "--output-json", str(results)] + (["--judge-model", judge_model] if judge_model and not skip_judges else [])
    argv += ["--skip-judges"] if skip_judges else []
    argv += list(args)
    env = child_env(tracking_uri, extra=extra_env)
    limits = limits_for(tracking_uri, timeout_s=timeout_s)

    def progress(tail: str) -> None:
        found = EVALUATING.findall(tail)
        if found:
            steps.update(int(found[-1][0]), int(found[-1][1]))

    run = run_warm if warm else run_child
    outcome = run(argv, timeout_s=timeout_s, env=env, limits=limits, python=python, on_poll=progress)
    if not results.is_file():
        return outcome, None
    store.write_text(results_file, results.read_text(encoding="utf-8"))  # redacted, pushed to the backend
    return outcome, json.loads(results.read_text(encoding="utf-8"))


def _aligned_training(store: SessionStore) -> dict[str, set[str]]:
    """Per aligned judge, the traces whose labels are worked examples in its prompt (alignment.json)."""
    from ..store import CorruptStateError
    from .align import ALIGNMENT_FILE, training_traces

    try:
        return training_traces(store.read_json(ALIGNMENT_FILE)) if store.exists(ALIGNMENT_FILE) else {}
    except (CorruptStateError, ValueError):
        return {}


def _align(spec: SuiteSpec, store: SessionStore, tracking_uri: str, run: ValidationRun, data: dict, judge_model: str | None,
           env: Mapping[str, str] | None, steps: Steps, baseline: ValidationRun | None = None,
           budget_usd: float | None = None) -> ValidationRun:
    """validate --align: align the judges with enough human labels, keep the better ones (spec,
    re-rendered suite, alignment.json), and record before/after in the run."""
    from .align import ALIGNMENT_FILE, alignment_record, align_judges
    from .spec import SPEC_FILE
    from .user_edits import render_keeping_edits

    steps.start("Aligning the judges with the human labels (2 judge calls per held-out trace)")
    new_spec, results = align_judges(spec, tracking_uri, data, judge_model, env=env, budget_usd=budget_usd)
    kept = [n for n, r in results.items() if r.status == "kept"]
    notes = list(run.notes)
    if kept:
        store.write_model(SPEC_FILE, new_spec)
        render_keeping_edits(new_spec, store, ValidationReport(latest=run, baseline=baseline), notice=notes.append)
        previous = store.read_json(ALIGNMENT_FILE) if store.exists(ALIGNMENT_FILE) else {}
        record = {"judges": {**(previous.get("judges", {}) if isinstance(previous, dict) else {}), **alignment_record(results)["judges"]}}
        store.write_json(ALIGNMENT_FILE, record)
    steps.finish(f"{len(kept)} of {len(results)} judges aligned" if results else "no judges")
    return run.model_copy(update={"alignment": {n: r.model_dump(mode="json") for n, r in results.items()}, "notes": notes})


def judge_forecast(spec: SuiteSpec, judge_model: str | None, skip_judges: str | None = None) -> CostForecast | None:
    """The judges' cost forecast when judges are about to run (None: no judge, or they are skipped)."""
    if skip_judges or not judge_model or not any(s.needs_judge for s in spec.scorers):
        return None
    return forecast(spec, judge_model)


def tiers_json(run: ValidationRun) -> str:
    """evaluation/tiers.json: each scorer's tier and why, as measured by this validation. run_eval.py
    lets only `gate` scorers (and scorers it has no tier for) fail its gate; the rest are reported."""
    tiers = {}
    for name, s in run.scorers.items():
        a, aligned = s.agreement, (run.alignment.get(name) or {})
        if aligned.get("status") == "kept" and aligned.get("after"):  # the judge now in the suite, on held-out labels
            a = Agreement.model_validate(aligned["after"])
            a = a.model_copy(update={"reason": f"aligned, on {a.n} held-out labels: {a.reason}"})
        tiers[name] = {"tier": a.tier, "reason": a.reason, "labels_from": a.labels_from, "labels": a.n, "kappa": a.kappa, "mcc": a.mcc}
    return json.dumps({"measured_at": run.validated_at, "tiers": tiers}, indent=2) + "\n"


def _profile(store: SessionStore) -> Any:
    from ..store import CorruptStateError
    from ..traces.profile_model import TraceProfile

    try:
        return store.read_model("state/profile.json", TraceProfile)
    except CorruptStateError:
        return None


def load_report(store: SessionStore) -> ValidationReport | None:
    return store.read_model(VALIDATION_FILE, ValidationReport)


def measure(spec: SuiteSpec, results: dict, exit_code: int | None, seconds: float, skip_judges: str | None = None,
            exclude: Mapping[str, set[str]] | None = None) -> ValidationRun:
    """Turn run_eval.py's JSON into per-scorer validation with evidence agreement. `exclude`: per
    aligned judge, the traces whose labels are examples in its prompt, left out of its agreement."""
    rows = {row["scorer"]: row for row in results.get("scorers", [])}
    if skip_judges:  # skipped on purpose: say why in the product's words, not "--skip-judges"
        rows = {n: ({**r, "reason": f"skipped: {skip_judges}"} if r.get("status") == "SKIPPED" else r) for n, r in rows.items()}
    per_trace = results.get("per_trace", {})
    labels = dict(results.get("human_labels") or {})  # {scorer: {trace_id: {annotator: passed}}}
    for name, ids in (exclude or {}).items():
        if isinstance(labels.get(name), dict):
            labels[name] = {t: v for t, v in labels[name].items() if t not in ids}
    scorers = {s.name: _scorer_validation(s, rows.get(s.name), per_trace.get(s.name, {}), labels.get(s.name)) for s in spec.scorers}
    missing = [n for n, v in scorers.items() if v.meets_evidence is False]
    skipped = [n for n, v in scorers.items() if v.status == "SKIPPED"]
    summary = (
        f"{len(scorers)} scorers on {results.get('data', '?')}: "
        f"{len(scorers) - len(missing) - len(skipped)} meet their evidence, {len(missing)} miss it"
        + (f" ({', '.join(missing)})" if missing else "")
        + (f", {len(skipped)} judges skipped" if skipped else "")
    )
    gate = results.get("gate") or ({0: "PASS", 1: "FAIL"}.get(exit_code) if exit_code is not None else None)
    return ValidationRun(
        validated_at=_now(), ok=True, exit_code=exit_code, seconds=seconds, run_id=results.get("run_id"),
        run_name=results.get("run_name"), gate=gate if gate in ("PASS", "FAIL") else None, judge_model=results.get("judge_model"),
        data=results.get("data", ""), scorers=scorers, summary=summary,
    )


def _scorer_validation(spec: ScorerSpec, row: dict | None, outcomes: dict[str, str], labels: dict | None = None) -> ScorerValidation:
    base = {"name": spec.name, "kind": spec.kind, "needs_judge": spec.needs_judge, "threshold": spec.threshold}
    if row is None:
        return ScorerValidation(**base, status="MISSING", meets_evidence=False, summary="the run reported nothing for this scorer",
                                agreement=Agreement(reason="the run reported nothing for it"))
    human = row.get("human") or {}
    result = ScorerValidation(
        **base, status=row["status"], reason=row.get("reason", ""), passed=row.get("passed", 0), failed=row.get("failed", 0),
        errors=row.get("errors", 0), pass_rate=row.get("pass_rate"), human_labels=human.get("labels", 0), human_agreement=human.get("agreement"),
    )
    measured = measure_agreement(
        spec.name, outcomes, human=_human_by_trace(labels), must_fail=spec.evidence.must_fail, must_pass=spec.evidence.must_pass,
        deterministic=spec.deterministic, measured=result.status != "SKIPPED",
    )
    if result.status == "SKIPPED":
        return result.model_copy(update={"summary": f"not measured: {result.reason}", "agreement": measured})
    agreement = agree(spec.evidence.must_fail, spec.evidence.must_pass, outcomes)
    meets = _meets(spec, agreement)
    return result.model_copy(update={"evidence": agreement, "meets_evidence": meets, "summary": _summary(agreement, meets, result), "agreement": measured})


def _human_by_trace(human: Any) -> dict[str, dict[str, bool]]:
    """run_eval.py's human labels of one scorer, {trace_id: {annotator: passed}}; an older suite's
    {trace_id: passed} counts as one anonymous annotator."""
    if not isinstance(human, dict):
        return {}
    out: dict[str, dict[str, bool]] = {}
    for trace_id, value in human.items():
        if isinstance(value, bool):
            out[str(trace_id)] = {"human": value}
        elif isinstance(value, dict):
            out[str(trace_id)] = {str(a): v for a, v in value.items() if isinstance(v, bool)}
    return {t: by for t, by in out.items() if by}


def agree(must_fail: list[str], must_pass: list[str], outcomes: dict[str, str]) -> EvidenceAgreement:
    caught = [t for t in must_fail if outcomes.get(t) == "fail"]
    missed = [t for t in must_fail if outcomes.get(t) == "pass"]
    alarms = [t for t in must_pass if outcomes.get(t) == "fail"]
    errored = [t for t in [*must_fail, *must_pass] if outcomes.get(t) not in ("pass", "fail")]
    return EvidenceAgreement(
        must_fail=len(must_fail), must_pass=len(must_pass), caught=caught, missed=missed, false_alarms=alarms, errored=errored,
        recall=len(caught) / len(must_fail) if must_fail else None,
        precision=len(caught) / (len(caught) + len(alarms)) if caught or alarms else None,
        false_alarm_rate=len(alarms) / len(must_pass) if must_pass else None,
    )


def _meets(spec: ScorerSpec, a: EvidenceAgreement) -> bool:
    if a.errored:
        return False
    if spec.deterministic:
        return not a.missed and not a.false_alarms
    recall_ok = a.recall is None or a.recall >= JUDGE_MIN_RECALL
    alarms_ok = a.false_alarm_rate is None or a.false_alarm_rate <= JUDGE_MAX_FALSE_ALARM_RATE
    return recall_ok and alarms_ok


def _summary(a: EvidenceAgreement, meets: bool, result: ScorerValidation) -> str:
    parts = []
    if a.recall is not None:
        parts.append(f"caught {len(a.caught)}/{a.must_fail} must-fail traces")
    if a.false_alarm_rate is not None:
        parts.append(f"{len(a.false_alarms)} false alarm(s) on {a.must_pass} must-pass traces")
    if a.missed:
        parts.append(f"missed {', '.join(a.missed[:3])}")
    if a.false_alarms:
        parts.append(f"flagged {', '.join(a.false_alarms[:3])}")
    if a.errored:
        parts.append(f"no verdict on {', '.join(a.errored[:3])} ({result.reason})")
    if result.human_labels:
        parts.append(f"agrees with {result.human_agreement:.0%} of {result.human_labels} human labels")
    verdict = "meets its evidence" if meets else "MISSES its evidence"
    return f"{verdict}: " + "; ".join(parts) if parts else verdict


def compare(baseline: ValidationRun, latest: ValidationRun) -> list[ScorerDiff]:
    """What changed per scorer since the baseline (status, pass rate, evidence)."""
    diffs = []
    for name in sorted(set(baseline.scorers) | set(latest.scorers)):
        old, new = baseline.scorers.get(name), latest.scorers.get(name)
        if old is None or new is None:
            diffs.append(ScorerDiff(name=name, change="new scorer" if old is None else "removed"))
            continue
        changes = []
        if old.status != new.status:
            changes.append(f"status {old.status} -> {new.status}")
        if old.pass_rate != new.pass_rate:
            changes.append(f"pass rate {_pct(old.pass_rate)} -> {_pct(new.pass_rate)}")
        if old.meets_evidence != new.meets_evidence:
            changes.append(f"evidence {_evidence_word(old.meets_evidence)} -> {_evidence_word(new.meets_evidence)}")
        diffs.append(ScorerDiff(name=name, change="; ".join(changes) or "unchanged"))
    return diffs


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _evidence_word(value: bool | None) -> str:
    return {True: "met", False: "missed", None: "not measured"}[value]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

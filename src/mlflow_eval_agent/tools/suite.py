"""Agent tools that build the evaluation suite from validated parts.

The model never writes code: it chooses the dataset's traces and adds scorers (a code check in the
check language — a library preset or a `fail_when` document —, an MLflow built-in, Guidelines, a
make_judge judge), each with evidence. Nothing the model sends is ever run as code. Every call is checked against the dataset's own traces and answered
with precise errors; the spec lives in `state/suite_spec.json` and `evaluation/` is rendered from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..store import CorruptStateError
from ..suite import judges as judge_catalog
from ..suite.checks import list_checks
from ..suite.checks.guide import language_guide
from ..suite.dataset import (
    DEFAULT_SIZE,
    DatasetError,
    build_dataset,
    fetch_traces,
    register_dataset,
    select_stratified,
)
from ..suite.facts import facts_from_traces
from ..suite.preview import evidence_mismatches, preview_verdicts
from ..suite.render import RenderError
from ..suite.user_edits import render_keeping_edits
from ..suite.spec import (
    SPEC_FILE,
    ScorerSpec,
    SuiteSpec,
    definition_problems,
    parse_scorer,
    scorer_problems,
    suite_name,
)
from ..suite.validate import load_report, validate_suite
from ..traces.source import effective_tracking_uri
from ._base import NoArgs, ToolContext, ToolError, agent_tool

ScorerKind = Literal["check", "builtin", "guidelines", "make_judge"]
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "check": ("check", "params", "fail_when"),
    "builtin": ("builtin", "params"),
    "guidelines": ("guidelines",),
    "make_judge": ("instructions", "value_type"),
}
KIND_HINTS = {
    "check": "check (a preset name from list_checks) with params, or fail_when (a check document's condition in the check language; grammar and examples in list_checks)",
    "builtin": "builtin (an MLflow built-in scorer class name from list_checks) and optional params",
    "guidelines": "guidelines (a list of rules the answer must follow)",
    "make_judge": "instructions (using {{ inputs }}, {{ outputs }}, {{ expectations }} or {{ trace }}) and value_type",
}
NO_CODE = (
    "Scorers cannot be code: no model-written code is ever run. Express the check as data with kind 'check' and "
    "fail_when (the check language: span selectors, field tests, trajectory conditions; list_checks shows the grammar "
    "and examples), or use an LLM judge (guidelines, make_judge) for what no check can see."
)


# --- spec storage ---------------------------------------------------------------------------------
def load_spec(ctx: ToolContext) -> SuiteSpec:
    try:
        spec = ctx.store.read_model(SPEC_FILE, SuiteSpec)
    except CorruptStateError as exc:
        raise ToolError(f"{exc} Start again with set_dataset.") from None
    return spec or SuiteSpec(experiment_id=ctx.experiment_id(None))


def save_spec(ctx: ToolContext, spec: SuiteSpec) -> None:
    ctx.store.write_model(SPEC_FILE, spec)


# --- list_checks ----------------------------------------------------------------------------------
@agent_tool(
    "list_checks",
    "The building blocks for scorers: the check presets of the library (name, parameters with their meaning, what "
    "it fails on), the check language for checks of your own (fail_when documents: grammar, fields, tests, examples) "
    "and the MLflow built-in scorers (which need a judge model, and what traces they need).",
    NoArgs,
)
def list_checks_tool(ctx: ToolContext, args: NoArgs) -> dict:
    checks = [
        {
            "check": info.name,
            "fails_when": info.summary,
            "signature": info.signature_text(),
            "params": {n: f.description for n, f in info.params.model_fields.items()},
        }
        for info in list_checks()
    ]
    builtins = [
        {"builtin": b.name, "needs_judge_model": b.needs_model, "needs": list(b.needs), "judges": b.summary}
        for b in judge_catalog.BUILTINS.values()
    ]
    return {"checks": checks, "check_language": language_guide(), "builtins": builtins, "scorer_kinds": KIND_HINTS}


# --- set_dataset ----------------------------------------------------------------------------------
class SetDatasetArgs(BaseModel):
    strata: dict[str, list[str]] = Field(
        description="Stratum name -> trace ids, most important first, e.g. {\"error:TimeoutError in get_weather\": [...], "
        "\"hidden_failure\": [...], \"slow\": [...], \"normal\": [...]}. Strata share the dataset round-robin, so rare "
        "failure modes are never crowded out.",
        min_length=1,
    )
    size: int = Field(DEFAULT_SIZE, ge=1, le=500, description="Most traces in the dataset.")


@agent_tool(
    "set_dataset",
    "Choose the evaluation dataset: traces from the experiment, stratified over failure signatures, hidden failures, "
    "slow and normal traffic. Records keep their trace ids, so the suite evaluates the original traces. Replaces any "
    "earlier dataset; scorers whose evidence is not in the new dataset must be removed or their traces included.",
    SetDatasetArgs,
    roles=("worker",),
)
def set_dataset(ctx: ToolContext, args: SetDatasetArgs) -> dict:
    spec = load_spec(ctx)
    # Candidates beyond the size: a trace whose inputs repeat a chosen one's is left out (MLflow keeps one record per input).
    picks = select_stratified(args.strata, min(2 * args.size, 1000))
    try:
        dataset, traces = build_dataset(suite_name(ctx.store.session_id), ctx.experiment_id(None), picks, size=args.size)
    except DatasetError as exc:
        raise ToolError(str(exc)) from None
    chosen = set(dataset.trace_ids())
    orphaned = {s.name: [t for t in s.evidence.trace_ids() if t not in chosen] for s in spec.scorers}
    orphaned = {n: ids for n, ids in orphaned.items() if ids}
    if orphaned:
        lines = "; ".join(f"{n}: {', '.join(_why_absent(t, dataset.merged) for t in ids[:3])}" for n, ids in orphaned.items())
        raise ToolError(f"These scorers' evidence traces would not be in the new dataset ({lines}). Add those trace ids to a stratum, use the trace kept in their place, or remove_scorer first.")
    dataset = register_dataset(dataset, traces, effective_tracking_uri(ctx.settings.tracking_uri))
    save_spec(ctx, spec.with_dataset(dataset))
    facts = dataset.facts
    return {
        "traces": len(dataset.records),
        "strata": dataset.strata(),
        "left_out": max(0, sum(len(set(v)) for v in args.strata.values()) - len(dataset.records)),
        "left_out_same_inputs": {t: f"same inputs as {kept}, which is in the dataset" for t, kept in list(dataset.merged.items())[:20]},
        "stored_as": dataset.registration,
        "facts": {
            "span_types": facts.span_types,
            "tools": facts.tool_names,
            "expectations": facts.expectation_names,
            "human_feedback": facts.feedback_names,
            "session_traces": facts.session_traces,
        },
    }


def _why_absent(trace_id: str, merged: dict[str, str]) -> str:
    kept = merged.get(trace_id)
    return f"{trace_id} (same inputs as {kept}, kept instead: a dataset holds one record per input)" if kept else trace_id


# --- add / try / remove scorers -------------------------------------------------------------------
class ScorerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ScorerKind = Field(description="check | builtin | guidelines | make_judge")
    name: str = Field(description="Metric/assessment name: lowercase letters, digits, underscores (3-64 chars).")
    why: str = Field(description="The failure or quality it watches, citing the profile (at least 10 characters).")
    must_fail: list[str] = Field(default_factory=list, description="Dataset trace ids this scorer must fail.")
    must_pass: list[str] = Field(default_factory=list, description="Dataset trace ids this scorer must pass.")
    evidence_source: str = Field("", description="Where the evidence comes from, e.g. 'profile: signature sig-1a2b'.")
    threshold: float | None = Field(None, description="Minimum pass rate 0-1 for the CI gate; omit to report only.")
    check: str | None = Field(None, description="kind=check: a preset name from list_checks (with params).")
    builtin: str | None = Field(None, description="kind=builtin: the MLflow built-in scorer class name.")
    params: dict[str, Any] | None = Field(None, description="kind=check (with a preset) / builtin: parameters.")
    fail_when: dict[str, Any] | None = Field(
        None,
        description="kind=check, instead of a preset: the condition under which a trace FAILS, in the check language, e.g. "
        '{"op": "repeated", "spans": {"type": ["TOOL"]}, "times": 3}. Grammar and examples: list_checks (check_language).',
    )
    guidelines: list[str] | None = Field(None, description="kind=guidelines: rules the answer must follow.")
    instructions: str | None = Field(None, description="kind=make_judge: judge instructions with template variables.")
    value_type: Literal["bool", "yes_no"] | None = Field(None, description="kind=make_judge: bool or yes_no (default).")

    @model_validator(mode="before")
    @classmethod
    def _no_code(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("kind") == "custom" or "code" in data):
            raise ValueError(NO_CODE)
        return data


def scorer_from_args(args: ScorerArgs) -> ScorerSpec:
    """The ScorerSpec for these arguments, or a ToolError naming each wrong or missing field."""
    used = KIND_FIELDS[args.kind]
    stray = [f for fields in KIND_FIELDS.values() for f in fields if f not in used and getattr(args, f) is not None]
    if stray:
        raise ToolError(f"kind '{args.kind}' does not use {', '.join(sorted(set(stray)))}; it takes {KIND_HINTS[args.kind]}.")
    data: dict[str, Any] = {
        "kind": args.kind,
        "name": args.name,
        "why": args.why,
        "threshold": args.threshold,
        "evidence": {"must_fail": args.must_fail, "must_pass": args.must_pass, "source": args.evidence_source},
    }
    data.update({f: getattr(args, f) for f in used if getattr(args, f) is not None})
    try:
        return parse_scorer(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p != args.kind) or "(scorer)"
            problems.append(f"{loc}: {err['msg']}")
        raise ToolError(f"The scorer is not valid: {'; '.join(problems)}. Kind '{args.kind}' takes {KIND_HINTS[args.kind]}.") from None


def _previewed(ctx: ToolContext, spec: SuiteSpec, scorer: ScorerSpec, trace_ids: list[str]) -> dict[str, tuple[bool, str]] | None:
    try:
        traces = fetch_traces(spec.experiment_id, trace_ids) if trace_ids else []
    except DatasetError as exc:
        raise ToolError(str(exc)) from None
    return preview_verdicts(scorer, traces) if traces else {}


@agent_tool(
    "add_scorer",
    "Add a scorer with its evidence (replaces a scorer of the same name). It is checked against the dataset's traces: "
    "prerequisites (RetrievalGroundedness needs RETRIEVER spans, Correctness needs expectations, a tool check needs the "
    "tool), parameters or the check document, evidence ids in the dataset, and, for code checks, its verdicts on the evidence "
    "traces: it must fail every must_fail trace and pass every must_pass trace. LLM judges are measured at validation.",
    ScorerArgs,
    roles=("worker",),
)
def add_scorer(ctx: ToolContext, args: ScorerArgs) -> dict:
    spec = load_spec(ctx)
    scorer = scorer_from_args(args)
    problems = scorer_problems(scorer, spec)
    if problems:
        raise ToolError(f"Scorer {scorer.name} was not added:\n- " + "\n- ".join(problems))
    verdicts = _previewed(ctx, spec, scorer, scorer.evidence.trace_ids())
    if verdicts is not None:
        mismatches = evidence_mismatches(scorer, verdicts)
        if mismatches:
            raise ToolError(
                f"Scorer {scorer.name} was not added because it disagrees with its evidence:\n- " + "\n- ".join(mismatches)
                + "\nFix the scorer's parameters or check document, or correct the evidence."
            )
    replaced = spec.scorer(scorer.name) is not None
    save_spec(ctx, spec.with_scorer(scorer))
    return {
        "added": scorer.name,
        "replaced_earlier": replaced,
        "needs_judge_model": scorer.needs_judge,
        "evidence": "agrees on all evidence traces" if verdicts is not None else "a judge: measured when the suite is validated",
        "scorers": [s.name for s in spec.with_scorer(scorer).scorers],
    }


class TryScorerArgs(ScorerArgs):
    trace_ids: list[str] = Field(min_length=1, max_length=50, description="Traces of the experiment to run it on.")


@agent_tool(
    "try_scorer",
    "Run a code check (a preset or a fail_when document) or a model-free built-in on some traces without adding it: "
    "returns pass/fail and the rationale per trace. Use it to find parameters before add_scorer.",
    TryScorerArgs,
    roles=("worker", "interactive"),
)
def try_scorer(ctx: ToolContext, args: TryScorerArgs) -> dict:
    spec = load_spec(ctx)
    scorer = scorer_from_args(args)
    if scorer.needs_judge:
        raise ToolError(f"{scorer.name} is an LLM judge; it cannot be tried without a judge model. Add it and validate the suite.")
    try:
        traces = fetch_traces(spec.experiment_id, args.trace_ids)
    except DatasetError as exc:
        raise ToolError(str(exc)) from None
    problems = definition_problems(scorer, facts_from_traces(traces))
    if problems:
        raise ToolError("The scorer is not usable on these traces:\n- " + "\n- ".join(problems))
    verdicts = preview_verdicts(scorer, traces) or {}
    return {"results": {t: {"passed": p, "rationale": r} for t, (p, r) in verdicts.items()}}


class RemoveScorerArgs(BaseModel):
    name: str
    reason: str = Field(min_length=5, max_length=500, description="Why it goes (recorded in the suite's README).")


@agent_tool("remove_scorer", "Remove a scorer from the suite; the reason is recorded.", RemoveScorerArgs, roles=("worker",))
def remove_scorer(ctx: ToolContext, args: RemoveScorerArgs) -> str:
    spec = load_spec(ctx)
    try:
        spec = spec.without_scorer(args.name, reason=args.reason)
    except KeyError as exc:
        raise ToolError(str(exc.args[0])) from None
    save_spec(ctx, spec)
    return f"Removed {args.name}. Scorers left: {', '.join(s.name for s in spec.scorers) or 'none'}."


# --- show / render / validate ---------------------------------------------------------------------
@agent_tool("show_suite", "The suite so far: dataset (trace ids by stratum, facts), scorers with evidence, dropped scorers, last validation.", NoArgs)
def show_suite(ctx: ToolContext, args: NoArgs) -> dict:
    spec = load_spec(ctx)
    dataset = None
    if spec.dataset:
        by_stratum: dict[str, list[str]] = {}
        for record in spec.dataset.records:
            by_stratum.setdefault(record.stratum, []).append(record.trace_id)
        dataset = {"traces": len(spec.dataset.records), "trace_ids_by_stratum": by_stratum, "stored_as": spec.dataset.registration,
                   "span_types": spec.dataset.facts.span_types, "tools": spec.dataset.facts.tool_names}
    scorers = [
        {
            "name": s.name, "kind": s.kind, "needs_judge_model": s.needs_judge, "threshold": s.threshold,
            **({"check": s.check, "params": s.params} if s.kind == "check" and s.check else {}),
            **({"fail_when": s.fail_when} if s.kind == "check" and s.fail_when is not None else {}),
            **({"builtin": s.builtin, "params": s.params} if s.kind == "builtin" else {}),
            "must_fail": s.evidence.must_fail, "must_pass": s.evidence.must_pass,
        }
        for s in spec.scorers
    ]
    report = load_report(ctx.store)
    validation = None
    if report:
        validation = {"summary": report.latest.summary, "error": report.latest.error,
                      "per_scorer": {n: v.summary for n, v in report.latest.scorers.items()}}
    return {"experiment_id": spec.experiment_id, "dataset": dataset, "scorers": scorers,
            "dropped": [d.model_dump() for d in spec.dropped], "validation": validation}


@agent_tool(
    "render_suite",
    "Write evaluation/ from the spec: scorers.py (self-contained), run_eval.py, dataset.json and README.md.",
    NoArgs,
    roles=("worker",),
)
def render_suite_tool(ctx: ToolContext, args: NoArgs) -> str:
    spec = load_spec(ctx)
    notes: list[str] = []
    try:
        files, _ = render_keeping_edits(spec, ctx.store, load_report(ctx.store), notes.append)
    except RenderError as exc:
        raise ToolError(str(exc)) from None
    return "Rendered: " + ", ".join(files) + "".join(f"\n{n}" for n in notes)


class ValidateArgs(BaseModel):
    timeout_s: float = Field(900, ge=30, le=3600, description="Give up on the run after this many seconds.")


@agent_tool(
    "validate_suite",
    "Render and really run the suite (run_eval.py in a clean subprocess), then report per scorer: pass rate, errors, "
    "and agreement with its evidence (caught must-fail traces, false alarms on must-pass traces) and with human "
    "feedback of the same name. Scorers that miss their evidence must be fixed or removed. The first run that passes "
    "its gate becomes the baseline.",
    ValidateArgs,
    roles=("worker",),
)
def validate_suite_tool(ctx: ToolContext, args: ValidateArgs) -> dict:
    spec = load_spec(ctx)
    try:
        render_keeping_edits(spec, ctx.store, load_report(ctx.store))
    except RenderError as exc:
        raise ToolError(str(exc)) from None
    judge = ctx.settings.judge
    report = validate_suite(spec, ctx.store, effective_tracking_uri(ctx.settings.tracking_uri), timeout_s=args.timeout_s,
                            judge_model=judge.model, extra_env=judge.child_env(), skip_judges=judge.skip_reason)
    render_keeping_edits(spec, ctx.store, report)  # README with the results
    run = report.latest
    if not run.ok:
        raise ToolError(f"The suite did not run: {run.error}")
    missing = run.missing_evidence()
    return {
        "summary": run.summary,
        "seconds": round(run.seconds, 1),
        "per_scorer": {n: f"{v.status}: {v.summary}" for n, v in run.scorers.items()},
        "next": ("Fix or remove these scorers, then validate again: " + ", ".join(missing)) if missing else "Every measured scorer meets its evidence.",
    }


TOOLS = [list_checks_tool, set_dataset, add_scorer, try_scorer, remove_scorer, show_suite, render_suite_tool, validate_suite_tool]

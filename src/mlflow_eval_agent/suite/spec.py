"""The suite specification: what `evaluation/` is rendered from.

A `SuiteSpec` is a dataset (records from chosen traces, keeping their trace ids) and scorers. Every
scorer is one of four kinds (a code check in the check language — a preset from the library or a
`fail_when` document —, an MLflow built-in, Guidelines, a `make_judge` judge) and carries evidence:
trace ids it must fail and trace ids it must pass. No kind holds code: model-written Python scorers
were removed (a spec saved with one loads with it moved to `dropped`). `scorer_problems` checks a scorer against the suite it joins (prerequisites on
the dataset's traces, parameters, evidence ids) and answers with sentences the agent can act on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import judges
from .checks import CHECKS, LANGUAGE_VERSION, RuleError, compile_check, get_check, selector_names
from .facts import TraceFacts

SPEC_FILE = "state/suite_spec.json"
EVAL_DIR = "evaluation"
SCORER_NAME_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
MAX_SCORERS = 40
MAX_EVIDENCE = 50


def suite_name(session_id: str) -> str:
    """The suite's name (and its dataset's): evaluation runs are named `<suite>-<yyyymmdd-hhmm>`."""
    return f"eval-agent-{session_id}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    must_fail: list[str] = Field(default_factory=list, max_length=MAX_EVIDENCE, description="Trace ids this scorer must fail (the failures it exists to catch).")
    must_pass: list[str] = Field(default_factory=list, max_length=MAX_EVIDENCE, description="Trace ids this scorer must pass (healthy traffic it must not flag).")
    source: str = Field("", max_length=500, description="Where the evidence comes from, e.g. 'profile: error signature TimeoutError in get_weather'.")

    @model_validator(mode="after")
    def _disjoint(self) -> Evidence:
        both = sorted(set(self.must_fail) & set(self.must_pass))
        if both:
            raise ValueError(f"trace ids cannot be in both must_fail and must_pass: {', '.join(both)}")
        return self

    def trace_ids(self) -> list[str]:
        return [*self.must_fail, *self.must_pass]


class _Scorer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SCORER_NAME_PATTERN, description="Metric and assessment name: lowercase letters, digits, underscores.")
    why: str = Field(min_length=10, max_length=1000, description="Why this scorer exists: the failure or quality it watches, from the profile.")
    evidence: Evidence = Field(default_factory=Evidence)
    threshold: float | None = Field(None, ge=0, le=1, description="Minimum pass rate for the CI gate; None reports without gating.")

    @property
    def needs_judge(self) -> bool:
        return False

    @property
    def deterministic(self) -> bool:
        return not self.needs_judge


class CheckScorer(_Scorer):
    """A code check: a preset of the library with its parameters, or a check document of its own."""

    kind: Literal["check"] = "check"
    check: str | None = Field(None, description="Name of a preset from the library (list_checks).")
    params: dict[str, Any] = Field(default_factory=dict, description="The preset's parameters.")
    fail_when: dict[str, Any] | None = Field(None, description="A check of its own: the condition under which a trace fails (docs/checks.md).")

    @model_validator(mode="after")
    def _one_definition(self) -> CheckScorer:
        if (self.check is None) == (self.fail_when is None):
            raise ValueError("give either check (a preset name, with params) or fail_when (a check document's condition), not both")
        if self.fail_when is not None and self.params:
            raise ValueError("params belong to a preset (check); a fail_when document carries its values itself")
        return self

    def rule(self) -> dict[str, Any]:
        """The check document the engine evaluates (raises KeyError/ValidationError/ValueError for a bad preset)."""
        if self.check is not None:
            return get_check(self.check).rule(self.params)
        return {"version": LANGUAGE_VERSION, "fail_when": self.fail_when}


class BuiltinScorer(_Scorer):
    kind: Literal["builtin"] = "builtin"
    builtin: str = Field(description="Class name of an MLflow built-in scorer, e.g. 'RetrievalGroundedness'.")
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def needs_judge(self) -> bool:
        return judges.BUILTINS[self.builtin].needs_model if self.builtin in judges.BUILTINS else True


class GuidelinesScorer(_Scorer):
    kind: Literal["guidelines"] = "guidelines"
    guidelines: list[Annotated[str, Field(min_length=5, max_length=1000)]] = Field(min_length=1, max_length=10)

    @property
    def needs_judge(self) -> bool:
        return True


class JudgeScorer(_Scorer):
    kind: Literal["make_judge"] = "make_judge"
    instructions: str = Field(min_length=20, max_length=8000)
    value_type: judges.JudgeValueType = "yes_no"

    @property
    def needs_judge(self) -> bool:
        return True


ScorerSpec = Annotated[CheckScorer | BuiltinScorer | GuidelinesScorer | JudgeScorer, Field(discriminator="kind")]
RETIRED_KINDS = {"custom": "model-written Python scorers are no longer supported (no model text is ever run as code); express it as a check document (fail_when)"}


class DatasetRecord(BaseModel):
    trace_id: str
    stratum: str = Field(description="Why the trace was chosen: error:<signature>, hidden_failure, slow, normal, ...")
    inputs: Any = None
    outputs: Any = None
    expectations: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    experiment_id: str
    records: list[DatasetRecord] = Field(min_length=1)
    facts: TraceFacts = Field(default_factory=TraceFacts, description="What the dataset's traces contain (for prerequisites).")
    mlflow_dataset_id: str | None = None
    registration: str = Field("", description="How the dataset was stored: MLflow evaluation dataset, or why only the file.")
    merged: dict[str, str] = Field(default_factory=dict, description="Picked traces left out because their inputs equal a chosen trace's (left out -> kept).")

    def trace_ids(self) -> list[str]:
        return [r.trace_id for r in self.records]

    def strata(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.stratum] = counts.get(record.stratum, 0) + 1
        return counts


class DroppedScorer(BaseModel):
    name: str
    kind: str
    reason: str


class SuiteSpec(BaseModel):
    experiment_id: str
    created_by: Literal["offline", "agent"] = "agent"
    updated_at: str = Field(default_factory=_now)
    dataset: DatasetSpec | None = None
    scorers: list[ScorerSpec] = Field(default_factory=list, max_length=MAX_SCORERS)
    dropped: list[DroppedScorer] = Field(default_factory=list)
    fail_under: float | None = Field(None, ge=0, le=1, description="Default minimum pass rate for scorers without their own threshold.")

    @model_validator(mode="before")
    @classmethod
    def _retire_kinds(cls, data: Any) -> Any:
        """Specs saved before a kind was retired load with those scorers moved to `dropped`."""
        if not isinstance(data, dict) or not isinstance(data.get("scorers"), list):
            return data
        kept, dropped = [], list(data.get("dropped") or [])
        for scorer in data["scorers"]:
            kind = scorer.get("kind") if isinstance(scorer, dict) else None
            if kind in RETIRED_KINDS:
                dropped.append({"name": str(scorer.get("name", "?")), "kind": kind, "reason": RETIRED_KINDS[kind]})
            else:
                kept.append(scorer)
        return {**data, "scorers": kept, "dropped": dropped}

    def scorer(self, name: str) -> ScorerSpec | None:
        return next((s for s in self.scorers if s.name == name), None)

    def with_scorer(self, scorer: ScorerSpec) -> SuiteSpec:
        """Add, or replace the scorer with the same name."""
        kept = [s for s in self.scorers if s.name != scorer.name]
        return self.model_copy(update={"scorers": [*kept, scorer], "updated_at": _now()})

    def without_scorer(self, name: str, reason: str | None = None) -> SuiteSpec:
        gone = self.scorer(name)
        if gone is None:
            raise KeyError(f"no scorer named {name!r} (scorers: {', '.join(s.name for s in self.scorers) or 'none'})")
        dropped = [*self.dropped, DroppedScorer(name=name, kind=gone.kind, reason=reason)] if reason else self.dropped
        return self.model_copy(update={"scorers": [s for s in self.scorers if s.name != name], "dropped": dropped, "updated_at": _now()})

    def with_dataset(self, dataset: DatasetSpec) -> SuiteSpec:
        return self.model_copy(update={"dataset": dataset, "updated_at": _now()})


def parse_scorer(data: dict[str, Any]) -> ScorerSpec:
    """A scorer spec from plain data (raises pydantic.ValidationError)."""
    from pydantic import TypeAdapter

    return TypeAdapter(ScorerSpec).validate_python(data)


def scorer_problems(scorer: ScorerSpec, suite: SuiteSpec) -> list[str]:
    """Everything wrong with adding `scorer` to `suite`, as sentences; empty when it may be added."""
    if suite.dataset is None:
        first = ["set the dataset first (set_dataset): evidence and prerequisites are checked against its traces"]
        return first + (_document_problems(scorer.rule(), None) if isinstance(scorer, CheckScorer) and scorer.check is None else [])
    problems = _evidence_problems(scorer, suite.dataset)
    problems += definition_problems(scorer, suite.dataset.facts)
    return problems


def _evidence_problems(scorer: ScorerSpec, dataset: DatasetSpec) -> list[str]:
    in_dataset = set(dataset.trace_ids())
    missing = [t for t in scorer.evidence.trace_ids() if t not in in_dataset]
    problems = []
    if missing:
        problems.append(
            f"evidence trace ids not in the dataset: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
            "use trace ids from the dataset (show_suite lists them) or add those traces with set_dataset"
        )
    if scorer.deterministic and not scorer.evidence.must_fail:
        problems.append(
            "evidence.must_fail is empty: give at least one trace id this scorer must fail, "
            "so validation can show it catches what it was made for"
        )
    if not scorer.evidence.trace_ids():
        problems.append("evidence is empty: give trace ids in must_fail and/or must_pass")
    return problems


def definition_problems(scorer: ScorerSpec, facts: TraceFacts) -> list[str]:
    """Problems with the scorer itself on traces with these facts (not its evidence)."""
    if isinstance(scorer, CheckScorer):
        return _check_problems(scorer, facts)
    if isinstance(scorer, BuiltinScorer):
        problem = judges.builtin_problem(scorer.builtin, scorer.params)
        if problem is None:
            problem = judges.unmet_needs(judges.BUILTINS[scorer.builtin], facts)
        return [problem] if problem else []
    if isinstance(scorer, JudgeScorer):
        problem = judges.make_judge_problem(scorer.name, scorer.instructions, scorer.value_type)
        return [problem] if problem else []
    return []


def _check_problems(scorer: CheckScorer, facts: TraceFacts) -> list[str]:
    if scorer.check is None:
        return _document_problems(scorer.rule(), facts)
    try:
        info = get_check(scorer.check)
    except KeyError as exc:
        return [str(exc.args[0])]
    try:
        params = info.validate_params(scorer.params)
        compile_check(info.rule(params))
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        return [f"params for check {info.name} are invalid ({details}); signature: {info.signature_text()}"]
    except (RuleError, ValueError) as exc:  # the preset's own checks, an invalid regex
        return [f"check {info.name} rejected its params: {exc}"]
    problem = info.prerequisite_problem(params, facts)
    return [f"check {info.name} cannot work here: {problem}"] if problem else []


def _document_problems(rule: dict[str, Any], facts: TraceFacts | None) -> list[str]:
    """A check document must compile, and the span names it selects must exist in the dataset."""
    try:
        compile_check(rule)
    except RuleError as exc:
        return [f"the check document is not valid: {exc}"]
    if facts is None:
        return []
    from .checks.engine import glob_match

    unknown = sorted(n for n in selector_names(rule) if not any(glob_match(n, known) for known in facts.span_names))
    if unknown:
        return [f"no span in the dataset's traces is named {', '.join(map(repr, unknown))} (span names: {facts.known(facts.span_names)})"]
    return []


def known_checks() -> list[str]:
    return sorted(CHECKS)

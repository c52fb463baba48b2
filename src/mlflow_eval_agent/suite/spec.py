"""The suite specification: what `evaluation/` is rendered from.

A `SuiteSpec` is a dataset (records from chosen traces, keeping their trace ids) and scorers. Every
scorer is one of five kinds (a code check from our library, an MLflow built-in, Guidelines, a
`make_judge` judge, custom `@scorer` code) and carries evidence: trace ids it must fail and trace
ids it must pass. `scorer_problems` checks a scorer against the suite it joins (prerequisites on
the dataset's traces, parameters, evidence ids) and answers with sentences the agent can act on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import custom, judges
from .checks import CHECKS, get_check
from .facts import TraceFacts

SPEC_FILE = "state/suite_spec.json"
EVAL_DIR = "evaluation"
SCORER_NAME_PATTERN = r"^[a-z][a-z0-9_]{2,63}$"
MAX_SCORERS = 40
MAX_EVIDENCE = 50


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
    kind: Literal["check"] = "check"
    check: str = Field(description="Name of a check from the library (list_checks).")
    params: dict[str, Any] = Field(default_factory=dict)


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


class CustomScorer(_Scorer):
    kind: Literal["custom"] = "custom"
    code: str = Field(min_length=10, max_length=20_000, description="Python source defining one public function.")


ScorerSpec = Annotated[CheckScorer | BuiltinScorer | GuidelinesScorer | JudgeScorer | CustomScorer, Field(discriminator="kind")]


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
        return ["set the dataset first (set_dataset): evidence and prerequisites are checked against its traces"]
    problems = _evidence_problems(scorer, suite.dataset)
    problems += definition_problems(scorer, suite.dataset.facts)
    if isinstance(scorer, CustomScorer) and not problems:
        problems += _custom_name_problems(scorer, [s for s in suite.scorers if isinstance(s, CustomScorer) and s.name != scorer.name])
    return problems


def _custom_name_problems(scorer: CustomScorer, others: list[CustomScorer]) -> list[str]:
    """Custom code is rendered into one scorers.py with the check library and other custom code."""
    from .checks._source import library_names

    taken = library_names() | {n for other in others for n in custom.analyse(other.code).top_level_names}
    clash = sorted(set(custom.analyse(scorer.code).top_level_names) & taken)
    if clash:
        return [f"the code defines {', '.join(clash)}, a name the suite already uses (library helpers or other custom scorers); rename it"]
    return []


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
    if isinstance(scorer, CustomScorer):
        try:
            custom.analyse(scorer.code)
        except custom.CustomCodeError as exc:
            return [str(exc)]
    return []


def _check_problems(scorer: CheckScorer, facts: TraceFacts) -> list[str]:
    try:
        info = get_check(scorer.check)
    except KeyError as exc:
        return [str(exc.args[0])]
    try:
        params = info.validate_params(scorer.params)
        info.factory(**params)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        return [f"params for check {info.name} are invalid ({details}); signature: {info.signature_text()}"]
    except Exception as exc:  # a factory's own check, e.g. an invalid regex
        return [f"check {info.name} rejected its params: {type(exc).__name__}: {exc}"]
    problem = info.prerequisite_problem(params, facts)
    return [f"check {info.name} cannot work here: {problem}"] if problem else []


def known_checks() -> list[str]:
    return sorted(CHECKS)

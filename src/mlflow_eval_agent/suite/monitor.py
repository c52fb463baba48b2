"""Production monitoring: the suite's trusted judges registered on the experiment, sampling new traces.

MLflow scores incoming traces itself once a scorer is registered and started (`Scorer.register`,
`.start(sampling_config=ScorerSamplingConfig(...))`), on Databricks and on a self-hosted MLflow
server alike. What goes there is decided by the tiers of the last validation (agreement.py): a
`gate` or `monitor` judge is registered with its sample rate; an `explore` one is not (it has not
been shown to agree with people). Code checks are evaluated by the suite's engine, which a
registered scorer cannot carry; they are monitored by the scheduled suite run instead: `monitor run`
(scheduled_run.py: the suite on the traces since its last run), which the bundle's
`eval_agent_scheduled_eval` job runs on a schedule.

Every judge is built from the suite's spec (built-in class with its parameters, guidelines, or
`make_judge` instructions), never from generated code. Names are the suite's scorer names, so a
registered scorer's assessments line up with the suite's verdicts in the MLflow UI.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .spec import BuiltinScorer, GuidelinesScorer, JudgeScorer, ScorerSpec, SuiteSpec
from . import judges as judge_catalog

DEFAULT_RATES = {"gate": 1.0, "monitor": 0.2}
Action = Literal["register", "scheduled", "skip"]


class MonitorPlan(BaseModel):
    name: str
    kind: str
    tier: str
    action: Action
    sample_rate: float | None = None
    reason: str = ""


class RegisteredScorer(BaseModel):
    name: str
    sample_rate: float | None = None
    filter_string: str | None = None
    status: str = Field(description="active (sampling), stopped (registered, rate 0)")


def plan_monitoring(spec: SuiteSpec, tiers: dict[str, str], *, rates: dict[str, float] | None = None, only: list[str] | None = None) -> list[MonitorPlan]:
    """What `monitor start` does with each scorer: register judges of tier gate/monitor at their
    rate, leave code checks to the scheduled suite run, skip explore judges (with the reason)."""
    rates = {**DEFAULT_RATES, **(rates or {})}
    plans = []
    for s in spec.scorers:
        if only and s.name not in only:
            continue
        tier = tiers.get(s.name, "explore")
        if not s.needs_judge:
            plans.append(MonitorPlan(name=s.name, kind=s.kind, tier=tier, action="scheduled",
                                     reason="a code check runs in the suite's engine: scored by `monitor run` on a schedule (the eval_agent_scheduled_eval job)"))
        elif tier in ("gate", "monitor"):
            plans.append(MonitorPlan(name=s.name, kind=s.kind, tier=tier, action="register", sample_rate=rates[tier]))
        else:
            plans.append(MonitorPlan(name=s.name, kind=s.kind, tier=tier, action="skip",
                                     reason="explore: not shown to agree with people (label traces in the MLflow UI, then validate)"))
    return plans


def judge_object(spec: ScorerSpec, model: str | None) -> Any:
    """The MLflow judge for one judge scorer of the spec (the same one scorers.py builds)."""
    if isinstance(spec, BuiltinScorer):
        from mlflow.genai.scorers import builtin_scorers

        problem = judge_catalog.builtin_problem(spec.builtin, spec.params)
        if problem:
            raise ValueError(problem)
        return getattr(builtin_scorers, spec.builtin)(name=spec.name, model=model, **spec.params)
    if isinstance(spec, GuidelinesScorer):
        from mlflow.genai.scorers import Guidelines

        return Guidelines(name=spec.name, guidelines=list(spec.guidelines), model=model)
    if isinstance(spec, JudgeScorer):
        from mlflow.genai.judges import make_judge

        return make_judge(name=spec.name, instructions=spec.instructions, feedback_value_type=judge_catalog.judge_value_type(spec.value_type), model=model)
    raise ValueError(f"{spec.name} is a code check, not a judge: it cannot be registered")


def start(spec: SuiteSpec, plans: list[MonitorPlan], experiment_id: str, model: str | None, filter_string: str | None = None) -> list[str]:
    """Register and start every `register` plan; returns one sentence per scorer (done or why not)."""
    from mlflow.genai.scorers import ScorerSamplingConfig

    by_name = {s.name: s for s in spec.scorers}
    lines = []
    registered = {r.name for r in list_registered(experiment_id)}
    for plan in plans:
        if plan.action != "register":
            lines.append(f"{plan.name}: not registered ({plan.reason})")
            continue
        try:
            judge = judge_object(by_name[plan.name], model)
            if plan.name not in registered:
                judge = judge.register(name=plan.name, experiment_id=experiment_id)
            judge.start(name=plan.name, experiment_id=experiment_id,
                        sampling_config=ScorerSamplingConfig(sample_rate=plan.sample_rate, filter_string=filter_string))
            lines.append(f"{plan.name}: sampling {plan.sample_rate:.0%} of new traces ({plan.tier})")
        except Exception as exc:  # MLflow's own words, on one line
            lines.append(f"{plan.name}: could not be registered: {_one_line(exc)}")
    return lines


def list_registered(experiment_id: str) -> list[RegisteredScorer]:
    from mlflow.genai.scorers import list_scorers

    out = []
    for s in list_scorers(experiment_id=experiment_id):
        rate = getattr(s, "sample_rate", None)
        out.append(RegisteredScorer(name=s.name, sample_rate=rate, filter_string=getattr(s, "filter_string", None),
                                    status="active" if rate else "stopped"))
    return sorted(out, key=lambda r: r.name)


def stop(experiment_id: str, names: list[str] | None = None) -> list[str]:
    """Stop sampling for these registered scorers (all when None); they stay registered."""
    from mlflow.genai.scorers import get_scorer

    lines = []
    registered = list_registered(experiment_id)
    for r in registered:
        if names and r.name not in names:
            continue
        try:
            get_scorer(name=r.name, experiment_id=experiment_id).stop(name=r.name, experiment_id=experiment_id)
            lines.append(f"{r.name}: stopped")
        except Exception as exc:
            lines.append(f"{r.name}: could not be stopped: {_one_line(exc)}")
    unknown = sorted(set(names or []) - {r.name for r in registered})
    lines += [f"{n}: not registered on experiment {experiment_id}" for n in unknown]
    return lines


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]

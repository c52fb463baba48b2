"""Run a deterministic scorer on its evidence traces before it joins the suite.

Code checks run in-process on the check engine (trusted code evaluating data); model-free built-ins
are MLflow's own code. Judges cannot be previewed without a model: they are measured when the
suite is validated. A scorer whose verdicts contradict its evidence is sent back with the trace ids
and rationales, so the author can fix the scorer or the evidence.
"""

from __future__ import annotations

from typing import Any

from .checks import compile_check
from .spec import BuiltinScorer, CheckScorer, ScorerSpec

Verdicts = dict[str, tuple[bool, str]]


def preview_verdicts(scorer: ScorerSpec, traces: list[Any]) -> Verdicts | None:
    """trace id -> (passed, rationale) on these traces; None for LLM judges."""
    if isinstance(scorer, CheckScorer):
        run = compile_check(scorer.rule())
        return {t.info.trace_id: run(t, None) for t in traces}
    if isinstance(scorer, BuiltinScorer) and not scorer.needs_judge:
        return {t.info.trace_id: _builtin_verdict(scorer, t) for t in traces}
    return None


def _builtin_verdict(scorer: BuiltinScorer, trace: Any) -> tuple[bool, str]:
    from mlflow.genai.scorers import builtin_scorers

    judge = getattr(builtin_scorers, scorer.builtin)(name=scorer.name, **scorer.params)
    feedback = judge(trace=trace)
    return str(feedback.value).lower() in ("yes", "true"), feedback.rationale or ""


def evidence_mismatches(scorer: ScorerSpec, verdicts: Verdicts) -> list[str]:
    """Sentences naming each evidence trace the scorer got wrong (empty when it agrees)."""
    problems = []
    for trace_id in scorer.evidence.must_fail:
        passed, why = verdicts.get(trace_id, (None, "not scored"))
        if passed is not False:
            problems.append(f"it passed must_fail trace {trace_id} ({why})")
    for trace_id in scorer.evidence.must_pass:
        passed, why = verdicts.get(trace_id, (None, "not scored"))
        if passed is not True:
            problems.append(f"it failed must_pass trace {trace_id} ({why})")
    return problems

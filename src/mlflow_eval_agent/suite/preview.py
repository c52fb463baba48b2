"""Run a deterministic scorer on its evidence traces before it joins the suite.

Code checks and model-free built-ins run in-process (they are our code or MLflow's); custom code
runs in a child process (custom.py). Judges cannot be previewed without a model: they are
measured when the suite is validated. A scorer whose verdicts contradict its evidence is sent back
with the trace ids and rationales, so the author can fix the scorer or the evidence.
"""

from __future__ import annotations

from typing import Any

from .checks import get_check
from .custom import run_custom
from .spec import BuiltinScorer, CheckScorer, CustomScorer, ScorerSpec

Verdicts = dict[str, tuple[bool, str]]


def preview_verdicts(scorer: ScorerSpec, traces: list[Any], custom_timeout_s: float = 60.0) -> Verdicts | None:
    """trace id -> (passed, rationale) on these traces; None for LLM judges."""
    if isinstance(scorer, CheckScorer):
        run = get_check(scorer.check).build(scorer.params)
        return {t.info.trace_id: run(t, None) for t in traces}
    if isinstance(scorer, BuiltinScorer) and not scorer.needs_judge:
        return {t.info.trace_id: _builtin_verdict(scorer, t) for t in traces}
    if isinstance(scorer, CustomScorer):
        result = run_custom(scorer.code, traces, timeout_s=custom_timeout_s)
        return {tid: (passed, result.rationales.get(tid, "")) for tid, passed in result.verdicts.items()}
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

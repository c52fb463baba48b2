"""What the judges will cost, said before any judge is called.

traces x judges x tokens per call: each judge reads one trace's request and answer (plus what its
kind adds: retrieved documents, the conversation, the guidelines or instructions) inside MLflow's
judge prompt, and writes a short rationale. The arithmetic and the prices are cost_model.py's (the
rendered run_eval.py ships a verbatim copy of it, so its forecast before its own judge calls is the
same one); here the tokens are estimated from the suite dataset's records. A model the price list
does not list gets a token estimate and no dollar figure, and a budget cannot be checked for it
(said so).

The estimate is an upper-bound-minded guess, not a bill: it is printed with its assumptions.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from . import cost_model
from .cost_model import CHARS_PER_TOKEN, OUTPUT_TOKENS, PROMPT_TOKENS, READS_MORE, price_of  # noqa: F401 (this module's API)
from .spec import BuiltinScorer, GuidelinesScorer, JudgeScorer, SuiteSpec


class JudgeCost(BaseModel):
    name: str
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None = None


class CostForecast(BaseModel):
    model: str | None
    traces: int
    judges: list[JudgeCost] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = Field(None, description="None when the model's price is not known")
    priced_as: str | None = Field(None, description="The price-list entry used")

    def line(self) -> str:
        return cost_model.forecast_line(len(self.judges), self.traces, self.input_tokens, self.output_tokens, self.usd, self.priced_as)

    def over(self, budget_usd: float | None) -> str | None:
        """Why the judges must not run under this budget, or None."""
        return cost_model.over_budget(self.usd, budget_usd) if self.judges else None


def forecast(spec: SuiteSpec, model: str | None) -> CostForecast:
    """The judges' tokens and dollars on the suite's dataset, before any call."""
    records = spec.dataset.records if spec.dataset else []
    per_record = [len(_text(r.inputs)) + len(_text(r.outputs)) for r in records]
    costs = []
    for judge in (s for s in spec.scorers if s.needs_judge):
        factor, extra = cost_model.judge_reads(judge.builtin if isinstance(judge, BuiltinScorer) else "", _judge_text(judge))
        tokens_in = sum(cost_model.input_tokens(chars, factor, extra) for chars in per_record)
        costs.append(JudgeCost(name=judge.name, calls=len(records), input_tokens=tokens_in, output_tokens=OUTPUT_TOKENS * len(records)))
    total_in, total_out = sum(c.input_tokens for c in costs), sum(c.output_tokens for c in costs)
    usd, key = cost_model.dollars(model, total_in, total_out)
    if usd is not None:
        costs = [c.model_copy(update={"usd": cost_model.dollars(model, c.input_tokens, c.output_tokens)[0]}) for c in costs]
    return CostForecast(model=model, traces=len(records), judges=costs, input_tokens=total_in, output_tokens=total_out, usd=usd, priced_as=key)


def _judge_text(judge: Any) -> int:
    if isinstance(judge, GuidelinesScorer):
        return sum(len(g) for g in judge.guidelines)
    if isinstance(judge, JudgeScorer):
        return len(judge.instructions)
    return 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)

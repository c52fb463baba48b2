"""What the judges will cost, said before any judge is called.

traces x judges x tokens per call: each judge reads one trace's request and answer (plus what its
kind adds: retrieved documents, the conversation, the guidelines or instructions) inside MLflow's
judge prompt, and writes a short rationale. Tokens are estimated from the dataset's own records at
CHARS_PER_TOKEN; prices per token come from the price list litellm ships (the library behind
MLflow's judges), read as a file so nothing is imported or downloaded. A model it does not list
gets a token estimate and no dollar figure, and a budget cannot be checked for it (said so).

The estimate is an upper-bound-minded guess, not a bill: it is printed with its assumptions.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .spec import BuiltinScorer, GuidelinesScorer, JudgeScorer, SuiteSpec

CHARS_PER_TOKEN = 4.0
PROMPT_TOKENS = 600  # MLflow's judge prompt around the trace's text (instructions, format, rubric)
OUTPUT_TOKENS = 200  # a rationale and a verdict
# Built-ins that read more than the request and answer, and roughly how much more (x the record).
READS_MORE = {"RetrievalGroundedness": 3.0, "RetrievalRelevance": 3.0, "RetrievalSufficiency": 3.0, "ToolCallCorrectness": 2.0,
              "ToolCallEfficiency": 2.0}


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
        money = f"~${self.usd:.2f}" if self.usd is not None else "cost unknown (no price listed for this model)"
        return (f"Judge cost forecast: {len(self.judges)} judges x {self.traces} traces = {sum(j.calls for j in self.judges)} calls, "
                f"~{self.input_tokens:,} input + {self.output_tokens:,} output tokens, {money}"
                + (f" at {self.priced_as} list prices" if self.priced_as else "") + f" (~{CHARS_PER_TOKEN:.0f} characters per token)")

    def over(self, budget_usd: float | None) -> str | None:
        """Why the judges must not run under this budget, or None."""
        if budget_usd is None or not self.judges:
            return None
        if self.usd is None:
            return None
        if self.usd > budget_usd:
            return f"the judges' forecast cost ~${self.usd:.2f} exceeds the budget of ${budget_usd:.2f} (raise --max-judge-usd or judge fewer traces)"
        return None


def forecast(spec: SuiteSpec, model: str | None) -> CostForecast:
    """The judges' tokens and dollars on the suite's dataset, before any call."""
    records = spec.dataset.records if spec.dataset else []
    per_record = [len(_text(r.inputs)) + len(_text(r.outputs)) for r in records]
    judges = [s for s in spec.scorers if s.needs_judge]
    costs = []
    for judge in judges:
        extra = _judge_text(judge)
        factor = READS_MORE.get(judge.builtin, 1.0) if isinstance(judge, BuiltinScorer) else 1.0
        tokens_in = sum(int((chars * factor + extra) / CHARS_PER_TOKEN) + PROMPT_TOKENS for chars in per_record)
        costs.append(JudgeCost(name=judge.name, calls=len(records), input_tokens=tokens_in, output_tokens=OUTPUT_TOKENS * len(records)))
    price = price_of(model)
    total_in, total_out = sum(c.input_tokens for c in costs), sum(c.output_tokens for c in costs)
    if price:
        key, (cin, cout) = price
        costs = [c.model_copy(update={"usd": round(c.input_tokens * cin + c.output_tokens * cout, 4)}) for c in costs]
        return CostForecast(model=model, traces=len(records), judges=costs, input_tokens=total_in, output_tokens=total_out,
                            usd=round(total_in * cin + total_out * cout, 4), priced_as=key)
    return CostForecast(model=model, traces=len(records), judges=costs, input_tokens=total_in, output_tokens=total_out)


def price_of(model: str | None) -> tuple[str, tuple[float, float]] | None:
    """(price-list key, (USD per input token, per output token)) for an MLflow judge model URI
    like "anthropic:/claude-sonnet-4-5" or "databricks:/databricks-claude-sonnet-4-5"."""
    if not model:
        return None
    provider, _, name = model.partition(":/")
    name = name.strip("/") or provider
    prices = _price_list()
    for key in (f"{provider}/{name}", name, f"databricks/{name}" if provider == "databricks" else None):
        entry = prices.get(key) if key else None
        if isinstance(entry, dict) and entry.get("input_cost_per_token") is not None:
            return key, (float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token") or 0.0))
    return None


@lru_cache(maxsize=1)
def _price_list() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
    return {}


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

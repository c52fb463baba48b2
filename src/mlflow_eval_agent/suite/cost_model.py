"""The judge cost model: tokens per judge call and the price per token, in one place.

Self-contained (standard library only): the product's forecast (cost.py, before validation) and
the rendered suite's run_eval.py (a verbatim copy, `_cost.py`, before its judges run) both use it,
so the two forecasts cannot drift apart.

A judge call reads one trace's request and answer (x READS_MORE for judges that read retrieved
documents or tool calls), plus its own text (guidelines, instructions), inside MLflow's judge
prompt (PROMPT_TOKENS), and writes a rationale (OUTPUT_TOKENS); tokens are characters /
CHARS_PER_TOKEN. Prices come from the price list litellm ships (the library behind MLflow's
judges), read as a file: nothing is imported from it or downloaded.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

CHARS_PER_TOKEN = 4.0
PROMPT_TOKENS = 600  # MLflow's judge prompt around the trace's text (instructions, format, rubric)
OUTPUT_TOKENS = 200  # a rationale and a verdict
# Built-in judges that read more than the request and answer, and roughly how much more (x the trace text).
READS_MORE = {"RetrievalGroundedness": 3.0, "RetrievalRelevance": 3.0, "RetrievalSufficiency": 3.0, "ToolCallCorrectness": 2.0,
              "ToolCallEfficiency": 2.0}
PRICE_FILE = "model_prices_and_context_window_backup.json"
_PRICES = []


def input_tokens(trace_chars, factor=1.0, extra_chars=0):
    """Input tokens of one judge call on a trace with `trace_chars` characters of request and answer."""
    return int((trace_chars * factor + extra_chars) / CHARS_PER_TOKEN) + PROMPT_TOKENS


def judge_reads(kind, text_chars=0):
    """(factor, extra characters) of a judge: `kind` is a built-in's class name (or anything else),
    `text_chars` the length of its own guidelines or instructions."""
    return READS_MORE.get(kind, 1.0), text_chars


def price_of(model):
    """(price-list key, (USD per input token, per output token)) for an MLflow judge model URI like
    "anthropic:/claude-sonnet-4-5" or "databricks:/databricks-claude-sonnet-4-5"; None when unlisted."""
    if not model:
        return None
    provider, _, name = str(model).partition(":/")
    name = name.strip("/") or provider
    prices = price_list()
    for key in (f"{provider}/{name}", name, f"databricks/{name}" if provider == "databricks" else None):
        entry = prices.get(key) if key else None
        if isinstance(entry, dict) and entry.get("input_cost_per_token") is not None:
            return key, (float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token") or 0.0))
    return None


def price_list():
    """litellm's bundled price list ({} when litellm is not installed), read once."""
    if not _PRICES:
        _PRICES.append(_read_price_list())
    return _PRICES[0]


def _read_price_list():
    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / PRICE_FILE
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
    return {}


def dollars(model, tokens_in, tokens_out):
    """(USD, price-list key) for these tokens, or (None, None) when the model is not listed."""
    price = price_of(model)
    if not price:
        return None, None
    key, (cin, cout) = price
    return round(tokens_in * cin + tokens_out * cout, 4), key


def over_budget(usd, budget_usd, flag="--max-judge-usd"):
    """Why the judges must not run under this budget, or None (no budget, or no price to compare)."""
    if budget_usd is None or usd is None or usd <= budget_usd:
        return None
    return f"the judges' forecast cost ~${usd:.2f} exceeds the budget of ${budget_usd:.2f} (raise {flag} or judge fewer traces)"


def forecast_line(judges, traces, tokens_in, tokens_out, usd, priced_as):
    money = f"~${usd:.2f}" if usd is not None else "cost unknown (no price listed for this model)"
    return (f"Judge cost forecast: {judges} judges x {traces} traces = {judges * traces} calls, "
            f"~{tokens_in:,} input + {tokens_out:,} output tokens, {money}"
            + (f" at {priced_as} list prices" if priced_as else "") + f" (~{CHARS_PER_TOKEN:.0f} characters per token)")

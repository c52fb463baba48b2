"""The judges' cost forecast (issue 15): tokens from the dataset's records, dollars from the price
list litellm ships, said before any judge call, and a budget that skips the judges when exceeded."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow_eval_agent.suite.cost import CHARS_PER_TOKEN, OUTPUT_TOKENS, PROMPT_TOKENS, forecast, price_of
from mlflow_eval_agent.suite.spec import SuiteSpec

WHY = "watches a failure seen in the profile"


def _spec(records: int = 3) -> SuiteSpec:
    return SuiteSpec.model_validate({
        "experiment_id": "1",
        "dataset": {"name": "d", "experiment_id": "1", "records": [{"trace_id": f"tr-{i}", "stratum": "normal", "inputs": "q" * 400, "outputs": "a" * 400} for i in range(records)]},
        "scorers": [
            {"kind": "builtin", "name": "relevance", "builtin": "RelevanceToQuery", "why": WHY},
            {"kind": "guidelines", "name": "polite", "guidelines": ["g" * 80], "why": WHY},
            {"kind": "check", "name": "no_errors", "check": "no_unrecovered_errors", "why": WHY},
        ],
    })


def test_tokens_follow_the_records_and_dollars_the_price_list():
    f = forecast(_spec(), "anthropic:/claude-sonnet-4-5")
    assert f.traces == 3 and [j.name for j in f.judges] == ["relevance", "polite"]  # the code check costs nothing
    per_call = int(800 / CHARS_PER_TOKEN) + PROMPT_TOKENS
    assert f.judges[0].input_tokens == 3 * per_call
    assert f.judges[1].input_tokens == 3 * (int((800 + 80) / CHARS_PER_TOKEN) + PROMPT_TOKENS)
    assert f.output_tokens == 2 * 3 * OUTPUT_TOKENS
    key, (cin, cout) = price_of("anthropic:/claude-sonnet-4-5")
    assert key == "claude-sonnet-4-5" and cin > 0 and cout > cin
    assert abs(f.usd - (f.input_tokens * cin + f.output_tokens * cout)) < 1e-3
    assert "2 judges x 3 traces = 6 calls" in f.line() and "$" in f.line()
    # cost grows linearly with the traces judged
    assert forecast(_spec(30), "anthropic:/claude-sonnet-4-5").input_tokens == 10 * f.input_tokens


def test_budget_and_unknown_models():
    f = forecast(_spec(), "anthropic:/claude-sonnet-4-5")
    assert f.over(None) is None and f.over(100.0) is None
    assert "exceeds the budget" in (f.over(0.0001) or "") and f"~${f.usd:.2f}" in f.over(0.0001)
    unknown = forecast(_spec(), "openai-compatible:/my-own-model")
    assert unknown.usd is None and unknown.input_tokens == f.input_tokens and "cost unknown" in unknown.line()
    assert unknown.over(0.0001) is None  # nothing to compare with: the line says so


def test_validation_records_the_forecast_and_skips_judges_over_budget(tmp_path: Path, monkeypatch):
    """validate_suite makes the forecast before starting the suite, and a budget it exceeds
    turns into --skip-judges with the reason (the child is faked: no suite really runs)."""
    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.suite import validate as validation

    store = open_session_store(str(tmp_path), "s")
    store.write_text("evaluation/run_eval.py", "# placeholder\n")
    seen = {}

    class Outcome:
        returncode, seconds, timed_out = 0, 0.1, False

        def exit_reason(self):
            return "exited 0"

        def tail(self):
            return ""

    def fake_run_child(args, **kwargs):
        seen["args"] = args
        out = Path(args[args.index("--output-json") + 1])
        out.write_text(json.dumps({"gate": "PASS", "scorers": [], "per_trace": {}}), encoding="utf-8")
        return Outcome()

    monkeypatch.setattr(validation, "run_child", fake_run_child)
    monkeypatch.setattr(validation, "run_warm", fake_run_child)  # validation runs in the warm child by default
    report = validation.validate_suite(_spec(), store, f"sqlite:///{tmp_path / 'm.db'}", judge_model="anthropic:/claude-sonnet-4-5", max_judge_usd=0.0001)
    assert "--skip-judges" in seen["args"] and "--judge-model" not in seen["args"]
    assert report.latest.judge_cost is not None and report.latest.judge_cost.usd > 0.0001
    report = validation.validate_suite(_spec(), store, f"sqlite:///{tmp_path / 'm.db'}", judge_model="anthropic:/claude-sonnet-4-5", max_judge_usd=50)
    assert "--skip-judges" not in seen["args"] and "--judge-model" in seen["args"]

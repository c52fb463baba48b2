"""The rendered run_eval.py forecasts its judges' cost before any judge call (issue 15, item 4):
traces x judges x tokens from the traces' own text, priced like the product's forecast (the suite
ships cost_model.py verbatim as _cost.py), and --max-budget-usd skips the judges, saying why."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import mlflow

from mlflow_eval_agent.demo.chat_server import ChatReply, FakeChatServer
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.suite import cost_model
from mlflow_eval_agent.suite.dataset import build_dataset
from mlflow_eval_agent.suite.render import render_suite
from mlflow_eval_agent.suite.spec import SuiteSpec, parse_scorer

MODEL = "openai:/gpt-4o-mini"  # listed in litellm's price list


def yes(request: dict) -> ChatReply:
    return ChatReply(content=json.dumps({"result": "yes", "rationale": "fine"}))


def _run(folder, uri, server, *extra):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": server.base_url}
    return subprocess.run([sys.executable, "run_eval.py", "--judge-model", MODEL, "--output-json", "out.json", *extra], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=300)


def test_forecast_is_printed_before_the_judges_and_a_budget_skips_them(tracking_uri, tmp_path):
    experiment_id = mlflow.create_experiment("cost")
    mlflow.set_experiment(experiment_id=experiment_id)
    ids = []
    for i in range(4):
        with mlflow.start_span(name="agent") as span:
            span.set_inputs({"question": f"question {i} " + "q" * 400})
            span.set_outputs({"content": f"answer {i} " + "a" * 400})
        ids.append(span.trace_id)
    dataset, _ = build_dataset("cost", experiment_id, [(t, "normal") for t in ids])
    instructions = "Is {{ outputs }} a helpful answer? Answer yes or no."
    spec = SuiteSpec(experiment_id=experiment_id, dataset=dataset, scorers=[
        parse_scorer({"kind": "make_judge", "name": "helpful", "instructions": instructions, "value_type": "yes_no", "why": "answers must help"}),
        parse_scorer({"kind": "guidelines", "name": "polite", "guidelines": ["The answer is polite."], "why": "answers must be polite"}),
    ])
    store = open_session_store(str(tmp_path / "sessions"), "cost")
    render_suite(spec, store)
    folder = store.path("evaluation")
    assert (folder / "_cost.py").read_text() == inspect.getsource(cost_model)

    with FakeChatServer(yes) as server:
        over = _run(folder, tracking_uri, server, "--max-budget-usd", "0")
        judged_over = len(server.requests)
        under = _run(folder, tracking_uri, server, "--max-budget-usd", "100")
    assert over.returncode == 0, over.stderr[-2000:]
    line = next(x for x in over.stdout.splitlines() if x.startswith("Judge cost forecast:"))
    assert "2 judges x 4 traces = 8 calls" in line and "$" in line and "list prices" in line
    # the tokens are the traces' own text at the product's rate: request and answer JSON of each root span
    traces = [mlflow.get_trace(t) for t in ids]
    chars = [len(t.data.request) + len(t.data.response) for t in traces]
    expected_in = sum(cost_model.input_tokens(c, 1.0, len(instructions)) + cost_model.input_tokens(c, 1.0, len("The answer is polite.")) for c in chars)
    assert f"~{expected_in:,} input + {2 * 4 * cost_model.OUTPUT_TOKENS:,} output tokens" in line, line
    # over budget: no judge was called, and the run says why
    assert judged_over == 0
    assert "exceeds the budget of $0.00 (raise --max-budget-usd" in over.stderr, over.stderr[-2000:]
    # within budget: the forecast comes first, then the judges run
    assert under.returncode in (0, 1), under.stderr[-2000:]
    assert under.stdout.index("Judge cost forecast:") < under.stdout.index("helpful") and len(server.requests) == 8
    rows = {r["scorer"]: r for r in json.loads((folder / "out.json").read_text())["scorers"]}
    assert rows["helpful"]["status"] == "REPORT" and rows["polite"]["passed"] == 4

"""The check library: each preset's verdicts through the engine, its typed parameters, its documentation."""

from __future__ import annotations

import ast
import inspect
import json
import sys
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from mlflow_eval_agent.suite.checks import CHECKS, compile_check, engine, get_check

MS = 1_000_000


def span(name, span_type="UNKNOWN", status="OK", parent="root", start_ms=0, end_ms=10, inputs=None, outputs=None, error=None, description=None):
    events = []
    if error:
        events.append(SimpleNamespace(name="exception", attributes={"exception.type": error[0], "exception.message": error[1]}))
        description = description or f"{error[0]}: {error[1]}"
    return SimpleNamespace(
        name=name, span_type=span_type, parent_id=parent, start_time_ns=start_ms * MS,
        end_time_ns=None if end_ms is None else end_ms * MS, inputs=inputs, outputs=outputs, events=events,
        status=SimpleNamespace(status_code=status, description=description or ""),
    )


def trace(*children, root_status="OK", outputs="Your order has shipped.", duration_ms=800, state=None, tokens=None):
    root = span("agent", "AGENT", root_status, parent=None, end_ms=duration_ms, outputs=outputs)
    info = SimpleNamespace(execution_time_ms=duration_ms, state=state or root_status, token_usage=tokens, trace_id="tr-x")
    return SimpleNamespace(info=info, data=SimpleNamespace(spans=[root, *children]))


def verdict(check, trace_, outputs=None, **params):
    return get_check(check).build(params)(trace_, outputs)


CLEAN = trace(
    span("search_docs", "RETRIEVER", outputs=[{"page_content": "Ships in 2 days"}]),
    span("get_order_status", "TOOL", outputs={"status": "shipped"}),
    span("chat", "CHAT_MODEL", end_ms=500),
)
CAUGHT = trace(span("check_inventory", "TOOL", "ERROR", error=("ConnectionError", "inventory service unavailable at 10.0.3.7:8080")))
UNCAUGHT = trace(
    span("get_order_status", "TOOL", "ERROR", error=("TimeoutError", "order service timed out after 30s for 10042")),
    root_status="ERROR", outputs=None, state="ERROR",
)
RETRIED = trace(
    span("check_inventory", "TOOL", "ERROR", start_ms=0, error=("ConnectionError", "inventory service unavailable")),
    span("check_inventory", "TOOL", start_ms=20, outputs={"in_stock": True}),
)
EMPTY_RETRIEVAL = trace(span("search_docs", "RETRIEVER", outputs=[]))
SLOW = trace(span("chat", "CHAT_MODEL", end_ms=9000), duration_ms=9100)


@pytest.mark.parametrize(
    ("check", "params", "failing", "passing"),
    [
        ("no_error_spans", {}, [CAUGHT, UNCAUGHT], [CLEAN, SLOW]),
        ("no_error_spans", {"span_types": ["RETRIEVER"]}, [], [CAUGHT, UNCAUGHT, CLEAN]),
        ("no_exception", {"exception_type": "TimeoutError", "span_name": "get_order_status"}, [UNCAUGHT], [CAUGHT, CLEAN]),
        ("no_exception", {"exception_type": "builtins.TimeoutError"}, [UNCAUGHT], [CAUGHT]),
        ("no_exception", {"exception_type": "TimeoutError", "message_regex": r"after \d+s for 99"}, [], [UNCAUGHT]),
        ("no_exception", {"span_name": "check_inventory", "message_regex": r"^inventory service unavailable at .+?:\d+"}, [CAUGHT], [UNCAUGHT, CLEAN]),
        ("no_hidden_failures", {}, [CAUGHT], [UNCAUGHT, CLEAN]),
        ("trace_succeeded", {}, [UNCAUGHT], [CAUGHT, CLEAN]),
        ("tool_succeeded", {"tool": "get_order_status"}, [UNCAUGHT], [CLEAN, CAUGHT]),
        ("required_tool_called", {"tool": "get_order_status"}, [CAUGHT, SLOW], [CLEAN, UNCAUGHT]),
        ("tool_call_budget", {"max_calls": 0}, [CLEAN, CAUGHT], [SLOW]),
        ("latency_budget", {"max_ms": 2000}, [SLOW], [CLEAN, CAUGHT]),
        ("span_latency_budget", {"span_name": "chat", "max_ms": 1000}, [SLOW], [CLEAN]),
        ("output_non_empty", {}, [UNCAUGHT, trace(outputs="  "), trace(outputs={"role": "assistant", "content": ""})], [CLEAN]),
        ("retrieval_non_empty", {}, [EMPTY_RETRIEVAL], [CLEAN, SLOW]),
        ("output_regex", {"pattern": "shipped"}, [trace(outputs="no idea")], [CLEAN]),
        ("output_regex", {"pattern": "traceback", "mode": "must_not_match", "case_insensitive": True}, [trace(outputs="Traceback (most recent)")], [CLEAN]),
        ("output_length", {"max_length": 3, "unit": "words"}, [CLEAN], [trace(outputs="ok then")]),
        ("no_pii", {}, [trace(outputs="mail me at ann@example.com"), trace(outputs="card 4111 1111 1111 1111")], [CLEAN, trace(outputs="ref 4111 1111 1111 1112")]),
        ("output_json", {}, [CLEAN], [trace(outputs='{"a": 1}'), trace(outputs={"a": 1})]),
        ("output_json", {"json_schema": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}},
         [trace(outputs='{"a": "x"}'), trace(outputs='{"b": 1}')], [trace(outputs='{"a": 2}')]),
        ("token_budget", {"max_tokens": 100}, [trace(tokens={"total_tokens": 101})], [trace(tokens={"total_tokens": 100}), CLEAN]),
        ("no_exception", {"span_name": "check_inventory", "unless_recovered": True}, [CAUGHT], [RETRIED, CLEAN]),
        ("tool_succeeded", {"tool": "check_inventory", "unless_recovered": True}, [CAUGHT], [RETRIED, CLEAN]),
        ("no_unrecovered_errors", {}, [CAUGHT, UNCAUGHT], [RETRIED, CLEAN]),
        ("no_made_up_data", {}, [trace(span("chat", "CHAT_MODEL", outputs="Let's assume the price is 10 EUR."))], [CLEAN]),
        ("no_limit_reached", {}, [trace(span("step", "AGENT", outputs="Max turns reached, stopping."))], [CLEAN]),
        ("no_loop_report", {}, [trace(span("orchestrator", "AGENT", outputs="We are stuck in a loop."))], [CLEAN]),
        ("tool_was_used", {}, [trace(span("chat", "CHAT_MODEL"))], [CLEAN]),
        ("no_error_text", {"pattern": "exit code: [1-9]"}, [trace(span("run", "TOOL", outputs="exit code: 1"))], [CLEAN, trace(span("run", "TOOL", outputs="exit code: 0"))]),
    ],
)
def test_check_verdicts(check, params, failing, passing):
    for item in failing:
        passed, rationale = verdict(check, item, **params)
        assert passed is False, rationale
        assert rationale
    for item in passing:
        passed, rationale = verdict(check, item, **params)
        assert passed is True, rationale


def test_rationales_name_the_failure():
    passed, rationale = verdict("tool_succeeded", UNCAUGHT, tool="get_order_status")
    assert not passed and "TimeoutError" in rationale and "get_order_status" in rationale
    passed, rationale = verdict("latency_budget", SLOW, max_ms=2000)
    assert "9100 ms" in rationale and "2000 ms" in rationale


def test_odd_traces_do_not_crash_checks():
    odd = [
        SimpleNamespace(info=None, data=None),
        trace(span("x", None, status=None, end_ms=None)),
        trace(outputs={"choices": []}),
        trace(outputs=[{"type": "text", "text": "part"}]),
    ]
    for name, info in CHECKS.items():
        run = info.build(_example_params(info))
        for item in odd:
            passed, rationale = run(item, None)
            assert isinstance(passed, bool) and isinstance(rationale, str), name


def _example_params(info):
    params = {n: _example_value(n) for n, f in info.params.model_fields.items() if f.is_required()}
    special = {"output_length": {"max_length": 100}, "no_exception": {"exception_type": "KeyError"}}
    return special.get(info.name, params)


def _example_value(param):
    return {"tool": "t", "max_calls": 1, "max_steps": 3, "max_ms": 10.0, "span_name": "x", "max_tokens": 5, "pattern": "a",
            "action": "refund*", "confirmation": "verify", "tools": ["cancel_*"], "marker": "###STOP###"}[param]


def test_every_parameter_is_typed_and_documented():
    for name, info in CHECKS.items():
        fields = info.params.model_fields
        documented = [n for n, f in fields.items() if len(f.description or "") >= 15]
        assert documented == list(fields), f"{name}: undocumented parameters {set(fields) - set(documented)}"
        assert all(f.annotation is not inspect.Parameter.empty for f in fields.values())
        assert len(info.summary) > 20, name


def test_parameters_are_validated_precisely():
    info = get_check("output_regex")
    with pytest.raises(ValidationError) as caught:
        info.validate_params({"pattern": "x", "mode": "sometimes"})
    assert "must_match" in str(caught.value) and "must_not_match" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        get_check("tool_succeeded").validate_params({"tol": "x"})
    text = str(caught.value)
    assert "tool" in text and "tol" in text and "Extra inputs are not permitted" in text
    with pytest.raises(KeyError, match="known checks: .*latency_budget"):
        get_check("latency_budgets")


def test_the_engine_imports_only_the_standard_library_and_re2():
    allowed = set(sys.stdlib_module_names) | {"re2"}
    tree = ast.parse(inspect.getsource(engine))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] in allowed for a in node.names)
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module.split(".")[0] in allowed, node.module


def test_presets_are_data_the_engine_accepts():
    for name, info in CHECKS.items():
        rule = info.rule(_example_params(info))
        assert json.loads(json.dumps(rule)) == rule, name  # plain JSON data
        compile_check(rule)


def test_exception_events_from_otlp_are_read_like_mlflow_ones():
    quoted = span("call_api", "TOOL", "ERROR", error=('"requests.exceptions.Timeout"', '"read timed out"'))
    passed, rationale = verdict("no_exception", trace(quoted), exception_type="Timeout")
    assert not passed and "Timeout: read timed out" in rationale
    described = span("call_api", "TOOL", "ERROR", description="KeyError: 'order_id'")
    assert not verdict("no_exception", trace(described), exception_type="KeyError")[0]

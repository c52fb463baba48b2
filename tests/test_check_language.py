"""The check language: what each part means on a trace, and what the engine refuses (with the place
named), including documents written to hang, crash or escape it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlflow_eval_agent.suite.checks import RuleError, compile_check, engine, selector_names
from mlflow_eval_agent.suite.checks.guide import EXAMPLES, language_guide

MS = 1_000_000
DOCS = Path(__file__).resolve().parents[1] / "docs" / "checks.md"


def span(name, span_type="TOOL", status="OK", *, sid, parent="root", start=0, end=None, inputs=None, outputs=None, attributes=None, error=None):
    events = [SimpleNamespace(name="exception", attributes={"exception.type": error[0], "exception.message": error[1]})] if error else []
    return SimpleNamespace(
        name=name, span_type=span_type, span_id=sid, parent_id=parent, start_time_ns=start * MS, end_time_ns=(end if end is not None else start + 5) * MS,
        inputs=inputs, outputs=outputs, attributes=attributes or {}, events=events,
        status=SimpleNamespace(status_code=status, description=f"{error[0]}: {error[1]}" if error else ""),
    )


def trace(*children, outputs="done", state="OK", duration_ms=100, tags=None, tokens=None):
    root = span("agent", "AGENT", "ERROR" if state == "ERROR" else "OK", sid="root", parent=None, start=0, end=duration_ms, outputs=outputs)
    info = SimpleNamespace(state=state, execution_time_ms=duration_ms, tags=tags or {}, trace_metadata={}, token_usage=tokens, trace_id="tr")
    return SimpleNamespace(info=info, data=SimpleNamespace(spans=[root, *children]))


def fails(fail_when, item):
    passed, rationale = compile_check({"version": 1, "fail_when": fail_when})(item, None)
    assert isinstance(rationale, str) and rationale
    return not passed


def lookup(n, args, status="OK", **kw):
    return span("lookup", sid=f"s{n}", start=10 * n, inputs=args, status=status, **kw)


LOOPING = trace(lookup(1, {"id": 7}), lookup(2, {"id": 7}), lookup(3, {"id": 7}))
VARIED = trace(lookup(1, {"id": 7}), lookup(2, {"id": 8}), lookup(3, {"id": 7}), lookup(4, {"id": 7}))
RECOVERED = trace(lookup(1, {"id": 7}, "ERROR", error=("KeyError", "user not found")), lookup(2, {"id": 8}))
UNRECOVERED = trace(lookup(1, {"id": 7}, "ERROR", error=("KeyError", "user not found")), span("answer", "CHAT_MODEL", sid="c", start=30))
REFUND_FIRST = trace(span("issue_refund", sid="a", start=1), span("verify_identity", sid="b", start=2))
VERIFIED_FIRST = trace(span("verify_identity", sid="b", start=1), span("issue_refund", sid="a", start=2))


# --- trajectory -------------------------------------------------------------------------------------
def test_repeated_identical_calls():
    three = {"op": "repeated", "spans": {"type": ["TOOL"]}, "times": 3}
    assert fails(three, LOOPING) and not fails(three, VARIED)
    assert fails({**three, "consecutive": False}, VARIED)  # three calls with id 7, not in a row
    assert not fails({**three, "times": 4}, LOOPING)


def test_error_recovery():
    unrecovered = {"op": "recovery", "spans": {"root": False}, "outcome": "unrecovered"}
    assert fails(unrecovered, UNRECOVERED) and not fails(unrecovered, RECOVERED)
    assert fails({**unrecovered, "outcome": "recovered"}, RECOVERED)
    by_text = {**unrecovered, "failed_when": [{"field": "outputs", "test": "regex", "value": "(?i)error"}]}
    soft = trace(lookup(1, {}, outputs="Error: user not found"), span("answer", "CHAT_MODEL", sid="c", start=30, outputs="sorry"))
    assert fails(by_text, soft) and not fails(unrecovered, soft)


def test_order_of_steps():
    before = {"op": "without_prior", "spans": {"name": "issue_refund"}, "prior": {"name": "verify_*"}}
    assert fails(before, REFUND_FIRST) and not fails(before, VERIFIED_FIRST) and fails(before, trace(span("issue_refund", sid="a")))
    assert not fails(before, trace())  # no action, nothing to confirm
    followed = {"op": "followed_by", "spans": {"name": "verify_identity"}, "then": {"name": "issue_refund"}}
    assert fails(followed, VERIFIED_FIRST) and not fails(followed, REFUND_FIRST)


def test_the_run_ending_right_after_an_error():
    at_end = {"op": "exists", "spans": {"root": False, "position": "last"}, "satisfy": [{"field": "status", "test": "equals", "value": "error"}]}
    assert fails(at_end, trace(lookup(1, {}), lookup(2, {}, "ERROR", error=("Timeout", "max time reached"))))
    assert not fails(at_end, RECOVERED) and not fails(at_end, trace())


# --- selectors and fields ---------------------------------------------------------------------------
NESTED = trace(
    span("plan", "CHAIN", sid="p", start=1),
    span("search", "RETRIEVER", sid="r", parent="p", start=2, outputs=[]),
    span("fetch_page", "TOOL", sid="f", parent="p", start=3, outputs={"status": 404, "body": "Error 404: not found"},
         attributes={"http.url": "https://x", "mlflow.chat.tokenUsage": json.dumps({"total_tokens": 90})}),
    span("llm", "CHAT_MODEL", sid="l", start=4, end=1004, outputs={"choices": [{"message": {"content": "I could not find it"}}]},
         attributes={"mlflow.chat.tokenUsage": {"input_tokens": 30, "output_tokens": 20, "total_tokens": 50}}),
)


@pytest.mark.parametrize(("selector", "names"), [
    ({"type": ["tool"]}, ["fetch_page"]),
    ({"name": "f*_p?ge"}, ["fetch_page"]),
    ({"name": ["plan", "llm"]}, ["plan", "llm"]),
    ({"root": True}, ["agent"]),
    ({"leaf": True, "root": False}, ["search", "fetch_page", "llm"]),
    ({"parent": "plan"}, ["search", "fetch_page"]),
    ({"ancestor": "agent", "type": ["RETRIEVER"]}, ["search"]),
    ({"root": False, "position": "first"}, ["plan"]),
    ({"root": False, "position": "last"}, ["llm"]),
    ({"where": [{"field": "attributes", "key": "http.url", "test": "exists"}]}, ["fetch_page"]),
])
def test_selectors(selector, names):
    select = engine._selector(selector, "spans", engine._Budget())
    assert [s.name for s in select(engine.TraceView(NESTED))] == names


@pytest.mark.parametrize(("test", "hit"), [
    ({"field": "outputs", "path": "status", "test": "equals", "value": 404}, True),
    ({"field": "outputs", "path": "status", "test": "equals", "value": "404"}, False),  # JSON equality, no coercion
    ({"field": "outputs", "path": "status", "test": "in", "value": [403, 404]}, True),
    ({"field": "outputs", "path": "body", "test": "regex", "value": "Error 40[34]"}, True),
    ({"field": "outputs", "test": "contains", "value": "NOT FOUND", "case_insensitive": True}, True),
    ({"field": "outputs", "test": "contains", "value": "status"}, True),  # an object has the key
    ({"field": "outputs", "path": "status", "test": "ge", "value": 400}, True),
    ({"field": "outputs", "path": "missing", "test": "empty"}, True),
    ({"field": "outputs", "path": "missing", "test": "exists"}, False),
    ({"field": "outputs", "path": "body", "test": "length", "min": 5, "max": 30}, True),
    ({"field": "outputs", "path": "body", "test": "length", "max": 3, "unit": "words"}, False),
    ({"field": "outputs", "test": "is_json"}, True),
    ({"field": "outputs", "test": "json_schema", "value": {"type": "object", "required": ["status"], "properties": {"status": {"type": "integer"}}}}, True),
    ({"field": "attributes", "key": "mlflow.chat.tokenUsage", "path": "total_tokens", "test": "equals", "value": 90}, True),  # JSON-encoded
    ({"field": "tokens.total", "test": "equals", "value": 90}, True),
    ({"field": "outputs", "path": "body", "test": "regex", "value": "404", "negate": True}, False),
])
def test_field_tests(test, hit):
    assert fails({"op": "exists", "spans": {"name": "fetch_page"}, "satisfy": [test]}, NESTED) is hit


def test_paths_reach_into_lists_and_any_item():
    first = {"field": "outputs", "path": "choices.0.message.content", "test": "regex", "value": "could not"}
    any_item = {"field": "outputs", "path": ["choices", "*", "message", "content"], "test": "contains", "value": "find"}
    text = {"field": "output_text", "test": "regex", "value": "^I could"}
    for test in (first, any_item, text):
        assert fails({"op": "exists", "spans": {"type": ["CHAT_MODEL"]}, "satisfy": [test]}, NESTED), test


def test_quantifiers_and_aggregates():
    tools = {"type": ["TOOL"]}
    assert fails({"op": "count", "spans": tools, "at_least": 3}, LOOPING) and not fails({"op": "count", "spans": tools, "at_least": 4}, LOOPING)
    assert fails({"op": "count", "spans": tools, "at_most": 0}, trace())
    ok = [{"field": "status", "test": "equals", "value": "OK"}]
    assert fails({"op": "each", "spans": tools, "satisfy": ok}, LOOPING) and not fails({"op": "each", "spans": tools, "satisfy": ok}, UNRECOVERED)
    tokens = {"op": "aggregate", "spans": {"root": False}, "field": "tokens.total", "fn": "sum", "test": "gt", "value": 100}
    assert fails(tokens, NESTED) and not fails({**tokens, "value": 140}, NESTED)
    slowest = {"op": "aggregate", "spans": {"type": ["CHAT_MODEL"]}, "field": "duration_ms", "fn": "max", "test": "ge", "value": 1000}
    assert fails(slowest, NESTED)


def test_trace_fields_and_composition():
    slow_or_error = {"op": "any_of", "conditions": [
        {"op": "trace", "where": [{"field": "duration_ms", "test": "gt", "value": 500}]},
        {"op": "trace", "where": [{"field": "state", "test": "equals", "value": "error"}]},
    ]}
    assert fails(slow_or_error, trace(duration_ms=900)) and fails(slow_or_error, trace(state="ERROR")) and not fails(slow_or_error, trace())
    tagged = {"op": "all_of", "conditions": [
        {"op": "trace", "where": [{"field": "tags", "key": "env", "test": "equals", "value": "prod"}]},
        {"op": "not", "condition": {"op": "exists", "spans": {"type": ["TOOL"]}}},
    ]}
    assert fails(tagged, trace(tags={"env": "prod"})) and not fails(tagged, trace(tags={"env": "dev"})) and not fails(tagged, LOOPING)
    assert fails({"op": "trace", "where": [{"field": "output_text", "test": "contains_pii", "value": ["email"]}]}, trace(outputs="mail ann@example.com"))


def test_rationales_say_what_was_found():
    _, why = compile_check({"fail_when": {"op": "repeated", "spans": {"type": ["TOOL"]}, "times": 3}})(LOOPING)
    assert 'lookup was called 3 times in a row with the same arguments {"id": 7}' in why
    _, why = compile_check({"fail_when": {"op": "recovery", "spans": {"root": False}, "outcome": "unrecovered"}})(UNRECOVERED)
    assert "lookup (TOOL): KeyError: user not found failed and never succeeded afterwards" in why
    passed, why = compile_check({"fail_when": {"op": "without_prior", "spans": {"name": "issue_refund"}, "prior": {"name": "verify_identity"}}})(VERIFIED_FIRST)
    assert passed and "came after" in why


def test_odd_traces_never_crash_the_engine():
    unfinished = span("x", None, None, sid=None, parent=None)
    unfinished.start_time_ns = unfinished.end_time_ns = None
    odd = [SimpleNamespace(info=None, data=None), SimpleNamespace(), trace(unfinished), trace(outputs={"choices": []})]
    for example in EXAMPLES:
        check = compile_check({"fail_when": example["fail_when"]})
        for item in odd:
            passed, why = check(item)
            assert isinstance(passed, bool) and isinstance(why, str)


# --- what the engine refuses ------------------------------------------------------------------------
@pytest.mark.parametrize(("document", "message"), [
    ({"fail_when": {"op": "exec", "code": "import os"}}, "fail_when.op: unknown condition 'exec'"),
    ({"fail_when": {"op": "exists", "spans": {"nme": "x"}}}, "fail_when.spans: unknown key(s) 'nme'"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "__class__", "test": "exists"}]}}, "satisfy[0].field: unknown field '__class__'"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "__eq__", "value": 1}]}}, "satisfy[0].test: unknown test '__eq__'"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "regex", "value": r"(a)\1"}]}}, "not a valid RE2 regular expression"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "regex", "value": "(?<=x)y"}]}}, "no backreferences or lookaround"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "regex", "value": "a" * 1001}]}}, "at most 1000 characters"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "in", "value": list(range(101))}]}}, "1 to 100 values"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "gt", "value": float("inf")}]}}, "finite number"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "equals", "value": {1, 2}}]}}, "expected JSON data"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "attributes", "test": "exists"}]}}, "field 'attributes' needs a key"),
    ({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "status", "test": "empty", "min": 1}]}}, "min do(es) not apply"),
    ({"fail_when": {"op": "repeated", "spans": {}, "times": 10**6}}, "times: expected a whole number from 2 to 100"),
    ({"fail_when": {"op": "count", "spans": {}}}, "count needs at_least, at_most or both"),
    ({"fail_when": {"op": "exists", "spans": {"status": ["BROKEN"]}}}, "status: one of OK, ERROR, UNSET"),
    ({"version": 2, "fail_when": {"op": "exists", "spans": {}}}, "this engine reads version 1"),
    ({"fail_when": {"op": "exists", "spans": {}}, "run": "os.system('id')"}, "check: unknown key(s) 'run'"),
    ("import os", "a check must be a JSON object"),
])
def test_invalid_documents_are_refused_with_the_place_named(document, message):
    with pytest.raises(RuleError) as caught:
        compile_check(document)
    assert message in str(caught.value)


def test_size_and_depth_are_bounded():
    deep = {"op": "exists", "spans": {}}
    for _ in range(engine.MAX_DEPTH):
        deep = {"op": "not", "condition": deep}
    with pytest.raises(RuleError, match="nested deeper than 8"):
        compile_check({"fail_when": deep})
    wide = {"op": "any_of", "conditions": [{"op": "all_of", "conditions": [{"op": "exists", "spans": {}}] * 16}] * 16}
    with pytest.raises(RuleError, match="more than 64"):
        compile_check({"fail_when": wide})


def test_catastrophic_patterns_run_in_linear_time():
    hostile = [r"(a+)+$", r"(a|aa)+$", r"(.*a){12}$", r"^(\w+\s?)*$", r"(x+x+)+y"]
    text = "a" * 200_000 + "!"
    item = trace(span("t", sid="t", outputs=text))
    started = time.monotonic()
    for pattern in hostile:
        assert not fails({"op": "exists", "spans": {"name": "t"}, "satisfy": [{"field": "outputs", "test": "regex", "value": pattern}]}, item)
    assert time.monotonic() - started < 5, "RE2 should match each pattern in milliseconds"
    assert re.compile(r"(a+)+$")  # the same pattern would take years on Python's backtracking engine at this length


def test_paths_are_data_lookups_never_attribute_access():
    probe = trace(span("t", sid="t", outputs={"x": 1}))
    for path in ("__class__", "__class__.__mro__", "x.__class__", "__globals__", "_MISSING"):
        assert fails({"op": "exists", "spans": {"name": "t"}, "satisfy": [{"field": "outputs", "path": path, "test": "exists", "negate": True}]}, probe)


def test_the_guide_names_every_part_the_engine_knows():
    guide = language_guide()
    assert set(guide["span_fields"]) == set(engine.SPAN_FIELDS) and set(guide["trace_fields"]) == set(engine.TRACE_FIELDS)
    named = " ".join(guide["conditions"])
    assert all(op in named for op in engine.CONDITIONS)
    assert all(any(t in key for key in guide["tests"]) for t in engine.TESTS)


def test_every_example_in_the_docs_compiles():
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 8
    for block in blocks:
        document = json.loads(block)
        compile_check(document if "fail_when" in document else {"fail_when": document})


def test_selector_names_are_collected_for_prerequisites():
    assert selector_names({"fail_when": {"op": "without_prior", "spans": {"name": "issue_refund"}, "prior": {"name": ["verify_*"], "parent": "flow"}}}) == {
        "issue_refund", "verify_*", "flow"}


def test_a_failing_verdict_points_at_its_evidence_spans():
    check = compile_check({"fail_when": {"op": "recovery", "spans": {"root": False}, "outcome": "unrecovered"}})
    passed, _, spans = check.verdict(UNRECOVERED)
    assert not passed and [s.span_id for s in spans] == ["s1"]
    passed, _, spans = check.verdict(RECOVERED)
    assert passed and spans == []
    slow = compile_check({"fail_when": {"op": "trace", "where": [{"field": "duration_ms", "test": "gt", "value": 10}]}})
    assert [s.span_id for s in slow.verdict(trace())[2]] == ["root"]  # a trace-level failure points at the root


def test_without_prior_since_looks_only_after_the_last_boundary():
    confirm = {"op": "without_prior", "spans": {"name": "cancel"}, "prior": {"name": "ask_user"}, "since": {"type": ["TOOL"], "name": "lookup"}}
    asked_before_lookup = trace(span("ask_user", "CHAT_MODEL", sid="a", start=1), span("lookup", sid="l", start=2), span("cancel", sid="c", start=3))
    asked_after_lookup = trace(span("lookup", sid="l", start=1), span("ask_user", "CHAT_MODEL", sid="a", start=2), span("cancel", sid="c", start=3))
    assert fails(confirm, asked_before_lookup) and not fails(confirm, asked_after_lookup)
    assert not fails({k: v for k, v in confirm.items() if k != "since"}, asked_before_lookup)  # without `since`: any earlier ask counts

"""SuiteSpec checks: prerequisites against the dataset's traces, parameters, and evidence, each
answered with a sentence the agent can act on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlflow_eval_agent.suite.dataset import select_stratified
from mlflow_eval_agent.suite.facts import TraceFacts
from mlflow_eval_agent.suite.spec import DatasetRecord, DatasetSpec, SuiteSpec, parse_scorer, scorer_problems

FACTS = TraceFacts(
    trace_count=4,
    span_types={"AGENT": 4, "TOOL": 3, "CHAT_MODEL": 4},
    span_names={"agent": 4, "get_order_status": 3, "chat": 4},
    tool_names={"get_order_status": 3},
)


def suite(facts: TraceFacts = FACTS) -> SuiteSpec:
    records = [DatasetRecord(trace_id=f"tr-{i}", stratum="normal") for i in range(4)]
    return SuiteSpec(experiment_id="1", dataset=DatasetSpec(name="d", experiment_id="1", records=records, facts=facts))


def problems(facts: TraceFacts = FACTS, **scorer) -> list[str]:
    data = {"name": "a_scorer", "why": "because the profile shows it", "evidence": {"must_fail": ["tr-0"], "must_pass": ["tr-1"]}, **scorer}
    return scorer_problems(parse_scorer(data), suite(facts))


def test_a_valid_check_has_no_problems():
    assert problems(kind="check", check="tool_succeeded", params={"tool": "get_order_status"}) == []


def test_builtin_prerequisites_are_checked_against_the_traces():
    [groundedness] = problems(kind="builtin", builtin="RetrievalGroundedness")
    assert groundedness == "RetrievalGroundedness needs RETRIEVER spans, and the dataset's traces have none"
    [correctness] = problems(kind="builtin", builtin="Correctness")
    assert "Correctness needs expected_response or expected_facts expectations" in correctness
    with_expectations = FACTS.model_copy(update={"expectation_names": {"expected_response": 2}})
    assert problems(with_expectations, kind="builtin", builtin="Correctness") == []
    [session] = problems(kind="builtin", builtin="UserFrustration")
    assert "session-level" in session


def test_builtin_parameters_are_checked_by_mlflow():
    [unknown] = problems(kind="builtin", builtin="ToolCallCorrectness", params={"exact": True})
    assert "has no parameter(s) exact" in unknown and "should_exact_match" in unknown
    [model] = problems(kind="builtin", builtin="Safety", params={"model": "openai:/gpt-4o"})
    assert "--judge-model" in model
    [bad] = problems(kind="builtin", builtin="ResponseLength", params={"min_length": 5, "max_length": 2})
    assert "rejected by MLflow" in bad
    [name] = problems(kind="builtin", builtin="Sfety")
    assert "unknown built-in scorer 'Sfety'" in name and "Safety" in name


def test_check_problems_name_the_fix():
    [tool] = problems(kind="check", check="tool_succeeded", params={"tool": "get_weather"})
    assert "no TOOL span named 'get_weather'" in tool and "get_order_status" in tool
    [param] = problems(kind="check", check="latency_budget", params={"max_ms": "fast"})
    assert "max_ms" in param and "signature: latency_budget(max_ms)" in param
    [regex] = problems(kind="check", check="output_regex", params={"pattern": "(unclosed"})
    assert "rejected its params" in regex
    [retrieval] = problems(kind="check", check="retrieval_non_empty")
    assert "no RETRIEVER spans" in retrieval


def test_evidence_must_come_from_the_dataset_and_code_checks_need_failures():
    found = problems(kind="check", check="no_error_spans", evidence={"must_fail": ["tr-9"], "must_pass": []})
    assert any("not in the dataset: tr-9" in p for p in found)
    [empty] = problems(kind="check", check="no_error_spans", evidence={"must_fail": [], "must_pass": ["tr-1"]})
    assert "must_fail is empty" in empty
    assert problems(kind="guidelines", guidelines=["Be polite and concise."], evidence={"must_pass": ["tr-1"]}) == []
    with pytest.raises(ValidationError, match="both must_fail and must_pass"):
        parse_scorer({"kind": "check", "check": "no_error_spans", "name": "abc", "why": "because of reasons",
                      "evidence": {"must_fail": ["tr-1"], "must_pass": ["tr-1"]}})


def test_judges_are_checked_statically_and_code_is_no_kind_at_all():
    [template] = problems(kind="make_judge", instructions="Is the answer polite and helpful to the customer?", value_type="bool")
    assert "{{ outputs }}" in template
    assert problems(kind="make_judge", instructions="Is {{ outputs }} polite and helpful to the customer?") == []
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        problems(kind="custom", code="import os\ndef f(outputs):\n    return True\n")


def test_check_documents_are_checked_against_the_engine_and_the_traces():
    loop = {"op": "repeated", "spans": {"type": ["TOOL"], "name": "get_order_*"}, "times": 3}
    assert problems(kind="check", fail_when=loop) == []
    [unknown] = problems(kind="check", fail_when={**loop, "spans": {"name": "get_weather"}})
    assert "no span in the dataset's traces is named 'get_weather'" in unknown and "get_order_status" in unknown
    [bad] = problems(kind="check", fail_when={"op": "exists", "spans": {}, "satisfy": [{"field": "__class__", "test": "exists"}]})
    assert "fail_when.satisfy[0].field: unknown field '__class__'" in bad
    with pytest.raises(ValidationError, match="either check .* or fail_when"):
        parse_scorer({"kind": "check", "name": "abc", "why": "because of reasons", "check": "no_error_spans", "fail_when": loop})
    with pytest.raises(ValidationError, match="params belong to a preset"):
        parse_scorer({"kind": "check", "name": "abc", "why": "because of reasons", "fail_when": loop, "params": {"x": 1}})


def test_a_spec_saved_with_custom_code_loads_with_it_dropped():
    old = {"experiment_id": "1", "scorers": [
        {"kind": "custom", "name": "answered", "why": "answers must have text", "code": "def f(outputs):\n    return True\n"},
        {"kind": "check", "name": "errors", "why": "errors happen a lot", "check": "no_error_spans"},
    ]}
    spec = SuiteSpec.model_validate(old)
    assert [s.name for s in spec.scorers] == ["errors"]
    assert spec.dropped[0].name == "answered" and "no longer supported" in spec.dropped[0].reason


def test_no_dataset_means_set_it_first():
    scorer = parse_scorer({"kind": "check", "check": "no_error_spans", "name": "abc", "why": "because of reasons"})
    [only] = scorer_problems(scorer, SuiteSpec(experiment_id="1"))
    assert "set_dataset" in only


def test_spec_round_trips_and_replaces_by_name():
    spec = suite()
    first = parse_scorer({"kind": "check", "check": "no_error_spans", "name": "errors", "why": "errors happen a lot"})
    second = first.model_copy(update={"why": "errors happen even more"})
    spec = spec.with_scorer(first).with_scorer(second)
    assert [s.why for s in spec.scorers] == ["errors happen even more"]
    again = SuiteSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    dropped = spec.without_scorer("errors", reason="misses its evidence")
    assert dropped.scorers == [] and dropped.dropped[0].reason == "misses its evidence"
    with pytest.raises(KeyError, match="no scorer named 'nope'"):
        spec.without_scorer("nope")


def test_stratified_selection_keeps_rare_strata():
    strata = {"error:rare": ["e1"], "hidden": ["h1", "h2"], "normal": [f"n{i}" for i in range(50)]}
    picks = select_stratified(strata, 5)
    assert [t for t, _ in picks] == ["e1", "h1", "n0", "h2", "n1"]
    assert select_stratified({"a": ["x", "y"], "b": ["x", "z"]}, 10) == [("x", "a"), ("z", "b"), ("y", "a")]

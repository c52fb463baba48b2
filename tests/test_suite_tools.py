"""The agent's suite tools: the suite is built only through validated parts, and a rejected spec
comes back with an error precise enough to correct it."""

from __future__ import annotations

import json

import pytest

from mlflow_eval_agent.settings import resolve_settings
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.tools import suite as suite_tools
from mlflow_eval_agent.tools._base import ToolContext, run_tool
from tests.suite_helpers import local_store, seed_experiment

TOOLS = {t.name: t for t in suite_tools.TOOLS}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tools")
    with local_store(folder) as uri:
        experiment_id, seeded = seed_experiment("tools", n=12)
        settings = resolve_settings({"experiment_id": experiment_id, "tracking_uri": uri, "volume_path": str(folder / "v")}, env={})
        ctx = ToolContext(settings=settings, store=open_session_store(settings.volume_path, "tools-test"))
        by_mode = {m: [s.trace_id for s in seeded if m in s.modes] for s in seeded for m in s.modes}
        yield {"ctx": ctx, "seeded": seeded, "by_mode": by_mode, "clean": [s.trace_id for s in seeded if not s.modes]}


def call(world, tool, **arguments):
    return run_tool(TOOLS[tool], world["ctx"], arguments)


def ok(world, tool, **arguments):
    text, is_error = call(world, tool, **arguments)
    assert not is_error, text
    return json.loads(text) if text.startswith("{") else text


def error(world, tool, **arguments):
    text, is_error = call(world, tool, **arguments)
    assert is_error, text
    return text


def test_roles():
    assert {t.name for t in suite_tools.TOOLS if "worker" in t.roles} == set(TOOLS)
    assert {t.name for t in suite_tools.TOOLS if "initializer" in t.roles} == {"list_checks", "show_suite"}
    assert {t.name for t in suite_tools.TOOLS if "interactive" in t.roles} == {"list_checks", "try_scorer", "show_suite"}


def test_building_a_suite_through_the_tools(world):
    assert "set_dataset" in error(world, "add_scorer", kind="check", name="errors", why="errors happen a lot", check="no_error_spans", must_fail=["x"])
    checks = ok(world, "list_checks")
    assert any(c["check"] == "tool_succeeded" and "tool" in c["params"] for c in checks["checks"])
    by_mode, clean = world["by_mode"], world["clean"]
    dataset = ok(world, "set_dataset", strata={"caught": by_mode["caught_tool_error"], "uncaught": by_mode["uncaught_tool_error"],
                                              "empty": by_mode["empty_answer"], "normal": clean}, size=12)
    assert dataset["traces"] == len(by_mode["caught_tool_error"]) + len(by_mode["uncaught_tool_error"]) + len(by_mode["empty_answer"]) + len(clean)
    assert "check_inventory" in dataset["facts"]["tools"] and "RETRIEVER" in dataset["facts"]["span_types"]
    from mlflow.genai.datasets import get_dataset

    registered = set(get_dataset(name="eval-agent-tools-test").to_df()["source_id"])
    assert registered and registered <= {*by_mode["caught_tool_error"], *by_mode["uncaught_tool_error"], *by_mode["empty_answer"], *clean}

    # A wrong tool name: the error lists the tools that exist.
    wrong_tool = error(world, "add_scorer", kind="check", name="inventory_ok", why="inventory lookups fail", check="tool_succeeded",
                       params={"tool": "inventory"}, must_fail=by_mode["caught_tool_error"], must_pass=clean[:3])
    assert "no TOOL span named 'inventory'" in wrong_tool and "check_inventory" in wrong_tool
    # Right tool, wrong evidence: the error names the trace and the scorer's rationale.
    wrong_evidence = error(world, "add_scorer", kind="check", name="inventory_ok", why="inventory lookups fail", check="tool_succeeded",
                           params={"tool": "check_inventory"}, must_fail=[*by_mode["caught_tool_error"], clean[0]], must_pass=clean[1:3])
    assert f"it passed must_fail trace {clean[0]}" in wrong_evidence and "disagrees with its evidence" in wrong_evidence
    # Corrected: added.
    added = ok(world, "add_scorer", kind="check", name="inventory_ok", why="inventory lookups fail", check="tool_succeeded",
               params={"tool": "check_inventory"}, must_fail=by_mode["caught_tool_error"], must_pass=clean[:3], threshold=0.5)
    assert added["added"] == "inventory_ok" and added["evidence"] == "agrees on all evidence traces"

    stray = error(world, "add_scorer", kind="check", name="polite", why="answers should be polite", check="no_error_spans", guidelines=["Be polite."])
    assert "kind 'check' does not use guidelines" in stray
    missing = error(world, "add_scorer", kind="guidelines", name="polite", why="answers should be polite", must_pass=clean[:2])
    assert "guidelines" in missing and "Kind 'guidelines' takes guidelines" in missing
    correctness = error(world, "add_scorer", kind="builtin", name="correct", why="answers must be right", builtin="Correctness", must_pass=clean[:2])
    assert "Correctness needs expected_response or expected_facts expectations" in correctness
    ok(world, "add_scorer", kind="guidelines", name="polite", why="answers should be polite", guidelines=["The answer is polite."], must_pass=clean[:2])

    code = error(world, "add_scorer", kind="custom", name="answered", why="answers must have text",
                 code="def answered(outputs):\n    return outputs['answer'] != ''\n", must_fail=by_mode["empty_answer"], must_pass=clean[:2])
    assert "Scorers cannot be code" in code and "fail_when" in code
    wrong_path = {"op": "trace", "where": [{"field": "outputs", "path": "answer", "test": "empty"}]}
    broken = error(world, "add_scorer", kind="check", name="answered", why="answers must have text", fail_when=wrong_path,
                   must_fail=by_mode["empty_answer"], must_pass=clean[:2])
    assert f"it failed must_pass trace {clean[0]}" in broken and "outputs.answer is empty (absent)" in broken
    ok(world, "add_scorer", kind="check", name="answered", why="answers must have text",
       fail_when={"op": "trace", "where": [{"field": "outputs", "path": "content", "test": "empty"}]},
       must_fail=by_mode["empty_answer"], must_pass=clean[:2])

    tried = ok(world, "try_scorer", kind="check", name="tool_calls", why="no loops of tool calls", check="tool_call_budget",
               params={"max_calls": 0}, trace_ids=clean[:2])
    assert {r["passed"] for r in tried["results"].values()} <= {True, False} and len(tried["results"]) == 2

    assert "no scorer named 'nope'" in error(world, "remove_scorer", name="nope", reason="not needed")
    shown = ok(world, "show_suite")
    assert [s["name"] for s in shown["scorers"]] == ["inventory_ok", "polite", "answered"]

    validated = ok(world, "validate_suite", timeout_s=300)
    assert validated["next"] == "Every measured scorer meets its evidence.", validated
    assert validated["per_scorer"]["polite"].startswith("SKIPPED")
    assert "meets its evidence" in validated["per_scorer"]["inventory_ok"]
    assert world["ctx"].store.exists("evaluation/run_eval.py")


def test_a_new_dataset_must_keep_the_evidence(world):
    if not world["ctx"].store.exists("state/suite_spec.json"):
        pytest.skip("needs the suite built by the previous test")
    message = error(world, "set_dataset", strata={"normal": world["clean"][3:]})
    assert "evidence traces would not be in the new dataset" in message and "inventory_ok" in message

"""Trajectory facts: the profile's plain-Python reading of each trace, the check presets that say
the same in the check language (they must agree), and the no-model planner proposing those checks
from the counts, with no latency budget on imported transcripts whose timing is synthetic."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlflow_eval_agent.suite.checks import get_check
from mlflow_eval_agent.traces.failure_text import ERROR_TEXT, error_text_pattern, is_consequential
from mlflow_eval_agent.traces.trajectory import count, trajectory_facts

MS = 1_000_000


def span(name, span_type="TOOL", status="OK", *, at, inputs=None, outputs=None, parent="root"):
    return SimpleNamespace(
        name=name, span_type=span_type, span_id=f"{name}-{at}", parent_id=parent, start_time_ns=at * MS, end_time_ns=(at + 1) * MS,
        inputs=inputs, outputs=outputs, attributes={}, events=[], status=SimpleNamespace(status_code=status, description=""),
    )


def trace(tid, *children, meta=None):
    root = span("agent", "AGENT", at=0, parent=None, outputs="done")
    return SimpleNamespace(info=SimpleNamespace(trace_id=tid, state="OK", execution_time_ms=10, trace_metadata=meta or {}, tags={}, token_usage=None),
                           data=SimpleNamespace(spans=[root, *children]))


def user(at, text="yes, go ahead"):
    return span("assistant", "CHAT_MODEL", at=at, inputs={"messages": [{"role": "user", "content": text}]}, outputs={"role": "assistant", "content": "ok"})


def model(at, outputs="Let me check.", last_role="tool"):
    return span("assistant", "CHAT_MODEL", at=at, inputs={"messages": [{"role": last_role, "content": "..."}]}, outputs={"role": "assistant", "content": outputs})


TRACES = {
    "unrecovered": trace("unrecovered", user(1), span("lookup", status="ERROR", at=2), model(3, "Sorry, I could not find it.")),
    "recovered": trace("recovered", user(1), span("lookup", status="ERROR", at=2), span("lookup", at=3), model(4)),
    "at_end": trace("at_end", user(1), span("lookup", at=2), span("run_code", status="ERROR", at=3)),
    "loop": trace("loop", *[span("search", at=i, inputs={"q": "x"}, outputs="nothing") for i in (1, 2, 3)]),
    "error_text": trace("error_text", span("fetch", at=1, outputs="HTTP Error 404: Not Found"), model(2)),
    "made_up": trace("made_up", span("search", at=1, outputs="results"), model(2, "Since I cannot browse, let's assume the price is 30 EUR.")),
    "limit": trace("limit", span("search", at=1, outputs="results"), model(2, "Stopping: maximum turns reached.")),
    "unconfirmed": trace("unconfirmed", user(1, "cancel my order"), span("get_order", at=2), model(3), span("cancel_order", at=4), user(5, "thanks")),
    "confirmed": trace("confirmed", user(1, "cancel my order"), span("get_order", at=2), model(3), user(4, "yes"), span("cancel_order", at=5)),
    "single_request": trace("single_request", user(1), span("get_order", at=2), model(3), span("cancel_order", at=4)),
    "no_tool": trace("no_tool", user(1), model(2, "The answer is 42.", last_role="user")),
    "clean": trace("clean", user(1), span("lookup", at=2, outputs={"found": True}), model(3, "Here it is.")),
}
FACT_OF = {
    "unrecovered": "unrecovered_error", "recovered": "recovered_error", "at_end": "error_at_end", "loop": "repeated_calls",
    "error_text": "error_text", "made_up": "made_up_data", "limit": "limit_reached", "unconfirmed": "unconfirmed_action", "no_tool": "no_tool",
}


def test_each_trace_shows_its_fact_and_no_other_failure():
    failures = {"unrecovered_error", "error_at_end", "repeated_calls", "error_text", "made_up_data", "limit_reached", "unconfirmed_action", "no_tool"}
    for name, item in TRACES.items():
        found = trajectory_facts(item).found
        if name in FACT_OF:
            assert FACT_OF[name] in found, (name, found)
        expected = {FACT_OF[name]} & failures if name in FACT_OF else {"unconfirmed_action"} if name == "single_request" else set()
        if name == "at_end":
            expected |= {"unrecovered_error"}
        assert found & failures == expected, (name, found)
    assert trajectory_facts(TRACES["error_text"]).error_kinds == {"http_error", "not_found"}
    assert "user_turns" not in trajectory_facts(TRACES["single_request"]).found  # one user turn: not a conversation


@pytest.mark.parametrize(("preset", "params", "fact"), [
    ("no_unrecovered_errors", {}, "unrecovered_error"),
    ("no_error_at_end", {}, "error_at_end"),
    ("no_repeated_calls", {"times": 3}, "repeated_calls"),
    ("no_error_text", {"pattern": error_text_pattern()}, "error_text"),
    ("no_made_up_data", {}, "made_up_data"),
    ("no_limit_reached", {}, "limit_reached"),
    ("actions_confirmed", {"tools": ["cancel_order"]}, "unconfirmed_action"),
    ("tool_was_used", {}, "no_tool"),
    ("answered_at_end", {}, "unanswered_end"),
])
def test_the_check_and_the_profile_reading_agree(preset, params, fact):
    """Two implementations of each fact (the engine on the preset's document, plain Python in the
    profile): the planner's evidence relies on them agreeing."""
    check = get_check(preset).build(params)
    for name, item in TRACES.items():
        failed = not check(item, None)[0]
        assert failed == (fact in trajectory_facts(item).found), (preset, name, check(item, None)[1])


def test_patterns_run_on_both_engines():
    from mlflow_eval_agent.suite.checks import compile_check

    for kind, pattern in ERROR_TEXT.items():
        compile_check({"fail_when": {"op": "exists", "spans": {}, "satisfy": [{"field": "outputs", "test": "regex", "value": pattern}]}})
    assert is_consequential("cancel_pending_order") and is_consequential("sendEmail") and not is_consequential("get_order_details")
    assert not is_consequential("settings_lookup") and not is_consequential("address_book")


def test_counts_keep_examples_and_tools():
    counts = count(TRACES.values())
    assert counts.scanned == len(TRACES)
    assert counts.traces["unconfirmed_action"] == ["unconfirmed", "single_request"] and counts.unconfirmed == {"cancel_order": 2}
    assert counts.actions["cancel_order"] == 3 and counts.repeated == {"search": 1}


def test_a_completion_marker_is_found_and_runs_without_it_are_unfinished():
    """A framework's TERMINATE ends most runs; a run cut off at its turn limit (no message about it)
    ends on a tool result or mid-sentence. The profile finds the marker from the counts, the preset
    fails exactly the runs the profile calls unfinished."""
    from mlflow_eval_agent.suite.offline import _trajectory_checks
    from mlflow_eval_agent.traces.profile_model import NamedCount  # noqa: F401  (the model the planner reads)
    from mlflow_eval_agent.traces.trajectory import as_model, completion_marker, marker_token

    assert [marker_token(t) for t in ("TERMINATE", "All checked. TERMINATE.", "Thanks! ###STOP###", "[DONE]")] == ["TERMINATE", "TERMINATE", "###STOP###", "[DONE]"]
    assert [marker_token(t) for t in ("Thank you.", "OK", "Next I will TERMINATE it", "1234", "")] == [None] * 5
    runs = {
        **{f"done{i}": trace(f"done{i}", user(1), span("search", at=2, outputs="r"), model(3, "The answer is 4. TERMINATE")) for i in range(4)},
        "cut_tool": trace("cut_tool", user(1), span("search", at=2, outputs="r")),
        "cut_talk": trace("cut_talk", user(1), span("search", at=2, outputs="r"), model(3, "Next, I will verify the second source.")),
    }
    counts = count(runs.values())
    marker, unfinished = counts.unfinished()
    assert marker == "TERMINATE" and set(unfinished) == {"cut_tool", "cut_talk"}
    assert counts.traces["unanswered_end"] == ["cut_tool"]
    check = get_check("finished_with_marker").build({"marker": marker})
    assert {name for name, item in runs.items() if not check(item, None)[0]} == set(unfinished)
    assert completion_marker(counts.final_tokens, 100) is None, "4 of 100 runs is a phrase, not a convention"
    traj = as_model(counts)
    assert traj.completion_marker == "TERMINATE" and traj.unfinished.count == 2 and traj.unanswered_end.count == 1
    profile = SimpleNamespace(trajectory=traj, tools=[], trace_count=len(runs))
    proposed = {p.scorer.check: p.scorer for p in _trajectory_checks(profile, set())}
    assert proposed["finished_with_marker"].params == {"marker": "TERMINATE"} and "answered_at_end" in proposed
    # Most runs ending on a tool result is the application's shape, not a failure: no check.
    tool_enders = count([trace(f"t{i}", user(1), span("send_report", at=2, outputs="sent")) for i in range(4)])
    profile = SimpleNamespace(trajectory=as_model(tool_enders), tools=[], trace_count=4)
    assert "answered_at_end" not in {p.scorer.check for p in _trajectory_checks(profile, set())}


# --- the planner on imported transcripts ----------------------------------------------------------
def _conversation(i: int, *, confirm: bool, fail_lookup: bool) -> dict:
    lookup_result = "Error: order not found" if fail_lookup else json.dumps({"order": f"#{i}", "status": "pending"})
    messages = [
        {"role": "system", "content": "You are a shop assistant. Confirm with the user before cancelling."},
        {"role": "user", "content": f"Please cancel order #{i}."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{i}a", "type": "function", "function": {"name": "get_order", "arguments": json.dumps({"id": i})}}]},
        {"role": "tool", "tool_call_id": f"c{i}a", "name": "get_order", "content": lookup_result},
    ]
    if confirm:
        messages += [{"role": "assistant", "content": f"Order #{i} is pending. Cancel it?"}, {"role": "user", "content": "Yes."}]
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": f"c{i}b", "type": "function", "function": {"name": "cancel_order", "arguments": json.dumps({"id": i})}}]},
        {"role": "tool", "tool_call_id": f"c{i}b", "name": "cancel_order", "content": "cancelled"},
        {"role": "assistant", "content": f"Order #{i} is cancelled."},
    ]
    return {"id": f"conv-{i}", "messages": messages}


def test_the_planner_proposes_trajectory_checks_from_the_counts(tmp_path: Path, tracking_uri: str):
    import mlflow

    from mlflow_eval_agent.importers import import_path
    from mlflow_eval_agent.plan import TaskStatus
    from mlflow_eval_agent.settings import resolve_settings
    from mlflow_eval_agent.store import open_session_store
    from mlflow_eval_agent.suite import offline
    from mlflow_eval_agent.suite.spec import SPEC_FILE, SuiteSpec

    lines = [_conversation(i, confirm=i % 3 != 0, fail_lookup=i % 5 == 0) for i in range(12)]
    source = tmp_path / "chats.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    experiment_id = mlflow.create_experiment("transcripts")
    import_path("openai-chat", source, experiment_id)
    settings = resolve_settings({"experiment_id": experiment_id, "tracking_uri": tracking_uri, "volume_path": str(tmp_path / "v"), "offline": True}, env={})
    store = open_session_store(settings.volume_path, "traj")
    plan = offline.build_offline(settings, store)
    assert all(t.status == TaskStatus.COMPLETED for t in plan.tasks), [(t.id, t.failure_reason) for t in plan.tasks]
    spec = store.read_model(SPEC_FILE, SuiteSpec)
    checks = {s.check: s for s in spec.scorers if s.kind == "check"}
    assert "latency_budget" not in checks, "imported transcripts have synthetic timing"
    confirmed = checks["actions_confirmed"]
    assert confirmed.params == {"tools": ["cancel_order"]}
    unconfirmed = {f"conv-{i}" for i in range(12) if i % 3 == 0}
    from mlflow_eval_agent.importers.model import META_SOURCE_ID

    source_of = {t.info.trace_id: t.info.trace_metadata[META_SOURCE_ID] for t in mlflow.search_traces(locations=[experiment_id], return_type="list")}
    assert {source_of[t] for t in confirmed.evidence.must_fail} <= unconfirmed and confirmed.evidence.must_fail
    assert not {source_of[t] for t in confirmed.evidence.must_pass} & unconfirmed
    profile = store.read_json("state/profile.json")
    assert profile["trajectory"]["scanned"] == 12 and profile["trajectory"]["synthetic_timing"] == 12
    from mlflow_eval_agent.traces import trajectory
    from mlflow_eval_agent.traces.source import mlflow_client

    client = mlflow_client(tracking_uri)  # the store's tables read directly, and through the API: the same counts
    fast, api = (trajectory.as_model(trajectory.scan(client, experiment_id, None, 100, fast=f)) for f in (True, False))
    assert fast == api and fast.unconfirmed_actions.count == 4
    assert profile["trajectory"]["unconfirmed_actions"]["count"] == len(unconfirmed)


def test_both_readings_take_the_same_words_from_an_output():
    """The engine (copied into suites, so self-contained) and the profile each have their answer-text
    reading; they must not drift apart."""
    from mlflow_eval_agent.suite.checks.engine import output_text
    from mlflow_eval_agent.traces.trajectory import answer_text

    samples = ["plain", {"role": "assistant", "content": "hi"}, {"choices": [{"message": {"content": "c"}}]}, {"choices": [{"text": "t"}]},
               {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, [{"type": "text", "text": "x"}, {"text": "y"}],
               [{"role": "assistant", "content": "last"}], {"answer": 42}, {"b": [1, 2], "a": 1}, 7, None]
    for value in samples:
        ours = output_text(value)
        assert answer_text(value) == ("" if ours is None else ours), value

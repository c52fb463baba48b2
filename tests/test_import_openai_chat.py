"""openai-chat JSONL → traces: faithful spans, malformed lines reported, idempotent, streamed."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import mlflow
import pytest

from mlflow_eval_agent.cli import main
from mlflow_eval_agent.importers import Conversation, Malformed, import_path, read_source, resolve_experiment
from mlflow_eval_agent.importers.model import ATTR_CALL_STEP, ATTR_TOOL_CALL_ID, META_CONTENT_HASH, META_TIMING
from tests.test_import_support import DATA, assert_sane_timing, children, human_assessments, root_of, trace_by_source, traces_of

CHAT = DATA / "chat.jsonl"


def test_parse_reports_malformed_lines_with_their_numbers() -> None:
    records = list(read_source("openai-chat", CHAT))
    convs = [r for r in records if isinstance(r, Conversation)]
    bad = {r.where: r.reason for r in records if isinstance(r, Malformed)}
    assert [c.source_id for c in convs] == ["weather-1", "line 2", "42"]
    assert set(bad) == {"chat.jsonl line 3", "chat.jsonl line 5", "chat.jsonl line 6", "chat.jsonl line 7"}
    assert "not valid JSON" in bad["chat.jsonl line 3"]
    assert "role" in bad["chat.jsonl line 5"]
    assert "no assistant message" in bad["chat.jsonl line 6"]
    booking = convs[1]
    assert booking.request == "Book a table for two at 7pm tonight."
    assert booking.response == "Booked: Chez Nous at 8pm for two."
    assert [t.role for t in booking.turns] == ["user", "assistant", "tool", "tool", "assistant", "user", "assistant", "tool", "assistant"]
    assert booking.turns[5].content == "Yes, 8pm is fine."  # content parts joined
    legacy = convs[2]
    assert legacy.turns[0].role == "system" and legacy.turns[0].content == "Answer briefly."
    assert legacy.turns[2].tool_calls[0].name == "calculator"


def test_conversion_is_faithful(tracking_uri: str) -> None:
    experiment_id, created = resolve_experiment("chat logs")
    assert created
    report = import_path("openai-chat", CHAT, experiment_id)
    assert (report.imported, report.skipped, len(report.malformed), report.lost) == (3, 0, 4, [])

    trace = trace_by_source(experiment_id, "line 2")
    assert trace.info.state == "OK"  # the agent recovered from the tool error: root stays OK
    assert trace.info.trace_metadata[META_TIMING] == "synthetic"
    assert len(trace.info.trace_metadata[META_CONTENT_HASH]) == 64
    root = root_of(trace)
    assert root.span_type == "AGENT"
    assert root.inputs == {"request": "Book a table for two at 7pm tonight."}
    assert root.outputs == "Booked: Chez Nous at 8pm for two."
    spans = children(trace)
    assert [(s.span_type, s.name) for s in spans] == [
        ("CHAT_MODEL", "assistant"),
        ("TOOL", "find_restaurant"),
        ("TOOL", "check_calendar"),
        ("CHAT_MODEL", "assistant"),
        ("CHAT_MODEL", "assistant"),
        ("TOOL", "find_restaurant"),
        ("CHAT_MODEL", "assistant"),
    ]
    first_chat, find, calendar, sorry, _, retry, final = spans
    # Results are matched by call id even though they came back in the other order.
    assert find.inputs == {"time": "19:00", "party": 2}
    assert find.outputs == "Error: no restaurant has a table for 2 at 19:00"
    assert find.status.status_code == "ERROR"
    assert find.status.description == "Error: no restaurant has a table for 2 at 19:00"
    assert find.attributes[ATTR_TOOL_CALL_ID] == "call_r" and find.attributes[ATTR_CALL_STEP] == 1
    assert calendar.outputs == "free all evening" and calendar.status.status_code == "OK"
    assert retry.inputs == {"arguments": "not json at all"}  # unparseable arguments keep their raw text
    assert first_chat.outputs["content"] == "Let me check what is free."
    assert [c["function"]["name"] for c in first_chat.outputs["tool_calls"]] == ["find_restaurant", "check_calendar"]
    # Each model turn's inputs are the messages new to it: the tool results before "sorry".
    assert [m["role"] for m in sorry.inputs["messages"]] == ["tool", "tool"]
    assert final.outputs["content"] == "Booked: Chez Nous at 8pm for two."
    assert_sane_timing(trace)
    assert human_assessments(trace) == []

    weather = trace_by_source(experiment_id, "weather-1")
    first = children(weather)[0]
    assert first.inputs["messages"][0] == {"role": "system", "content": "You are a weather assistant. Use get_weather for current conditions."}
    # MLflow stores a JSON-text result verbatim and hands it back parsed.
    assert children(weather)[1].outputs == {"temp_c": 18, "sky": "clear"}

    legacy = trace_by_source(experiment_id, "42")
    tool = [s for s in children(legacy) if s.span_type == "TOOL"]
    assert [(t.name, t.inputs, t.outputs) for t in tool] == [("calculator", {"expression": "6*7"}, "42")]


def test_reimport_adds_nothing(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("twice")
    first = import_path("openai-chat", CHAT, experiment_id)
    second = import_path("openai-chat", CHAT, experiment_id)
    assert (first.imported, second.imported, second.skipped) == (3, 0, 3)
    assert len(traces_of(experiment_id)) == 3


def test_repeated_conversation_in_one_file_is_written_once(tracking_uri: str, tmp_path: Path) -> None:
    line = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    path = tmp_path / "dup.jsonl"
    path.write_text(f"{line}\n{line}\n")
    experiment_id, _ = resolve_experiment("dups")
    report = import_path("openai-chat", path, experiment_id)
    assert (report.imported, report.skipped) == (1, 1)
    # A line inserted before known conversations: only it is new (line numbers are not identity).
    other = json.dumps([{"role": "user", "content": "bye"}, {"role": "assistant", "content": "goodbye"}])
    path.write_text(f"{other}\n{line}\n")
    report = import_path("openai-chat", path, experiment_id)
    assert (report.imported, report.skipped) == (1, 1)
    assert len(traces_of(experiment_id)) == 2


def test_cli_import_prints_counts_and_fails_on_malformed(tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import", "--format", "openai-chat", str(CHAT), "-e", "cli logs"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "Created experiment 'cli logs'" in out
    assert "Imported 3 conversation(s); skipped 0 already imported; 4 malformed." in out
    assert "malformed chat.jsonl line 3: not valid JSON" in out
    code = main(["import", "-f", "openai-chat", str(CHAT), "-e", "cli logs"])
    assert "Imported 0 conversation(s); skipped 3 already imported" in capsys.readouterr().out
    experiment = mlflow.get_experiment_by_name("cli logs")
    assert len(traces_of(experiment.experiment_id)) == 3


def test_cli_clean_file_exits_zero_and_usage_errors_exit_two(tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]) + "\n")
    assert main(["import", "-f", "openai-chat", str(good), "-e", "clean"]) == 0
    assert main(["import", "-f", "yaml-chat", str(good), "-e", "clean"]) == 2
    assert "Unknown format 'yaml-chat'" in capsys.readouterr().err
    assert main(["import", "-f", "openai-chat", str(tmp_path / "missing.jsonl"), "-e", "clean"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["import", "-f", "openai-chat", str(good), "-e", "987654"]) == 2
    assert "No experiment has id or name 987654" in capsys.readouterr().err
    assert main(["import", "-f", "openai-chat", str(good)]) == 2
    assert "-e <experiment name or id>" in capsys.readouterr().err


def test_jsonl_is_read_line_by_line(tmp_path: Path) -> None:
    """A large file is never held in memory: peak allocation stays far below the file size."""
    line = json.dumps([{"role": "user", "content": "q" * 3000}, {"role": "assistant", "content": "a" * 3000}])
    path = tmp_path / "big.jsonl"
    with path.open("w") as out:
        for _ in range(1500):
            out.write(line + "\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for r in read_source("openai-chat", path) if isinstance(r, Conversation))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 1500
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"

"""Who&When runs → traces: one span per history turn named by its speaker; the decisive mistake on its turn."""

from __future__ import annotations

import json

from mlflow_eval_agent.importers import Conversation, Malformed, import_path, import_records, read_source, resolve_experiment
from mlflow_eval_agent.importers.model import ATTR_STEP
from tests.test_import_support import (
    DATA,
    WHO_AND_WHEN,
    assert_sane_timing,
    children,
    human_assessments,
    needs_corpora,
    root_of,
    trace_by_source,
)

FOLDER = DATA / "who_and_when"


def test_parse_folder_reports_bad_files() -> None:
    records = list(read_source("who-and-when", FOLDER))
    assert [r.source_id for r in records if isinstance(r, Conversation)] == ["q-sum", "q-museum"]
    assert [(r.where, r.reason.split(" (")[0]) for r in records if isinstance(r, Malformed)] == [("3.json", "not valid JSON")]
    museum = records[1]
    # A file without names (hand-written split style): roles are the speakers, "human" is the user.
    assert [(t.role, t.name) for t in museum.turns] == [
        ("user", None),
        ("assistant", "Orchestrator (thought)"),
        ("assistant", "WebSurfer"),
        ("assistant", "Orchestrator (final answer)"),
    ]


def test_one_span_per_turn_and_executor_errors(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("w&w")
    report = import_path("who-and-when", FOLDER, experiment_id)
    assert (report.imported, [m.where for m in report.malformed]) == (2, ["3.json"])
    trace = trace_by_source(experiment_id, "q-sum")
    spans = children(trace)
    assert [(s.span_type, s.name, s.attributes[ATTR_STEP]) for s in spans] == [
        ("CHAT_MODEL", "Planner_Expert", 0),
        ("TOOL", "Computer_terminal", 1),
        ("CHAT_MODEL", "Math_Expert", 2),
        ("TOOL", "Computer_terminal", 3),
        ("CHAT_MODEL", "Math_Expert", 4),
        ("CHAT_MODEL", "Math_Expert", 5),
    ]
    failed_run, ok_run = spans[1], spans[3]
    assert failed_run.inputs == {"input": "print(x + 1 + 2 + 3)"}  # the code the executor was given
    assert (failed_run.status.status_code, failed_run.status.description) == ("ERROR", "exitcode: 1 (execution failed)")
    assert ok_run.status.status_code == "OK"
    assert spans[0].inputs["messages"][0] == {"role": "system", "content": "You plan the solution."}
    assert spans[2].inputs["messages"][0] == {"role": "system", "content": "You check arithmetic."}
    root = root_of(trace)
    assert root.inputs == {"request": "What is 1 + 2 + 3?"}
    assert root.outputs == "The answer is 7."  # the final TERMINATE is not the answer
    assert human_assessments(trace) == []
    assert_sane_timing(trace)


def test_decisive_mistake_on_its_turn(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("w&w labelled")
    import_path("who-and-when", FOLDER, experiment_id, with_labels=True)
    trace = trace_by_source(experiment_id, "q-sum")
    span_of = {s.span_id: s for s in children(trace)}
    mistakes = [a for a in human_assessments(trace) if a.name == "human_failure"]
    assert len(mistakes) == 1
    mistake = mistakes[0]
    assert (span_of[mistake.span_id].name, span_of[mistake.span_id].attributes[ATTR_STEP]) == ("Math_Expert", 2)
    assert mistake.rationale == "Typed 4 instead of 3 when fixing the code."
    assert mistake.metadata["agent"] == "Math_Expert"
    outcome = [a for a in human_assessments(trace) if a.name == "human_outcome"]
    assert [a.value for a in outcome] == [False]
    assert [a.value for a in trace.info.assessments if a.name == "expected_response"] == ["6"]
    museum = trace_by_source(experiment_id, "q-museum")
    (label,) = [a for a in human_assessments(museum) if a.name == "human_failure"]
    assert label.value == "Factual_Error"
    assert {s.span_id: s.name for s in children(museum)}[label.span_id] == "WebSurfer"


@needs_corpora
def test_corpus_parses_completely_with_labels_in_range() -> None:
    convs = [r for r in read_source("who-and-when", WHO_AND_WHEN, with_labels=True) if isinstance(r, Conversation)]
    assert len(convs) == 126
    for conv in convs:
        raw = json.loads((WHO_AND_WHEN / conv.source_file).read_text())
        assert len(conv.turns) == len(raw["history"])
        assert [t.name for t in conv.turns] == [h["name"] for h in raw["history"]]
        (failure,) = conv.labels.failures
        assert failure.step == int(raw["mistake_step"])


@needs_corpora
def test_corpus_slice_imports(tracking_uri: str) -> None:
    records = [r for r in read_source("who-and-when", WHO_AND_WHEN, with_labels=True) if isinstance(r, Conversation)][:5]
    experiment_id, _ = resolve_experiment("w&w slice")
    report = import_records(records, "who-and-when", experiment_id, with_labels=True)
    assert (report.imported, report.lost) == (5, [])
    for conv in records:
        trace = trace_by_source(experiment_id, conv.source_id)
        assert len(children(trace)) == len(conv.turns)
        (mistake,) = [a for a in human_assessments(trace) if a.name == "human_failure"]
        assert {s.span_id: s.attributes[ATTR_STEP] for s in children(trace)}[mistake.span_id] == conv.labels.failures[0].step

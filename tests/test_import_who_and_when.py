"""Who&When runs → traces: one span per history turn named by its speaker; the decisive mistake on its turn."""

from __future__ import annotations

import json

from pathlib import Path

from mlflow_eval_agent.importers import Conversation, Malformed, Notice, import_path, import_records, read_source, resolve_experiment
from mlflow_eval_agent.importers.model import ATTR_ADDRESSEE, ATTR_STEP
from tests.test_import_support import (
    DATA,
    WHO_AND_WHEN,
    WHO_AND_WHEN_HAND,
    assert_sane_timing,
    children,
    human_assessments,
    needs_corpora,
    needs_hand_crafted,
    root_of,
    trace_by_source,
)

FOLDER = DATA / "who_and_when"


def test_parse_folder_reports_bad_files() -> None:
    records = list(read_source("who-and-when", FOLDER))
    assert [r.source_id for r in records if isinstance(r, Conversation)] == ["q-sum", "q-museum"]
    assert [(r.where, r.reason.split(" (")[0]) for r in records if isinstance(r, Malformed)] == [("3.json", "not valid JSON")]
    museum = records[1]
    # A file without names (the hand-crafted split: Magentic-One logs): roles are the speakers, read
    # as the magentic-one importer reads them; "human" is the user.
    assert [(t.role, t.name, t.source_role) for t in museum.turns] == [
        ("user", None, None),
        ("assistant", "Orchestrator", "Orchestrator (thought)"),
        ("assistant", "WebSurfer", None),
        ("assistant", "Orchestrator", "Orchestrator (final answer)"),
    ]
    assert museum.response == "Paris"  # the FINAL ANSWER line


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


def _variant(tmp_path: Path, name: str, **changes) -> Path:
    """The museum run (a Magentic-One log in Who&When's shape) with some fields changed or removed."""
    run = json.loads((FOLDER / "2.json").read_text())
    for key, value in changes.items():
        if value is None:
            run.pop(key, None)
        else:
            run[key] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**run, "question_ID": name}))
    return path


def test_outcome_from_either_field_and_a_notice_when_neither(tmp_path: Path, tracking_uri: str) -> None:
    _variant(tmp_path, "hand", is_correct=None, is_corrected=False, labels=None, mistake_type="Tool failure")
    _variant(tmp_path, "algo", is_correct=False)
    _variant(tmp_path, "neither", is_correct=None)
    _variant(tmp_path, "garbled", is_correct="maybe")
    records = list(read_source("who-and-when", tmp_path, with_labels=True))
    convs = {r.source_id: r for r in records if isinstance(r, Conversation)}
    outcome = {k: (c.labels.outcome.passed, c.labels.outcome.reason) if c.labels.outcome else None for k, c in convs.items()}
    assert outcome == {
        "hand": (False, "Who&When is_corrected"),
        "algo": (False, "Who&When is_correct"),
        "neither": None,  # absent, never "passed"
        "garbled": None,
    }
    notices = {r.where: r.message for r in records if isinstance(r, Notice)}
    assert notices == {
        "neither.json": "has neither is_correct nor is_corrected, so its outcome label was not imported; add one (true or false) to score this run",
        "garbled.json": "is_correct is 'maybe', not true or false, so its outcome label was not imported; set it to true or false to score this run",
    }
    assert convs["hand"].labels.failures[0].category == "Tool failure"  # the hand-crafted split's mistake_type
    assert not [r for r in read_source("who-and-when", tmp_path) if isinstance(r, Notice)]  # labels not asked for

    experiment_id, _ = resolve_experiment("w&w outcomes")
    report = import_path("who-and-when", tmp_path, experiment_id, with_labels=True)
    assert (report.imported, len(report.notices)) == (4, 2)
    hand = trace_by_source(experiment_id, "hand")
    assert [a.value for a in human_assessments(hand) if a.name == "human_outcome"] == [False]
    neither = trace_by_source(experiment_id, "neither")
    assert [a for a in human_assessments(neither) if a.name == "human_outcome"] == []
    assert sorted(a.name for a in human_assessments(neither)) == ["expected_response", "human_failure"]  # the other labels stay
    spans = children(hand)
    assert [(s.name, s.attributes.get(ATTR_ADDRESSEE)) for s in spans] == [("Orchestrator", None), ("WebSurfer", None), ("Orchestrator", None)]
    assert_sane_timing(hand)


@needs_hand_crafted
def test_hand_crafted_sample_mistake_steps_are_history_indexes(tracking_uri: str) -> None:
    """Checked by hand: each mistake_step is a WebSurfer turn the reason describes (0-based index)."""
    records = list(read_source("who-and-when", WHO_AND_WHEN_HAND, with_labels=True))
    assert not [r for r in records if isinstance(r, Malformed | Notice)]
    convs = {r.source_file: r for r in records if isinstance(r, Conversation)}
    assert sorted(convs) == ["1.json", "2.json", "3.json"]
    assert all(c.labels.outcome.passed is False for c in convs.values())  # is_corrected: false
    expected = {"1.json": (12, "NY Jidokwan Taekwondo"), "2.json": (4, "Ted Danson TV series list"), "3.json": (32, "Astronomy Picture of the Day Archive 2015")}
    for file, (step, seen) in expected.items():
        (failure,) = convs[file].labels.failures
        turn = convs[file].turns[step]
        assert (failure.step, failure.agent, turn.step, turn.name) == (step, "WebSurfer", step, "WebSurfer")
        assert seen in turn.content
    experiment_id, _ = resolve_experiment("w&w hand-crafted")
    report = import_records(list(convs.values()), "who-and-when", experiment_id, with_labels=True)
    assert (report.imported, report.lost) == (3, [])
    trace = trace_by_source(experiment_id, convs["1.json"].source_id)
    (mistake,) = [a for a in human_assessments(trace) if a.name == "human_failure"]
    span = {s.span_id: s for s in children(trace)}[mistake.span_id]
    assert (span.name, span.attributes[ATTR_STEP]) == ("WebSurfer", 12)
    assert "KEYENCE" in span.outputs["content"]  # the irrelevant site it landed on
    assert root_of(trace).outputs == "Alliance Jiu Jitsu, NY Jidokwan Taekwondo"  # the run's FINAL ANSWER
    assert_sane_timing(trace)


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

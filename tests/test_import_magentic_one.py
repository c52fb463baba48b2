"""Magentic-One logs → traces: agents as spans (addressee kept), the terminal as a tool, AgentRx labels on their steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlflow_eval_agent.cli import main
from mlflow_eval_agent.importers import (
    Conversation,
    Malformed,
    Notice,
    SourceError,
    import_path,
    import_records,
    read_source,
    resolve_experiment,
)
from mlflow_eval_agent.importers.model import ATTR_ADDRESSEE, ATTR_SOURCE_ROLE, ATTR_STEP, META_FORMAT, META_TIMING
from tests.test_import_support import (
    DATA,
    MAGENTIC_ONE,
    WHO_AND_WHEN_HAND,
    assert_sane_timing,
    children,
    human_assessments,
    needs_hand_crafted,
    needs_magentic_one,
    root_of,
    trace_by_source,
    traces_of,
)

FOLDER = DATA / "magentic_one"


def _by_name(trace, name):
    return [a for a in human_assessments(trace) if a.name == name]


def _conversations(records):
    return {r.source_id: r for r in records if isinstance(r, Conversation)}


def test_parse_speakers_steps_and_the_terminal() -> None:
    records = list(read_source("magentic-one", FOLDER))
    assert [r.where for r in records if isinstance(r, Malformed)] == ["broken.json"]
    assert [r for r in records if isinstance(r, Notice)] == []  # no labels asked for, no notices
    convs = _conversations(records)
    assert list(convs) == ["run-a", "run-b"]  # file stems; ground_truth.json is not a log
    run = convs["run-a"]
    assert run.labels is None
    assert run.request.startswith("What is 6 times 7")
    assert run.response == "42"  # the FINAL ANSWER line, not the log noise around it
    # step = list index + 1 (AgentRx's step_number is 1-based)
    assert [(t.step, t.role, t.name, t.addressee) for t in run.turns[:6]] == [
        (1, "user", None, None),
        (2, "assistant", "Orchestrator", None),
        (3, "assistant", "Orchestrator", "WebSurfer"),
        (4, "assistant", "Orchestrator", None),
        (5, "assistant", "WebSurfer", None),
        (6, "assistant", "Orchestrator", "Assistant"),
    ]
    assert run.turns[2].source_role == "Orchestrator (-> WebSurfer)"
    assert run.turns[4].source_role is None  # a bare agent name says nothing more
    terminal = [t for t in run.turns if t.role == "tool"]
    assert [(t.step, t.name) for t in terminal] == [(11, "ComputerTerminal"), (14, "ComputerTerminal")]
    # What it ran: the latest code since its previous turn (the "Next speaker" thought sits between).
    assert terminal[0].tool_input == "# filename: times.py\nprint(six * 7)"
    assert terminal[1].tool_input == "# filename: times.py\nprint(6 * 7)"


def test_one_span_per_agent_turn_and_terminal_exit_codes(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("m1")
    report = import_path("magentic-one", FOLDER, experiment_id)
    assert (report.imported, [m.where for m in report.malformed], report.lost) == (2, ["broken.json"], [])
    trace = trace_by_source(experiment_id, "run-a")
    assert trace.info.trace_metadata[META_FORMAT] == "magentic-one"
    assert trace.info.trace_metadata[META_TIMING] == "synthetic"
    spans = children(trace)
    assert [(s.attributes[ATTR_STEP], s.span_type, s.name, s.attributes.get(ATTR_ADDRESSEE)) for s in spans] == [
        (2, "CHAT_MODEL", "Orchestrator", None),
        (3, "CHAT_MODEL", "Orchestrator", "WebSurfer"),
        (4, "CHAT_MODEL", "Orchestrator", None),
        (5, "CHAT_MODEL", "WebSurfer", None),
        (6, "CHAT_MODEL", "Orchestrator", "Assistant"),
        (7, "CHAT_MODEL", "Orchestrator", None),
        (8, "CHAT_MODEL", "Assistant", None),
        (9, "CHAT_MODEL", "Orchestrator", "ComputerTerminal"),
        (10, "CHAT_MODEL", "Orchestrator", None),
        (11, "TOOL", "ComputerTerminal", None),
        (12, "CHAT_MODEL", "Assistant", None),
        (13, "CHAT_MODEL", "Orchestrator", None),
        (14, "TOOL", "ComputerTerminal", None),
        (15, "CHAT_MODEL", "Orchestrator", None),
        (16, "CHAT_MODEL", "Orchestrator", None),
    ]
    assert spans[1].attributes[ATTR_SOURCE_ROLE] == "Orchestrator (-> WebSurfer)"
    assert spans[-1].attributes[ATTR_SOURCE_ROLE] == "Orchestrator (termination condition)"
    failed_run, ok_run = spans[9], spans[12]
    assert (failed_run.status.status_code, failed_run.status.description) == (
        "ERROR", "The script ran, then exited with an error (POSIX exit code: 1)",
    )
    assert failed_run.inputs == {"input": "# filename: times.py\nprint(six * 7)"}
    assert ok_run.status.status_code == "OK"
    assert trace.info.state == "OK"  # the team carried on after the failed run
    root = root_of(trace)
    assert (root.name, root.outputs) == ("group_chat", "42")
    assert human_assessments(trace) == []
    assert_sane_timing(trace)
    again = import_path("magentic-one", FOLDER, experiment_id)
    assert (again.imported, again.skipped) == (0, 2)


def test_labels_land_on_their_steps_and_every_labelled_run_failed(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("m1 labelled")
    report = import_path("magentic-one", FOLDER, experiment_id, with_labels=True)
    notices = {n.where: n.reason for n in report.notices}
    assert notices == {
        "run-a.json": "1 of 3 labels are not on a turn of their failed agent, and stay on the step given: "
        "step 7 (Assistant) is a turn of Orchestrator; Assistant speaks next at step 8",
        "ground_truth.json": "labels for run-elsewhere match no log in magentic_one; ignored",
    }
    trace = trace_by_source(experiment_id, "run-a")
    span_of = {s.span_id: s for s in children(trace)}
    assert [(a.value, a.span_id, a.rationale) for a in _by_name(trace, "human_outcome")] == [
        (False, None, "WebSurfer never opened the task page, so the Assistant guessed the script."),
    ]
    placed = {
        int(a.metadata["step"]): (a.value, a.metadata["agent"], span_of[a.span_id].name, span_of[a.span_id].attributes[ATTR_STEP])
        for a in _by_name(trace, "human_failure")
    }
    assert placed == {
        3: ("Instruction/Plan Adherence Failure", "WebSurfer", "Orchestrator", 3),  # the instruction addressed to WebSurfer
        5: ("Instruction/Plan Adherence Failure", "WebSurfer", "WebSurfer", 5),
        7: ("Invention of new information", "Assistant", "Orchestrator", 7),  # as given, not moved (see the notice)
    }
    (root_cause,) = [a for a in _by_name(trace, "human_failure") if a.metadata["root_cause"] == "true"]
    assert root_cause.metadata["step"] == "5"  # root_cause.failure_id "2" written as a string
    assert root_cause.metadata["root_cause_reason"] == "Without the page the script was guessed."
    assert root_cause.rationale == "Searched Bing instead of opening the task page"
    unlabelled = trace_by_source(experiment_id, "run-b")
    assert human_assessments(unlabelled) == []  # no ground-truth entry: no outcome either


def test_labels_file_default_explicit_and_missing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(FOLDER / "run-a.json", logs / "run-a.json")
    records = list(read_source("magentic-one", logs, with_labels=True))
    assert any(isinstance(r, Notice) and "no ground_truth.json" in r.message for r in records)
    assert _conversations(records)["run-a"].labels is None
    elsewhere = tmp_path / "agentrx.json"
    shutil.copy(FOLDER / "ground_truth.json", elsewhere)
    labelled = _conversations(read_source("magentic-one", logs, with_labels=True, labels_path=elsewhere))
    assert len(labelled["run-a"].labels.failures) == 3
    # One log: the ground truth beside it is the default.
    one = _conversations(read_source("magentic-one", FOLDER / "run-a.json", with_labels=True))
    assert len(one["run-a"].labels.failures) == 3
    with pytest.raises(SourceError, match="is the labels file"):
        list(read_source("magentic-one", FOLDER / "ground_truth.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no .json logs"):
        list(read_source("magentic-one", tmp_path / "empty"))


def test_cli_imports_a_folder_with_labels(tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["import", "-f", "magentic-one", str(FOLDER), "-e", "m1 cli", "--with-labels"])
    out = capsys.readouterr().out
    assert code == 1, out  # broken.json is malformed; the rest is imported
    assert "Imported 2 conversation(s); skipped 0 already imported; 1 malformed." in out
    assert "Wrote 4 human label(s)." in out  # run-a: its outcome and 3 failures; run-b has none
    assert "note run-a.json: 1 of 3 labels are not on a turn of their failed agent" in out
    assert main(["import", "-f", "who-and-when", str(FOLDER), "-e", "m1 cli", "--with-labels", "--labels", str(FOLDER / "ground_truth.json")]) == 2
    assert "--labels is read only for tau-bench and magentic-one" in capsys.readouterr().err


# ---- the public sample: pins how step_number maps onto turns (checked by hand, docs/importers.md) ----

@needs_magentic_one
def test_sample_imports_completely_with_hand_checked_steps(tracking_uri: str) -> None:
    records = list(read_source("magentic-one", MAGENTIC_ONE, with_labels=True))
    convs = _conversations(records)
    assert len(convs) == 6 and not [r for r in records if isinstance(r, Malformed)]
    for conv in convs.values():
        assert len(conv.turns) == len(json.loads((MAGENTIC_ONE / conv.source_file).read_text()))
    labelled = {k: c for k, c in convs.items() if c.labels is not None}
    assert len(labelled) == 5 and all(c.labels.outcome.passed is False for c in labelled.values())
    assert sum(len(c.labels.failures) for c in labelled.values()) == 66
    # The one label that is not on its failed agent's turn (it counts from 0): 14569e28 step 12.
    notices = {n.where: n.message for n in records if isinstance(n, Notice)}
    assert notices == {
        "14569e28-c88c-43e4-8c32-097d35b9a67d.json": "1 of 1 labels are not on a turn of their failed agent, and stay on "
        "the step given: step 12 (Assistant) is a turn of Orchestrator; Assistant speaks next at step 13",
    }

    wanted = ["0a65cb96-cb6e-4a6a-8aae-c1084f613456", "114d5fd0-e2ae-4b6d-a65a-870da2d19c08", "0ec4371851b96837b0a81b3dd3df401415061bb532fbafeb4609f3337c358508"]
    experiment_id, _ = resolve_experiment("m1 sample")
    report = import_records([convs[k] for k in wanted], "magentic-one", experiment_id, with_labels=True)
    assert (report.imported, report.lost) == (3, [])

    def labelled_spans(source_id):
        trace = trace_by_source(experiment_id, source_id)
        assert_sane_timing(trace)
        span_of = {s.span_id: s for s in children(trace)}
        return {int(a.metadata["step"]): (a, span_of[a.span_id]) for a in _by_name(trace, "human_failure")}

    apod = labelled_spans(wanted[0])
    assert {step: span.name for step, (_, span) in apod.items()} == {56: "WebSurfer", 64: "WebSurfer", 93: "WebSurfer"}
    assert "APOD: 2008 August 28" in apod[56][1].outputs["content"]  # clicked 2008, not 2015
    assert "APOD 2014 January" in apod[64][1].outputs["content"]
    assert apod[56][0].metadata["root_cause"] == "true"
    pdf = labelled_spans(wanted[1])
    assert {step: (span.name, span.attributes.get(ATTR_ADDRESSEE)) for step, (_, span) in pdf.items()} == {
        19: ("Orchestrator", "FileSurfer"), 23: ("Orchestrator", "FileSurfer"), 27: ("Orchestrator", "FileSurfer"),
        31: ("Orchestrator", "FileSurfer"), 33: ("FileSurfer", None),
    }
    gyms = labelled_spans(wanted[2])
    assert (gyms[9][1].name, gyms[10][1].name) == ("WebSurfer", "Orchestrator")
    assert gyms[10][0].metadata["root_cause"] == "true"
    assert gyms[10][1].outputs["content"].startswith("Updated Ledger:")


@needs_magentic_one
@needs_hand_crafted
def test_same_run_from_who_and_when_gives_the_same_spans() -> None:
    """Who&When's hand-crafted run 3 is AgentRx's log 0a65cb96: same spans, steps one apart."""
    (m1,) = _conversations(read_source("magentic-one", MAGENTIC_ONE / "0a65cb96-cb6e-4a6a-8aae-c1084f613456.json")).values()
    (ww,) = _conversations(read_source("who-and-when", WHO_AND_WHEN_HAND / "3.json")).values()
    assert [(t.role, t.name, t.addressee, t.step + 1) for t in ww.turns] == [(t.role, t.name, t.addressee, t.step) for t in m1.turns]
    assert (ww.request.strip(), ww.response) == (m1.request.strip(), m1.response)


@needs_magentic_one
def test_cli_imports_the_whole_sample(tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "-f", "magentic-one", str(MAGENTIC_ONE), "-e", "m1 all", "--with-labels"]) == 0
    out = capsys.readouterr().out
    assert "Imported 6 conversation(s); skipped 0 already imported; 0 malformed." in out
    assert "Wrote 71 human label(s)." in out  # 5 outcomes + 66 located failures
    import mlflow

    assert len(traces_of(mlflow.get_experiment_by_name("m1 all").experiment_id)) == 6

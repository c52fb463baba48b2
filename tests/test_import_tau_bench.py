"""tau-bench results → traces; labels (reward, AgentRx step failures) land on the right spans."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow_eval_agent.importers import (
    Conversation,
    Malformed,
    Notice,
    import_path,
    import_records,
    read_source,
    resolve_experiment,
)
from mlflow_eval_agent.importers.model import ATTR_STEP
from tests.test_import_support import (
    DATA,
    TAU_LABELS,
    TAU_RUNS,
    assert_sane_timing,
    children,
    human_assessments,
    needs_corpora,
    root_of,
    trace_by_source,
    traces_of,
)

RUNS = DATA / "tau_runs.json"
LABELS = DATA / "tau_ground_truth.json"


def _by_name(trace, name):
    return [a for a in human_assessments(trace) if a.name == name]


def test_parse_steps_follow_the_message_index() -> None:
    records = list(read_source("tau-bench", RUNS))
    convs = [r for r in records if isinstance(r, Conversation)]
    assert [c.source_id for c in convs] == ["task 7 trial 0", "task 8 trial 0"]
    assert [r.where for r in records if isinstance(r, Malformed)] == ["tau_runs.json element 2"]
    failed = convs[1]
    # The system policy is step 1: step = list position + 1 (the `index` field).
    assert [(t.step, t.role) for t in failed.turns][:3] == [(1, "system"), (2, "user"), (3, "assistant")]
    assert failed.labels is None  # no labels unless asked
    assert failed.request == "I want to return my lamp, order #A1."
    assert failed.response == "Your lamp has been returned."


def test_without_labels_no_label_reaches_the_store(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("tau plain")
    report = import_path("tau-bench", RUNS, experiment_id)
    assert (report.imported, len(report.malformed), report.labels_written) == (2, 1, 0)
    for trace in traces_of(experiment_id):
        assert trace.info.assessments in (None, [])
    trace = trace_by_source(experiment_id, "task 8 trial 0")
    spans = children(trace)
    assert [(s.span_type, s.name, s.attributes[ATTR_STEP]) for s in spans] == [
        ("CHAT_MODEL", "assistant", 3),
        ("TOOL", "find_order", 4),
        ("CHAT_MODEL", "assistant", 5),
        ("TOOL", "return_items", 6),
        ("CHAT_MODEL", "assistant", 7),
    ]
    assert spans[3].status.status_code == "ERROR"
    assert spans[3].outputs == "Error: non-delivered order cannot be returned"
    assert spans[3].inputs == {"order_id": "#A1", "items": ["lamp"]}
    assert spans[0].inputs["messages"][0]["role"] == "system"  # the long policy reaches the first model turn
    assert_sane_timing(trace)
    assert root_of(trace).outputs == "Your lamp has been returned."


def test_labels_land_on_the_spans_of_their_steps(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("tau labelled")
    report = import_path("tau-bench", RUNS, experiment_id, with_labels=True, labels_path=LABELS)
    assert [n.reason for n in report.notices] == ["labels for runs 99 match no run in tau_runs.json; ignored"]
    trace = trace_by_source(experiment_id, "task 8 trial 0")
    step_of_span = {s.span_id: s.attributes[ATTR_STEP] for s in children(trace)}
    root_id = root_of(trace).span_id
    outcome = _by_name(trace, "human_outcome")
    assert [(a.value, a.span_id) for a in outcome] == [(False, None)]
    placed = {a.metadata["step"]: (a.value, step_of_span.get(a.span_id, "root" if a.span_id == root_id else None)) for a in _by_name(trace, "human_failure")}
    assert placed == {
        "2": ("Underspecified User Intent", 3),  # a user message: the model turn that answered it
        "5": ("Invalid Invocation", 5),  # the assistant turn that made the bad call
        "6": ("System Failure", 6),  # the tool result
        "7": ("Misinterpretation of Tool Output", 7),
        "8": ("Underspecified User Intent", "root"),  # the last user message: nothing answered it
    }
    root_cause = [a for a in _by_name(trace, "human_failure") if a.metadata["root_cause"] == "true"]
    assert [a.metadata["step"] for a in root_cause] == ["7"]
    assert all(a.source.source_id == "tau-bench human labels" for a in human_assessments(trace))
    expected = [a for a in trace.info.assessments if a.name == "expected_tool_calls"]
    assert expected[0].value == [{"name": "find_order", "kwargs": {"order_id": "#A1"}}]
    passed = trace_by_source(experiment_id, "task 7 trial 0")
    assert [a.value for a in _by_name(passed, "human_outcome")] == [True]
    assert _by_name(passed, "human_failure") == []


def test_labels_can_be_added_by_a_later_import_without_duplicates(tracking_uri: str) -> None:
    experiment_id, _ = resolve_experiment("tau later")
    import_path("tau-bench", RUNS, experiment_id)
    later = import_path("tau-bench", RUNS, experiment_id, with_labels=True, labels_path=LABELS)
    assert (later.imported, later.skipped, later.labelled_existing) == (0, 2, 2)
    again = import_path("tau-bench", RUNS, experiment_id, with_labels=True, labels_path=LABELS)
    assert (again.imported, again.labels_written) == (0, 0)
    trace = trace_by_source(experiment_id, "task 8 trial 0")
    assert len(_by_name(trace, "human_failure")) == 5
    assert len(traces_of(experiment_id)) == 2


def test_labels_file_defaults_to_the_one_beside_the_runs(tmp_path: Path, tracking_uri: str) -> None:
    (tmp_path / "runs.json").write_text(RUNS.read_text())
    records = list(read_source("tau-bench", tmp_path / "runs.json", with_labels=True))
    assert any(isinstance(r, Notice) and "no tau_ground_truth.json" in r.message for r in records)
    (tmp_path / "tau_ground_truth.json").write_text(LABELS.read_text())
    convs = [r for r in read_source("tau-bench", tmp_path / "runs.json", with_labels=True) if isinstance(r, Conversation)]
    assert len(convs[1].labels.failures) == 5


def test_truncated_file_reports_where_it_broke(tmp_path: Path) -> None:
    text = RUNS.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: text.index('"task_id": 8')])
    records = list(read_source("tau-bench", cut))
    assert [type(r).__name__ for r in records] == ["Conversation", "Malformed"]
    assert records[1].where == "cut.json element 1" and "rest of the file" in records[1].reason


# ---- the public corpus: pins how step_number maps onto messages ----

@needs_corpora
def test_corpus_parses_completely() -> None:
    runs = json.loads(TAU_RUNS.read_text())
    convs = [r for r in read_source("tau-bench", TAU_RUNS) if isinstance(r, Conversation)]
    assert len(convs) == len(runs) == 100
    assert [len(c.turns) for c in convs] == [len(r["traj"]) for r in runs]
    assert sum(len(t.tool_calls) for c in convs for t in c.turns) == sum(len(m.get("tool_calls") or []) for r in runs for m in r["traj"])


@needs_corpora
def test_corpus_step_numbers_are_message_indexes(tracking_uri: str) -> None:
    """Run 2 step 7 is the miscount of T-shirts; run 20 step 49 the exchange call that errors at 50."""
    wanted = {"task 2 trial 2", "task 20 trial 20"}
    records = [r for r in read_source("tau-bench", TAU_RUNS, with_labels=True, labels_path=TAU_LABELS) if isinstance(r, Conversation) and r.source_id in wanted]
    assert len(records) == 2
    experiment_id, _ = resolve_experiment("tau corpus slice")
    report = import_records(records, "tau-bench", experiment_id, with_labels=True)
    assert report.imported == 2 and not report.lost

    run2 = trace_by_source(experiment_id, "task 2 trial 2")
    span_of = {s.span_id: s for s in children(run2)}
    by_step = {a.metadata["step"]: span_of[a.span_id] for a in _by_name(run2, "human_failure")}
    assert by_step["7"].span_type == "CHAT_MODEL"
    assert "11 available T-shirt options" in by_step["7"].outputs["content"]
    assert by_step["3"].outputs["tool_calls"][0]["function"]["name"] == "list_all_product_types"

    run20 = trace_by_source(experiment_id, "task 20 trial 20")
    spans = children(run20)
    labelled = next(s for s in spans if s.span_id in {a.span_id for a in _by_name(run20, "human_failure") if a.metadata["step"] == "49"})
    after = spans[spans.index(labelled) + 1]
    assert labelled.outputs["tool_calls"][0]["function"]["name"] == "exchange_delivered_order_items"
    assert (after.span_type, after.attributes[ATTR_STEP], after.status.status_code) == ("TOOL", 50, "ERROR")
    assert after.outputs == "Error: non-delivered order cannot be exchanged"
    assert_sane_timing(run20)

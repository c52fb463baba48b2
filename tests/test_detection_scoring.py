"""The detection benchmark's arithmetic (benchmarks/detection.py `score` and its parts) on hand-built inputs.

The benchmark itself (import, pipeline, suite run) is end to end in tests/test_import_detection.py;
here only the figures: MCC, the baselines' expectations, the warnings, location over all failed runs.
"""

from __future__ import annotations

import math
from itertools import combinations
from types import SimpleNamespace

import pytest

from benchmarks import detection as d
from mlflow_eval_agent.importers.model import ATTR_CALL_STEP, ATTR_STEP, Conversation, Labels, OutcomeLabel, StepLabel, Turn


# --- fakes ------------------------------------------------------------------------------------------
def span(span_id, name, span_type="CHAT_MODEL", step=None, call_step=None, status="OK", parent="root", start=0):
    attributes = {} if step is None else {ATTR_STEP: step}
    if call_step is not None:
        attributes[ATTR_CALL_STEP] = call_step
    return SimpleNamespace(
        span_id=span_id, name=name, span_type=span_type, parent_id=parent, start_time_ns=start,
        attributes=attributes, status=SimpleNamespace(status_code=status),
    )


def trace(trace_id, *children):
    root = span("root", "group_chat", "AGENT", parent=None, start=0)
    spans = [root, *(SimpleNamespace(**{**vars(c), "start_time_ns": (i + 1) * 10}) for i, c in enumerate(children))]
    return SimpleNamespace(info=SimpleNamespace(trace_id=trace_id, assessments=[], trace_metadata={}), data=SimpleNamespace(spans=spans))


def runs(n, failed, length=None):
    """n judged runs r0..r{n-1}, the first `failed` of them failed; traces with `length(i)` child spans."""
    truth = {f"r{i}": d.Truth(failed=i < failed) for i in range(n)}
    traces = {f"r{i}": trace(f"r{i}", *(span(f"s{j}", "a", step=j) for j in range((length or (lambda _: 1))(i)))) for i in range(n)}
    return truth, traces


def mcc(tp, fp, fn, tn):
    margins = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return (tp * tn - fp * fn) / math.sqrt(margins) if margins else None


def flags(*trace_ids, scorer="check"):
    return [d.Verdict(scorer, t) for t in trace_ids]


# --- trace level ------------------------------------------------------------------------------------
def test_precision_recall_f1_mcc_against_hand_computed_values():
    # 10 runs, 4 failed (r0..r3); flagged r0, r1 (failed) and r5 (passed): TP 2, FP 1, FN 2, TN 5.
    truth, traces = runs(10, 4)
    result = d.score(truth, flags("r0", "r1", "r5"), traces)
    assert (result["failed"], result["passed"], result["flagged"], result["true_positives"]) == (4, 6, 3, 2)
    assert result["precision"] == round(2 / 3, 3)
    assert result["recall"] == 0.5
    assert result["f1"] == round(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), 3) == 0.571
    assert result["mcc"] == round((2 * 5 - 1 * 2) / math.sqrt(3 * 4 * 6 * 7), 3) == round(mcc(2, 1, 2, 5), 3) == 0.356
    assert result["warnings"] == []


def test_mcc_is_undefined_when_a_margin_is_zero():
    truth, traces = runs(5, 2)
    assert d.score(truth, [], traces)["mcc"] is None  # nothing flagged
    assert d.score(truth, flags(*truth), traces)["mcc"] is None  # everything flagged
    assert d.score(truth, flags(*truth), traces)["baselines"]["flag_all"]["mcc"] is None
    perfect = d.score(truth, flags("r0", "r1"), traces)
    assert (perfect["precision"], perfect["recall"], perfect["mcc"]) == (1.0, 1.0, 1.0)
    inverted = d.score(truth, flags("r2", "r3", "r4"), traces)
    assert inverted["mcc"] == -1.0


def test_runs_without_an_outcome_are_left_out_and_counted():
    truth, traces = runs(4, 2)
    truth["x"] = d.Truth(failed=None)
    result = d.score(truth, flags("r0", "x"), traces)
    assert (result["traces"], result["judged"], result["no_outcome_label"], result["flagged"]) == (5, 4, 1, 1)
    assert "1 run carries no outcome label and is left out of the trace-level figures." in result["warnings"]


def test_flag_all_baseline_is_the_base_rate():
    truth, traces = runs(8, 2)
    flag_all = d.score(truth, flags("r0"), traces)["baselines"]["flag_all"]
    assert flag_all == {"flagged": 8, "precision": 0.25, "recall": 1.0, "f1": 0.4, "mcc": None}


@pytest.mark.parametrize(("n", "failed", "k"), [(7, 3, 2), (6, 2, 4), (5, 4, 1), (6, 3, 6)])
def test_random_baseline_is_the_exact_expectation(n, failed, k):
    """Against brute force: the mean of every figure over all C(n, k) ways to flag k runs."""
    positives = set(range(failed))
    picks = list(combinations(range(n), k))
    tps = [len(positives & set(p)) for p in picks]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    mccs = [mcc(tp, k - tp, failed - tp, n - k - failed + tp) for tp in tps]
    got = d.random_baseline(k, failed, n)
    assert got["precision"] == round(mean([tp / k for tp in tps]), 3) == round(failed / n, 3)  # the base rate
    assert got["recall"] == round(mean([tp / failed for tp in tps]), 3) == round(k / n, 3)  # the flag rate
    assert got["f1"] == round(mean([2 * tp / (k + failed) for tp in tps]), 3)
    assert got["f1"] == round(2 * (failed / n) * (k / n) / (failed / n + k / n), 3)  # = F1 of the expected values
    if None in mccs:
        assert got["mcc"] is None
    else:
        assert got["mcc"] == 0.0 and abs(mean(mccs)) < 1e-9


def test_random_baseline_through_score_uses_the_suites_flag_count():
    truth, traces = runs(10, 4)
    random = d.score(truth, flags("r0", "r1", "r5"), traces)["baselines"]["random"]
    assert random == {"flagged": 3, "precision": 0.4, "recall": 0.3, "f1": round(2 * 3 * 4 / (10 * 7), 3), "mcc": 0.0}


def test_length_baseline_flags_the_longest_runs_and_splits_ties():
    # Lengths 6,5,4,4,4,1; failed r0 (6) and r3 (4). k = 3: r0, r1 certain, one of r2/r3/r4 (each 1/3).
    lengths = [6, 5, 4, 4, 4, 1]
    truth = {f"r{i}": d.Truth(failed=i in (0, 3)) for i in range(6)}
    traces = {f"r{i}": trace(f"r{i}", *(span(f"s{j}", "a", step=j) for j in range(n))) for i, n in enumerate(lengths)}
    length = d.score(truth, flags("r5", "r4", "r3"), traces)["baselines"]["length"]
    expected_tp = 1 + 1 / 3
    assert length["flagged"] == 3
    assert length["precision"] == round(expected_tp / 3, 3)
    assert length["recall"] == round(expected_tp / 2, 3)
    assert length["f1"] == round(2 * expected_tp / 5, 3)


def test_length_baseline_without_flags_or_traces():
    truth, _ = runs(4, 2)
    length = d.score(truth, [], {})["baselines"]["length"]
    assert (length["flagged"], length["precision"], length["recall"]) == (0, None, 0.0)


def test_a_corpus_without_passing_runs_says_so():
    truth, traces = runs(6, 6)
    result = d.score(truth, flags("r0", "r1"), traces)
    assert result["precision"] == 1.0 and result["mcc"] is None
    assert all(b["precision"] == 1.0 for b in result["baselines"].values())
    assert len(result["warnings"]) == 1 and "no passing runs" in result["warnings"][0]


def test_a_corpus_without_failed_runs_or_outcomes_does_not_crash():
    truth, traces = runs(3, 0)
    result = d.score(truth, flags("r0"), traces)
    assert (result["recall"], result["precision"], result["location"]["exact_step"]) == (None, 0.0, None)
    assert "None of the 3 runs failed" in result["warnings"][0]
    unknown = {t: d.Truth(failed=None) for t in truth}
    result = d.score(unknown, flags("r0"), traces)
    assert (result["judged"], result["flagged"], result["precision"], result["recall"], result["f1"]) == (0, 0, None, None, None)
    assert result["baselines"]["random"]["precision"] is None
    assert "No run carries an outcome label" in result["warnings"][0]


# --- per check, per category ------------------------------------------------------------------------
def test_per_check_counts_each_scorer_and_keeps_silent_ones():
    truth, traces = runs(6, 3)
    verdicts = flags("r0", "r1", "r4", scorer="broad") + flags("r2", scorer="narrow")
    result = d.score(truth, verdicts, traces, scorers=["broad", "narrow", "silent"])
    assert result["per_check"] == {
        "broad": {"flagged": 3, "true_positives": 2, "precision": 0.667, "recall": 0.667},
        "narrow": {"flagged": 1, "true_positives": 1, "precision": 1.0, "recall": 0.333},
        "silent": {"flagged": 0, "true_positives": 0, "precision": None, "recall": 0.0},
    }
    assert list(result["per_check"]) == ["broad", "narrow", "silent"]
    assert (result["flagged"], result["true_positives"]) == (4, 3)


def test_per_category_recall():
    truth, traces = runs(3, 3)
    truth["r0"].categories, truth["r1"].categories, truth["r2"].categories = {"A"}, {"A", "B"}, set()
    assert d.score(truth, flags("r1"), traces)["per_category"] == {
        "A": {"runs": 2, "flagged": 1, "recall": 0.5},
        "B": {"runs": 1, "flagged": 1, "recall": 1.0},
    }


# --- location ---------------------------------------------------------------------------------------
def group_chat(trace_id):
    """Steps 0 user (no span), 1 Planner, 2 Coder, 3 executor (TOOL, no call step), 4 Checker."""
    return trace(
        trace_id,
        span("p1", "Planner", step=1),
        span("c2", "Coder", step=2),
        span("x3", "Computer_terminal", "TOOL", step=3, status="ERROR"),
        span("k4", "Checker", step=4),
    )


TRANSCRIPT = {0: "user", 1: "Planner", 2: "Coder", 3: "Coder", 4: "Checker"}


def test_location_counts_every_failed_run_and_unflagged_ones_miss():
    truth = {
        "exact": d.Truth(failed=True, steps=[3], agents={"Coder"}, transcript=TRANSCRIPT),
        "near": d.Truth(failed=True, steps=[2], agents={"Planner"}, transcript=TRANSCRIPT),
        "missed": d.Truth(failed=True, steps=[1], agents={"Planner"}, transcript=TRANSCRIPT),
        "no_steps": d.Truth(failed=True, transcript=TRANSCRIPT),  # not a location run
        "passed": d.Truth(failed=False, steps=[1], transcript=TRANSCRIPT),  # not a location run
    }
    traces = {t: group_chat(t) for t in truth}
    verdicts = [
        d.Verdict("ran_ok", "exact", span_id="x3"),  # the executor's TOOL span: step 3, agent = its caller Coder
        d.Verdict("ran_ok", "near", span_id="x3"),  # step 3 is within 1 of 2; Coder is not Planner
        d.Verdict("ran_ok", "no_steps", span_id="x3"),
    ]
    loc = d.score(truth, verdicts, traces)["location"]
    assert (loc["runs"], loc["flagged"], loc["agent_runs"]) == (3, 2, 3)
    assert loc["hits"] == {"exact_step": 1, "within_1": 2, "agent": 1}
    assert (loc["exact_step"], loc["within_1"], loc["agent"]) == (0.333, 0.667, 0.333)
    assert loc["pointed_by"] == {"metadata": 2, "rationale": 0, "root": 0}
    # Chance: a step among 0..4 (5 steps), an agent among user, Planner, Coder, Checker (4 speakers).
    exact = (1 / 5 + 1 / 5 + 1 / 5) / 3
    within = (3 / 5 + 3 / 5 + 3 / 5) / 3  # {2,3,4}, {1,2,3}, {0,1,2}
    assert loc["chance"] == {"exact_step": round(exact, 3), "within_1": round(within, 3), "agent": 0.25}


def test_several_labelled_steps_any_counts_and_agents_match_case_insensitively():
    truth = {"t": d.Truth(failed=True, steps=[1, 4], agents={"checker"}, transcript=TRANSCRIPT)}
    loc = d.score(truth, [d.Verdict("late", "t", span_id="k4")], {"t": group_chat("t")})["location"]
    assert (loc["exact_step"], loc["within_1"], loc["agent"]) == (1.0, 1.0, 1.0)
    assert loc["chance"]["exact_step"] == 0.4 and loc["chance"]["agent"] == 0.25


def test_the_earliest_pointed_span_decides_and_the_root_comes_last():
    t = group_chat("t")
    verdicts = [
        d.Verdict("whole_run", "t", span_id="root"),
        d.Verdict("late", "t", span_id="k4"),
        d.Verdict("early", "t", span_name="Coder"),
    ]
    chosen, how = d.predicted_span(t, verdicts)
    assert (chosen.span_id, how) == ("c2", "metadata")
    assert d.predicted_span(t, [d.Verdict("whole_run", "t", span_id="root")])[0].span_id == "root"


def test_verdict_span_falls_back_to_the_rationale_then_the_root():
    t = group_chat("t")
    assert d.verdict_span(t, d.Verdict("s", "t", span_id="gone", span_name="Checker"))[0].span_id == "k4"
    by_text = d.verdict_span(t, d.Verdict("s", "t", rationale="Computer_terminal (TOOL) failed: exitcode 1"))
    assert (by_text[0].span_id, by_text[1]) == ("x3", "rationale")
    assert d.verdict_span(t, d.Verdict("s", "t", rationale="Coder (CHAT_MODEL) is fine"))[1] == "root"  # names an OK span only
    at_root = d.verdict_span(t, d.Verdict("s", "t"))
    assert (at_root[0].span_id, at_root[1]) == ("root", "root")
    truth = {"t": d.Truth(failed=True, steps=[0], agents={"Planner"}, transcript=TRANSCRIPT)}
    loc = d.score(truth, [d.Verdict("s", "t")], {"t": t})["location"]
    assert loc["hits"] == {"exact_step": 0, "within_1": 0, "agent": 0} and loc["pointed_by"]["root"] == 1


def test_tool_span_agent_is_its_caller():
    t = trace(
        "t",
        span("a2", "assistant", step=2),
        span("t3", "get_order", "TOOL", step=3, call_step=2),
        span("a4", "assistant", step=4),
        span("t5", "refund", "TOOL", step=5, call_step=4),
    )
    spans = {s.span_id: s for s in t.data.spans}
    assert d.span_agent(t, spans["t5"]) == "assistant"
    assert d.span_step(spans["t5"]) == 5 and d.span_step(spans["root"]) is None
    assert d.span_agent(t, spans["root"]) is None
    orphan = group_chat("g")
    assert d.span_agent(orphan, next(s for s in orphan.data.spans if s.span_id == "x3")) == "Coder"


def test_truth_from_a_conversation():
    conv = Conversation(
        format="tau-bench", source_id="task 1", turns=(
            Turn(step=1, role="system", content="policy"),
            Turn(step=2, role="user", content="return my order"),
            Turn(step=3, role="assistant", content=None),
            Turn(step=4, role="tool", content="Error: no such order"),
            Turn(step=5, role="assistant", content="done"),
        ),
        labels=Labels(
            outcome=OutcomeLabel(passed=False),
            failures=(StepLabel(step=2, category="Underspecified User Intent", reason="vague", agent="User"),
                      StepLabel(step=4, category="Invalid Invocation", reason="wrong id", agent="Assistant")),
        ),
    )
    truth = d.Truth.from_conversation(conv)
    assert truth.failed is True and truth.steps == [2, 4] and truth.agents == {"User", "Assistant"}
    assert truth.categories == {"Underspecified User Intent", "Invalid Invocation"}
    assert truth.transcript == {2: "user", 3: "assistant", 4: "assistant", 5: "assistant"}  # no system prompt
    assert d.chance_agent(truth) == 1.0 and d.chance_exact(truth) == 0.5
    assert d.Truth.from_conversation(conv.without_labels()).failed is None


def test_verdicts_read_the_span_from_this_runs_assessment():
    def assessment(run_id, created, span_id, rationale):
        return SimpleNamespace(
            name="ran_ok", source=SimpleNamespace(source_type="CODE"), run_id=run_id, create_time_ms=created,
            rationale=rationale, metadata={d.META_SPAN_ID: span_id, d.META_SPAN_NAME: "x"},
        )

    t = group_chat("t")
    human = SimpleNamespace(name="ran_ok", source=SimpleNamespace(source_type="HUMAN"), run_id="now", create_time_ms=9, rationale="", metadata={})
    t.info.assessments = [assessment("now", 1, "x3", "this run"), assessment("validation", 5, "k4", "earlier run"), human]
    [v] = d.failing_verdicts({"run_id": "now", "per_trace": {"ran_ok": {"t": "fail", "u": "pass"}}}, {"t": t})
    assert (v.scorer, v.trace_id, v.span_id, v.span_name, v.rationale) == ("ran_ok", "t", "x3", "x", "this run")
    [latest] = d.failing_verdicts({"per_trace": {"ran_ok": {"t": "fail"}}}, {"t": t})
    assert latest.span_id == "k4"
    [bare] = d.failing_verdicts({"per_trace": {"ran_ok": {"missing": "fail"}}}, {})
    assert bare.span_id is None and bare.rationale == ""

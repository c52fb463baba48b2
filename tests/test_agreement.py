"""Agreement of a scorer with people (issue 15): the statistics against hand-computed values, the
tiers at their documented thresholds, annotators, and the evidence fallback."""

from __future__ import annotations

import pytest

from mlflow_eval_agent.suite.agreement import (
    GATE_MIN_LABELS,
    Confusion,
    annotator_agreement,
    bootstrap,
    cohen_kappa,
    confusion,
    matthews,
    measure_agreement,
)


def _outcomes_and_labels(tp: int, fp: int, fn: int, tn: int) -> tuple[dict[str, str], dict[str, dict[str, bool]]]:
    """Scorer outcomes and one annotator's labels with exactly this confusion matrix."""
    outcomes, labels, i = {}, {}, 0
    for count, scorer, label_passed in ((tp, "fail", False), (fp, "fail", True), (fn, "pass", False), (tn, "pass", True)):
        for _ in range(count):
            outcomes[f"t{i:03d}"] = scorer
            labels[f"t{i:03d}"] = {"ann": label_passed}
            i += 1
    return outcomes, labels


def test_kappa_and_mcc_match_hand_computed_values():
    c = Confusion(tp=20, fp=5, fn=10, tn=65)
    # observed 0.85, chance (25*30 + 75*70) / 100^2 = 0.6 -> (0.85 - 0.6) / 0.4
    assert cohen_kappa(c) == pytest.approx(0.625)
    assert matthews(c) == pytest.approx(1250 / (25 * 30 * 70 * 75) ** 0.5)
    assert cohen_kappa(Confusion(tn=5)) is None and matthews(Confusion(tn=5)) is None
    assert cohen_kappa(Confusion(tp=3, tn=4)) == 1.0 and matthews(Confusion(fp=3, fn=4)) == -1.0


def test_known_confusion_matrix_is_recovered_with_disagreements_listed():
    outcomes, labels = _outcomes_and_labels(tp=20, fp=5, fn=10, tn=65)
    a = measure_agreement("groundedness", outcomes, human=labels)
    assert a.labels_from == "human" and a.n == 100
    assert (a.confusion.tp, a.confusion.fp, a.confusion.fn, a.confusion.tn) == (20, 5, 10, 65)
    assert a.precision == 0.8 and a.recall == pytest.approx(0.6667, abs=1e-4) and a.kappa == 0.625
    assert len(a.false_accepts) == 10 and len(a.false_rejects) == 5
    assert all(outcomes[t] == "pass" and not labels[t]["ann"] for t in a.false_accepts)
    assert a.kappa_ci.low < 0.625 < a.kappa_ci.high and a.mcc_ci.low < a.mcc < a.mcc_ci.high
    # kappa 0.625 >= 0.6 with its interval's lower bound (~0.43) above 0.4 at n=100: gate
    assert a.tier == "gate" and "interval from 0.4" in a.reason
    # the same rates on a fifth of the traces: the interval widens below 0.4, so monitor
    small, small_labels = _outcomes_and_labels(tp=4, fp=1, fn=2, tn=13)
    s = measure_agreement("groundedness", small, human=small_labels)
    assert s.kappa == pytest.approx(a.kappa, abs=0.01) and s.kappa_ci.low < 0.4 and s.tier == "monitor" and "interval reaches" in s.reason


def test_tiers_at_their_thresholds():
    strong, strong_labels = _outcomes_and_labels(tp=30, fp=2, fn=2, tn=66)
    assert measure_agreement("j", strong, human=strong_labels).tier == "gate"
    few, few_labels = _outcomes_and_labels(tp=3, fp=0, fn=0, tn=GATE_MIN_LABELS - 4)
    a = measure_agreement("j", few, human=few_labels)
    assert a.tier == "monitor" and f"gate needs {GATE_MIN_LABELS}" in a.reason
    weak, weak_labels = _outcomes_and_labels(tp=10, fp=20, fn=20, tn=50)  # kappa ~0.17
    w = measure_agreement("j", weak, human=weak_labels)
    assert w.kappa < 0.2 and w.tier == "explore"
    middling, middling_labels = _outcomes_and_labels(tp=10, fp=8, fn=8, tn=24)  # kappa ~0.3
    assert measure_agreement("j", middling, human=middling_labels).tier == "monitor"


def test_evidence_is_the_fallback_and_deterministic_checks_gate_only_when_exact():
    outcomes = {"f1": "fail", "f2": "fail", "p1": "pass", "p2": "pass", "p3": "pass"}
    exact = measure_agreement("no_errors", outcomes, must_fail=["f1", "f2"], must_pass=["p1", "p2", "p3"], deterministic=True)
    assert exact.labels_from == "evidence" and exact.tier == "gate" and exact.kappa == 1.0
    off = measure_agreement("no_errors", {**outcomes, "p3": "fail"}, must_fail=["f1", "f2"], must_pass=["p1", "p2", "p3"], deterministic=True)
    assert off.tier == "explore" and off.false_rejects == ["p3"]
    # a judge measured on evidence only can never gate, however well it does
    judge = measure_agreement("relevance", outcomes, must_fail=["f1", "f2"], must_pass=["p1", "p2", "p3"])
    assert judge.tier == "monitor" and "no human labels" in judge.reason
    # human labels take precedence over evidence
    human = measure_agreement("no_errors", outcomes, human={"p1": {"ann": False}}, must_fail=["f1"], deterministic=True)
    assert human.labels_from == "human" and human.n == 1 and human.false_accepts == ["p1"]


def test_nothing_to_measure_and_not_run_are_explore():
    assert measure_agreement("x", {"a": "pass"}).tier == "explore"
    assert measure_agreement("x", {}, human={"a": {"ann": True}}, measured=False).tier == "explore"
    none_judged = measure_agreement("x", {"a": "error"}, human={"a": {"ann": True}})
    assert none_judged.tier == "explore" and none_judged.n == 0
    one_class = measure_agreement("x", {"a": "pass", "b": "pass"}, human={"a": {"ann": True}, "b": {"ann": True}})
    assert one_class.kappa is None and one_class.tier == "monitor" and "undefined" in one_class.reason


def test_annotators_majority_ties_and_pairwise_kappa():
    labels = {
        "t1": {"ana": True, "ben": True, "cai": False},  # majority pass
        "t2": {"ana": False, "ben": False},
        "t3": {"ana": True, "ben": False},  # a tie: left out of the scorer's agreement
        "t4": {"ana": True, "ben": True},
        "t5": {"cai": False},
    }
    people = annotator_agreement(labels)
    assert people.annotators == 3 and people.shared_traces == 4 and people.ties == 1
    assert people.pairs == 1  # cai shares one trace with each: not enough for a pair
    # ana vs ben over t1..t4: agree 3 of 4
    assert people.agreement == 0.75 and people.kappa == pytest.approx(cohen_kappa(confusion([(False, False), (True, True), (False, True), (False, False)])), abs=1e-4)
    a = measure_agreement("x", {"t1": "pass", "t2": "fail", "t3": "fail", "t4": "pass", "t5": "fail"}, human=labels)
    assert a.n == 4 and a.annotators.annotators == 3 and a.kappa == 1.0


def test_bootstrap_is_reproducible_and_undefined_for_tiny_samples():
    pairs = [(True, True), (False, False), (True, False), (False, False), (True, True), (False, True)] * 5
    assert bootstrap(pairs, cohen_kappa, 7) == bootstrap(pairs, cohen_kappa, 7)
    assert bootstrap([(True, True)], cohen_kappa, 7) is None

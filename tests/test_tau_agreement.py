"""Agreement against real people's labels (issue 15, item 5): a few tau-bench retail runs imported with
`import --with-labels` carry their outcome as HUMAN feedback `human_outcome`; a suite scorer of that
name is measured against exactly those assessments (not its evidence) when the suite is validated."""

from __future__ import annotations

import json
import time

import mlflow

from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.suite.agreement import confusion
from mlflow_eval_agent.suite.dataset import build_dataset
from mlflow_eval_agent.suite.render import render_suite
from mlflow_eval_agent.suite.spec import SuiteSpec, parse_scorer
from mlflow_eval_agent.suite.validate import validate_suite
from tests.test_import_support import TAU_LABELS, TAU_RUNS, needs_corpora

RUNS = 8  # tasks 0-7 of the corpus: 5 passed, 3 failed (reward)


@needs_corpora
def test_agreement_is_measured_against_the_imported_human_labels(tracking_uri, tmp_path, capsys):
    from mlflow_eval_agent.cli import main

    started = time.monotonic()
    runs = json.loads(TAU_RUNS.read_text(encoding="utf-8"))[:RUNS]
    subset = tmp_path / "tau_subset.json"
    subset.write_text(json.dumps(runs), encoding="utf-8")
    code = main(["import", str(subset), "--format", "tau-bench", "-e", "tau-retail", "--with-labels", "--labels", str(TAU_LABELS),
                 "--tracking-uri", tracking_uri])
    assert code == 0, capsys.readouterr()
    experiment_id = mlflow.get_experiment_by_name("tau-retail").experiment_id
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list", max_results=100)
    # the people's verdicts, read straight from the store: HUMAN feedback human_outcome per trace
    people = {t.info.trace_id: a.feedback.value for t in traces for a in t.info.assessments or []
              if a.name == "human_outcome" and a.source.source_type == "HUMAN"}
    assert len(people) == RUNS and sorted(people.values()) == sorted(r["reward"] == 1.0 for r in runs)

    dataset, _ = build_dataset("tau", experiment_id, [(t, "normal") for t in sorted(people)])
    spec = SuiteSpec(experiment_id=experiment_id, dataset=dataset, scorers=[
        parse_scorer({"kind": "check", "name": "human_outcome", "check": "no_unrecovered_errors",
                      "why": "a run that ends on an error it never recovered from failed the customer"}),
    ])
    store = open_session_store(str(tmp_path / "sessions"), "tau")
    render_suite(spec, store)
    report = validate_suite(spec, store, tracking_uri, timeout_s=300)
    run = report.latest
    assert run.ok, run.error
    a = run.scorers["human_outcome"].agreement
    outcomes = json.loads(store.read_text("state/run_results.json"))["per_trace"]["human_outcome"]
    judged = sorted(t for t in (r.trace_id for r in dataset.records) if outcomes.get(t) in ("pass", "fail"))
    expected = confusion([(outcomes[t] == "fail", not people[t]) for t in judged])
    assert a.labels_from == "human" and a.n == len(judged) == len(dataset.records), a
    assert a.confusion == expected and a.confusion.tp + a.confusion.fn == sum(1 for t in judged if not people[t])
    assert set(a.false_accepts) == {t for t in judged if not people[t] and outcomes[t] == "pass"}
    assert a.annotators.annotators == 1 and a.tier in ("gate", "monitor", "explore") and a.reason
    assert json.loads(store.read_text("evaluation/tiers.json"))["tiers"]["human_outcome"]["labels_from"] == "human"
    print(f"tau-retail agreement test: {time.monotonic() - started:.1f} s, {a.line()}")

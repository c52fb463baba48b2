"""`monitor run` (issue 15): a session's suite on an experiment's traces since the last run, with a
watermark in the session's state that moves only after a run that produced verdicts. Real runs of the
rendered suite (the product's least-privilege child) on a local sqlite tracking store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest

from mlflow_eval_agent.cli import main
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.store.session_meta import remember_session
from mlflow_eval_agent.suite.render import render_suite
from mlflow_eval_agent.suite.scheduled_run import MONITOR_RESULTS_FILE, MONITOR_RUNS_FILE, load_state, plan_window, window_filter
from mlflow_eval_agent.suite.spec import SPEC_FILE, DatasetRecord, DatasetSpec, SuiteSpec, parse_scorer
from tests.suite_helpers import local_store

ANSWERED = {"op": "trace", "where": [{"field": "outputs", "path": "content", "test": "empty"}]}
SESSION = "watch"
HOUR_MS = 3_600_000


def log_trace(experiment_id: str, answer: str, at_ms: int | None = None) -> str:
    """One trace with a question and an answer, started at `at_ms` (default: now)."""
    start = (at_ms if at_ms is not None else int(time.time() * 1000)) * 1_000_000
    span = mlflow.start_span_no_context("agent", experiment_id=experiment_id, inputs={"question": "where is my order?"}, start_time_ns=start)
    span.set_outputs({"content": answer})
    span.end(end_time_ns=start + 5_000_000)
    return span.trace_id


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A session whose suite (one code check: the answer is not empty, threshold 100%) was built on a
    trace three days old, so the default first window (24 h) does not hold it."""
    folder = tmp_path_factory.mktemp("monitor-run")
    with local_store(folder) as uri:
        experiment_id = mlflow.create_experiment("production")
        built_on = log_trace(experiment_id, "It ships tomorrow.", at_ms=int(time.time() * 1000) - 72 * HOUR_MS)
        dataset = DatasetSpec(name="watch", experiment_id=experiment_id,
                              records=[DatasetRecord(trace_id=built_on, stratum="normal", inputs={"question": "where is my order?"})])
        scorer = parse_scorer({"kind": "check", "name": "answered", "fail_when": ANSWERED, "threshold": 1.0, "why": "empty answers were seen"})
        spec = SuiteSpec(experiment_id=experiment_id, dataset=dataset, scorers=[scorer])
        root = folder / "sessions-root"
        store = open_session_store(str(root), SESSION)
        store.write_model(SPEC_FILE, spec)
        render_suite(spec, store)
        remember_session(store, uri, experiment_id)
        yield {"uri": uri, "experiment_id": experiment_id, "root": root, "store": store, "built_on": built_on}


def monitor_run(session, capsys, *extra: str) -> tuple[int, str]:
    code = main(["monitor", "run", "--session-id", SESSION, "--volume-path", str(session["root"]), "--settle-minutes", "0", *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def scored(session) -> set[str]:
    """The traces the last run of the suite gave a verdict (from its results in the session)."""
    results = json.loads(session["store"].read_text(MONITOR_RESULTS_FILE))
    return set(results["per_trace"]["answered"])


def test_each_run_scores_only_the_traces_since_the_last_one_and_a_failed_run_moves_nothing(session, capsys):
    experiment_id, store = session["experiment_id"], session["store"]
    earlier = [log_trace(experiment_id, f"It ships on day {i}.", at_ms=int(time.time() * 1000) - 2 * HOUR_MS + i) for i in range(3)]

    code, out = monitor_run(session, capsys)
    assert code == 0, out
    assert scored(session) == set(earlier)  # not the three-day-old trace the suite was built on
    assert f"3 traces in experiment {experiment_id} since" in out and "Gate PASS" in out and "Watermark moved to" in out
    first = load_state(store)
    mark = first.watermarks[experiment_id].timestamp_ms
    assert mark > max(mlflow.get_trace(t).info.timestamp_ms for t in earlier)
    assert first.runs[-1].run_id and first.runs[-1].traces == 3 and first.runs[-1].advanced

    time.sleep(0.01)
    later = [log_trace(experiment_id, "It ships tomorrow."), log_trace(experiment_id, "")]  # one empty answer
    code, out = monitor_run(session, capsys)
    assert code == 1, out  # the empty answer fails the gate (threshold 100%) ...
    assert scored(session) == set(later), "the second run scores only the traces logged after the first"
    assert "2 traces in experiment" in out and "Gate FAIL" in out
    second = load_state(store)
    assert second.watermarks[experiment_id].timestamp_ms > mark  # ... and the window was scored: it moves on
    assert [r.gate for r in second.runs] == ["PASS", "FAIL"]
    mark = second.watermarks[experiment_id].timestamp_ms

    code, out = monitor_run(session, capsys)
    assert code == 0 and "nothing to score" in out
    assert load_state(store).watermarks[experiment_id].timestamp_ms >= mark  # an empty window is done too
    mark = load_state(store).watermarks[experiment_id].timestamp_ms

    time.sleep(0.01)
    third = [log_trace(experiment_id, "It ships today.")]
    scorers_py = store.read_text("evaluation/scorers.py")
    store.write_text("evaluation/scorers.py", "raise RuntimeError('broken on purpose')\n")
    try:
        code, out = monitor_run(session, capsys)
    finally:
        store.write_text("evaluation/scorers.py", scorers_py)
    assert code == 1 and "broken on purpose" in out and "Watermark unchanged" in out
    failed = load_state(store)
    assert failed.watermarks[experiment_id].timestamp_ms == mark and not failed.runs[-1].advanced and not failed.runs[-1].ok

    code, out = monitor_run(session, capsys)
    assert code == 0, out
    assert scored(session) == set(third), "the failed run's window is scored again, not skipped"
    assert load_state(store).watermarks[experiment_id].timestamp_ms > mark
    assert json.loads(store.read_text(MONITOR_RUNS_FILE))["runs"][-1]["traces"] == 1


def test_usage_mistakes_exit_2(session, capsys):
    code, out = monitor_run(session, capsys, "--since", "last tuesday")
    assert code == 2 and "--since 'last tuesday' is not understood" in out
    code, out = monitor_run(session, capsys, "--experiment-id", "no-such-experiment")
    assert code == 2 and "no-such-experiment" in out
    code = main(["monitor", "run", "--session-id", "nobody", "--volume-path", str(session["root"])])
    assert code == 2


def test_a_backlog_is_worked_off_in_windows_that_never_split_a_millisecond(session):
    from mlflow_eval_agent.traces.source import mlflow_client

    experiment_id = mlflow.create_experiment("backlog")
    t = 1_700_000_000_000
    for offset in (0, 1, 1, 2, 3):
        log_trace(experiment_id, "fine", at_ms=t + offset)
    client = mlflow_client(session["uri"])
    first = plan_window(client, experiment_id, t - 1, t + 10, max_traces=2)
    assert (first.end_ms, first.traces, first.more_waiting) == (t, 1, True)  # t+1 has two traces: both wait
    second = plan_window(client, experiment_id, first.end_ms, t + 10, max_traces=2)
    assert (second.end_ms, second.traces, second.more_waiting) == (t + 1, 2, True)
    third = plan_window(client, experiment_id, second.end_ms, t + 10, max_traces=2)
    assert (third.end_ms, third.traces, third.more_waiting) == (t + 10, 2, False)
    found = mlflow.search_traces(locations=[experiment_id], filter_string=window_filter(first.end_ms, second.end_ms), return_type="list")
    assert len(found) == 2
    crowded = plan_window(client, experiment_id, t, t + 10, max_traces=1)  # two traces in the millisecond t+1
    assert crowded.traces == 1 and crowded.end_ms == t + 1 and "same millisecond" in (crowded.note or "")

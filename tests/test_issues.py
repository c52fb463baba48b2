"""MLflow Issues for the suite's failure patterns: created when a check first fails, kept current by
later runs (last seen, resolved with a note, reopened), linked to the failing traces; nothing at all
on an MLflow without the Issues API (3.17). The API is faked here (the lock has MLflow 3.17); the
calls follow MLflow 3.18's `mlflow.genai.create_issue` / `update_issue` and `mlflow.log_issue`."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import mlflow.genai
import pytest

from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.suite.issues import ISSUES_FILE, issues_api, record_issues
from mlflow_eval_agent.suite.spec import DatasetRecord, DatasetSpec, SuiteSpec, parse_scorer
from mlflow_eval_agent.traces.profile_model import ErrorSignature, ProfileSource, TraceProfile


class FakeIssues:
    def __init__(self):
        self.issues: dict[str, dict] = {}
        self.links: list[dict] = []

    def create_issue(self, name, *, severity, description, status, categories=None, last_seen_timestamp=None, source_run_id=None,
                     metadata=None, issue_id=None, experiment_id=None):
        issue_id = f"iss-{len(self.issues) + 1}"
        self.issues[issue_id] = {"name": name, "severity": str(severity), "description": description, "status": str(status),
                                 "categories": [str(c) for c in categories or []], "last_seen": last_seen_timestamp,
                                 "source_run_id": source_run_id, "metadata": metadata, "experiment_id": experiment_id, "updates": 0}
        return SimpleNamespace(issue_id=issue_id, name=name)

    def update_issue(self, issue_id, *, status=None, description=None, severity=None, last_seen_timestamp=None, experiment_id=None, **_):
        issue = self.issues[issue_id]
        issue["updates"] += 1
        for key, value in (("status", status), ("description", description), ("severity", severity), ("last_seen", last_seen_timestamp)):
            if value is not None:
                issue[key] = str(value) if key in ("status", "severity") else value
        return SimpleNamespace(issue_id=issue_id)

    def log_issue(self, **kwargs):
        self.links.append(kwargs)


@pytest.fixture
def fake(monkeypatch):
    api = FakeIssues()
    monkeypatch.setattr(mlflow.genai, "create_issue", api.create_issue, raising=False)
    monkeypatch.setattr(mlflow.genai, "update_issue", api.update_issue, raising=False)
    monkeypatch.setattr(mlflow, "log_issue", api.log_issue, raising=False)
    return api


def suite() -> SuiteSpec:
    records = [DatasetRecord(trace_id=f"t{i}", stratum="all") for i in range(10)]
    scorers = [
        parse_scorer({"kind": "check", "name": "no_timeouts", "check": "no_exception", "params": {"span_name": "get_order", "exception_type": "TimeoutError"},
                      "why": "Error signature TimeoutError in tool get_order. It happens.", "threshold": 0.8}),
        parse_scorer({"kind": "check", "name": "answered", "check": "output_non_empty", "why": "Some answers are empty, which fails users."}),
        parse_scorer({"kind": "builtin", "name": "safety", "builtin": "Safety", "why": "A judge: no issue of its own."}),
    ]
    return SuiteSpec(experiment_id="7", dataset=DatasetSpec(name="d", experiment_id="7", records=records), scorers=scorers)


def profile() -> TraceProfile:
    sig = ErrorSignature(id="s", signature="TimeoutError: timed out", exception_type="TimeoutError", span_name="get_order", count=9,
                         trace_count=9, trace_ids=[], example_message="")
    return TraceProfile(experiment_id="7", generated_at="x", source=ProfileSource(path="sql"), trace_count=60, error_signatures=[sig])


def results(fails: dict[str, list[str]]) -> dict:
    return {"per_trace": {name: {f"t{i}": ("fail" if f"t{i}" in fails.get(name, []) else "pass") for i in range(10)} for name in ("no_timeouts", "answered", "safety")}}


def test_a_failure_pattern_becomes_an_issue_that_later_runs_keep_current(fake, tmp_path):
    assert issues_api() is mlflow.genai
    store, spec = open_session_store(str(tmp_path), "s1"), suite()
    assert record_issues(store, "sqlite:///x.db", spec, "run-1", results({"no_timeouts": ["t1", "t2"]}), profile()) == []
    [(issue_id, issue)] = fake.issues.items()
    assert issue["name"].startswith("no_timeouts: Error signature TimeoutError in tool get_order")
    assert issue["severity"] == "high", "9 of the profile's 60 traces (15%)"
    assert issue["categories"] == ["execution"] and issue["status"] == "pending" and issue["source_run_id"] == "run-1"
    assert issue["metadata"] == {"eval_agent.scorer": "no_timeouts", "eval_agent.suite": "eval-agent-s1", "eval_agent.session_id": "s1"}
    assert "Watched by the check `no_timeouts`" in issue["description"] and issue["experiment_id"] == "7"
    assert [(link["trace_id"], link["issue_id"], link["run_id"]) for link in fake.links] == [("t1", issue_id, "run-1"), ("t2", issue_id, "run-1")]
    assert str(fake.links[0]["source"].source_type) in ("CODE", "AssessmentSourceType.CODE")

    # Seen again: last seen moves on, one new trace is linked (not the old ones twice), no second issue.
    first_seen = issue["last_seen"]
    record_issues(store, "sqlite:///x.db", spec, "run-2", results({"no_timeouts": ["t2", "t3"]}), profile())
    assert len(fake.issues) == 1 and issue["updates"] == 1 and issue["last_seen"] >= first_seen
    assert [link["trace_id"] for link in fake.links] == ["t1", "t2", "t3"]
    # Gone: resolved with a note.
    record_issues(store, "sqlite:///x.db", spec, "run-3", results({}), profile())
    assert issue["status"] == "resolved" and "Resolved: no_timeouts passed on all 10 traces of run run-3." in issue["description"]
    # Back: reopened.
    record_issues(store, "sqlite:///x.db", spec, "run-4", results({"no_timeouts": ["t9"]}), profile())
    assert issue["status"] == "pending" and "Reopened: no_timeouts failed 1 trace(s) in run run-4." in issue["description"]
    assert store.read_json(ISSUES_FILE)["issues"]["no_timeouts"]["issue_id"] == issue_id

    # The empty-answer pattern: no profile count for it here, so the run's own share decides (1 of 10: high).
    record_issues(store, "sqlite:///x.db", spec, "run-5", results({"answered": ["t4"]}))
    answered = next(i for i in fake.issues.values() if i["name"].startswith("answered"))
    assert answered["severity"] == "high" and answered["categories"] == ["correctness"]
    assert not any(i["name"].startswith("safety") for i in fake.issues.values()), "judges are not failure patterns"


def test_an_issue_that_cannot_be_written_is_a_note_not_a_crash(fake, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("issues are not enabled on this server")

    monkeypatch.setattr(mlflow.genai, "create_issue", refuse)
    notes = record_issues(open_session_store(str(tmp_path), "s2"), "sqlite:///x.db", suite(), "run-1", results({"no_timeouts": ["t1"]}), profile())
    assert notes == ["could not record the issue of no_timeouts (RuntimeError: issues are not enabled on this server)"]


def test_without_the_issues_api_nothing_happens(tmp_path, monkeypatch):
    monkeypatch.delattr(mlflow.genai, "create_issue", raising=False)
    store = open_session_store(str(tmp_path), "s3")
    assert issues_api() is None
    assert record_issues(store, "sqlite:///x.db", suite(), "run-1", results({"no_timeouts": ["t1"]}), profile()) == []
    assert not store.exists(ISSUES_FILE)

"""What the parent records on a suite's evaluation run after the child finished it.

`run_eval.py` names and tags its own run (suite, session, gate, thresholds, judge model, the dataset
as input, run_results.json and the suite folder). Only the parent knows which run is the session's
baseline and has the report built from the run's results, so it adds those two here. Failures are
returned as sentences, never raised: the run's verdicts stand whether or not a tag could be set.
"""

from __future__ import annotations

from pathlib import Path

TAG_PREFIX = "eval_agent."
BASELINE_TAG = TAG_PREFIX + "baseline"
GATE_TAG = TAG_PREFIX + "gate"
SESSION_TAG = TAG_PREFIX + "session_id"
SUITE_TAG = TAG_PREFIX + "suite"


def _client(tracking_uri: str):  # noqa: ANN202 - MlflowClient, imported lazily
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def mark_baseline(tracking_uri: str, run_id: str, previous_run_id: str | None = None) -> str | None:
    """Tag `run_id` as the session's baseline and untag the run that was; a problem as a sentence."""
    try:
        client = _client(tracking_uri)
        client.set_tag(run_id, BASELINE_TAG, "true")
        if previous_run_id and previous_run_id != run_id:
            try:
                client.delete_tag(previous_run_id, BASELINE_TAG)
            except Exception:  # the old run was deleted, or never had the tag
                pass
    except Exception as exc:
        return f"could not tag evaluation run {run_id} as the baseline ({_one_line(exc)})"
    return None


def log_report(tracking_uri: str, run_id: str, path: Path) -> str | None:
    """Attach report.html to the evaluation run; a problem as a sentence."""
    try:
        _client(tracking_uri).log_artifact(run_id, str(path))
    except Exception as exc:
        return f"could not attach {path.name} to evaluation run {run_id} ({_one_line(exc)})"
    return None


def _one_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())[:300]

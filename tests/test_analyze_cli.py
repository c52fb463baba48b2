"""`analyze`: tables or exactly one JSON document, and one-line errors with the right exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlflow_eval_agent.cli import main
from tests.conftest import REPO_ROOT
from tests.fakes.profile_fixtures import SeededStore, free_port



def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["analyze", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_one_document_with_the_exact_profile(capsys, seeded_store: SeededStore):
    code, out, _ = run(capsys, "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri, "--json")
    assert code == 0
    doc = json.loads(out)  # the whole of stdout is one JSON document
    assert doc["schema_version"] == 1 and doc["trace_count"] == 200
    for field in ("status_counts", "latency_ms", "spans", "error_signatures", "hidden_failures", "tools", "tokens"):
        assert field in doc
    assert doc["hidden_failures"]["count"] == 15


def test_tables_show_the_findings(capsys, seeded_store: SeededStore, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run(capsys, "-e", "support-agent", "--tracking-uri", seeded_store.uri)
    assert code == 0
    for text in ("200 traces", "Error signatures", "TimeoutError: timed out after <N>s for order <N>", "lookup_order", "Hidden failures: 15", "gpt-4o-mini", "Existing assessments"):
        assert text in out, text


def test_filter_since_and_limit(capsys, seeded_store: SeededStore):
    code, out, _ = run(capsys, "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri, "--json", "--filter", "attributes.status = 'ERROR'")
    assert code == 0 and json.loads(out)["status_counts"] == {"ERROR": 8}
    code, out, _ = run(capsys, "-e", seeded_store.support_id, "--tracking-uri", seeded_store.uri, "--json", "--max-traces", "10", "--since", "2026-01-01")
    doc = json.loads(out)
    assert code == 0 and doc["trace_count"] == 10 and doc["source"]["truncated"] is True


def test_settings_come_from_the_environment(capsys, seeded_store: SeededStore, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", seeded_store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", seeded_store.odd_id)
    code, out, _ = run(capsys, "--json")
    assert code == 0 and json.loads(out)["trace_count"] == 3


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["-e", "no-such-experiment"], 2, "was not found"),
        (["-e", "999999"], 2, "was not found"),
        (["-e", "empty"], 2, "has no traces"),
        (["-e", "support-agent", "--filter", "attributes.nonsense = 'x'"], 2, "MLflow rejected the query"),
        (["-e", "support-agent", "--filter", "this is not a filter"], 2, "MLflow rejected the query"),
        (["-e", "support-agent", "--since", "last tuesday"], 2, "--since"),
        (["-e", "support-agent", "--since", "2030-01-01"], 2, "has no traces matching"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, seeded_store: SeededStore, args, code, words):
    got, out, err = run(capsys, *args, "--tracking-uri", seeded_store.uri, "--json")
    assert (got, out) == (code, "")
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err


def test_missing_experiment_is_a_usage_error(capsys, seeded_store: SeededStore, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    code, _, err = run(capsys, "--tracking-uri", seeded_store.uri)
    assert code == 2 and "pass -e/--experiment-id" in err


def test_unreachable_server_is_exit_2_quickly(capsys):
    # A tracking server that is not there is a configuration mistake: exit 2, as the README says.
    code, out, err = run(capsys, "-e", "1", "--tracking-uri", f"http://127.0.0.1:{free_port()}", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("Error: Cannot reach the MLflow tracking server") and len(err.strip().splitlines()) == 1


def test_subprocess_stdout_is_pure_json(seeded_store: SeededStore):
    """As a user runs it: MLflow's own logging must not leak onto stdout."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": seeded_store.uri}
    done = subprocess.run(
        [sys.executable, "-m", "src.cli", "analyze", "-e", "odd-shapes", "--json"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["trace_count"] == 3


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("sqlite:///{tmp}/missing/mlflow.db", "There is no MLflow database"),
        ("bogus://somewhere", "Cannot open the tracking store bogus://somewhere"),
    ],
)
def test_unusable_tracking_uri_is_exit_2_and_creates_nothing(capsys, tmp_path, uri, words):
    code, out, err = run(capsys, "-e", "1", "--tracking-uri", uri.format(tmp=tmp_path), "--json")
    assert (code, out) == (2, "")
    assert err.startswith(f"Error: {words}") and "Traceback" not in err
    assert not (tmp_path / "missing").exists()

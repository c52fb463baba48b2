"""The detection benchmark end to end on a small slice of each public corpus (offline pipeline)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.test_import_support import TAU_RUNS, WHO_AND_WHEN, needs_corpora

pytestmark = [needs_corpora, pytest.mark.slow]


def run_detection(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.detection", *args, "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def assert_consistent(result: dict) -> None:
    tp, flagged, failed = result["true_positives"], result["flagged"], result["failed"]
    assert len(result["flagged_runs"]) == flagged
    assert result["precision"] == (round(tp / flagged, 3) if flagged else None)
    assert result["recall"] == (round(tp / failed, 3) if failed else None)
    assert result["human_labels_in_store"] == 0, "the pipeline's store must never hold the answers"
    assert result["pipeline"]["exit_code"] == 0, result["pipeline"]
    assert all(s["status"] == "SKIPPED" for s in result["suite_scorers"] if s["name"] in ("relevance_to_query", "safety"))


def test_tau_bench_slice() -> None:
    runs = json.loads(TAU_RUNS.read_text())[:21]
    result = run_detection("--format", "tau-bench", "--data", str(TAU_RUNS), "--limit", "21")
    assert_consistent(result)
    assert result["traces"] == 21
    assert result["failed"] == sum(1 for r in runs if r["reward"] < 1)
    # Run 20 calls exchange_delivered_order_items on a processed order (labelled step 49); the tool's
    # "Error: non-delivered order cannot be exchanged" (step 50) is the signal a model-free suite has.
    assert "task 20 trial 20" in result["flagged_runs"]
    assert result["location"]["runs_hit"] >= 1
    assert "Invalid Invocation" in result["per_category_recall"]


def test_who_and_when_slice() -> None:
    files = sorted(WHO_AND_WHEN.glob("*.json"), key=lambda p: int(p.stem))[:8]
    runs = [json.loads(f.read_text()) for f in files]
    result = run_detection("--format", "who-and-when", "--data", str(WHO_AND_WHEN), "--limit", "8")
    assert_consistent(result)
    assert (result["traces"], result["failed"]) == (8, 8)  # every Who&When run failed
    # Every run whose code executor reported a non-zero exit code is caught (the importer marks those
    # TOOL spans ERROR); the decisive mistakes themselves are reasoning errors the checks cannot read.
    crashed = {
        r["question_ID"] for r in runs
        if any(h.get("name") == "Computer_terminal" and h["content"].startswith("exitcode:") and not h["content"].startswith("exitcode: 0") for h in r["history"])
    }
    assert crashed, "the slice should contain a failed code execution"
    assert crashed <= set(result["flagged_runs"])

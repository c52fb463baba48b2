"""Importer building blocks (tool-error rule, streaming JSON array) and helpers the import tests share."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from mlflow_eval_agent.importers.jsonstream import MalformedStream, iter_json_array
from mlflow_eval_agent.importers.model import ATTR_CALL_STEP, ATTR_STEP
from mlflow_eval_agent.importers.tool_errors import error_description
from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data" / "import"
# CI checks the project out beside ../shared; locally it is /work/shared.
CORPORA = REPO_ROOT.parent / "shared" / "corpora"
TAU_RUNS = CORPORA / "tau-retail" / "tau_dataset_full.json"
TAU_LABELS = CORPORA / "tau-retail" / "tau_ground_truth.json"
WHO_AND_WHEN = CORPORA / "who-and-when" / "algorithm-generated"
WHO_AND_WHEN_HAND = CORPORA / "who-and-when" / "hand-crafted-sample"
MAGENTIC_ONE = CORPORA / "magentic-one-sample"
_ABSENT = f"the public corpora are not at {CORPORA} (they sit in ../shared/corpora beside the checkout)"

needs_corpora = pytest.mark.skipif(not TAU_RUNS.is_file() or not WHO_AND_WHEN.is_dir(), reason=_ABSENT)
needs_hand_crafted = pytest.mark.skipif(not WHO_AND_WHEN_HAND.is_dir(), reason=_ABSENT)
needs_magentic_one = pytest.mark.skipif(not MAGENTIC_ONE.is_dir(), reason=_ABSENT)


# ---- helpers used by the other import tests ----

def traces_of(experiment_id: str) -> list[Any]:
    from mlflow import MlflowClient

    return list(MlflowClient().search_traces(locations=[experiment_id], max_results=1000))


def trace_by_source(experiment_id: str, source_id: str) -> Any:
    from mlflow import MlflowClient

    found = MlflowClient().search_traces(
        locations=[experiment_id], filter_string=f"metadata.`eval_agent.import.source_id` = '{source_id}'"
    )
    assert len(found) == 1, f"expected one trace for {source_id}, found {len(found)}"
    return found[0]


def children(trace: Any) -> list[Any]:
    """Child spans in time order."""
    return sorted((s for s in trace.data.spans if s.parent_id is not None), key=lambda s: s.start_time_ns)


def root_of(trace: Any) -> Any:
    return next(s for s in trace.data.spans if s.parent_id is None)


def span_with_step(trace: Any, step: int) -> Any:
    return next(s for s in children(trace) if s.attributes.get(ATTR_STEP) == step)


def assert_sane_timing(trace: Any) -> None:
    """Children lie inside the root, last a positive time, and follow each other without overlap."""
    root = root_of(trace)
    kids = children(trace)
    assert root.end_time_ns > root.start_time_ns
    previous_end = root.start_time_ns
    for span in kids:
        assert span.end_time_ns > span.start_time_ns, span.name
        assert span.start_time_ns >= previous_end, f"{span.name} starts before the span before it ends"
        previous_end = span.end_time_ns
    assert previous_end <= root.end_time_ns
    # A tool span sits right after the model turn that called it (its call step).
    steps = [s.attributes.get(ATTR_CALL_STEP, s.attributes.get(ATTR_STEP)) for s in kids]
    assert steps == sorted(steps), "spans are not in transcript order"


def human_assessments(trace: Any) -> list[Any]:
    return [a for a in trace.info.assessments or [] if a.source.source_type == "HUMAN"]


# ---- the tool-error rule ----

@pytest.mark.parametrize(
    "result, description",
    [
        ("Error: non-delivered order cannot be exchanged", "Error: non-delivered order cannot be exchanged"),
        ("KeyError: 'order_id'\nmore detail", "KeyError: 'order_id'"),
        ("Traceback (most recent call last):\n  File ...", "Traceback (most recent call last):"),
        ("exitcode: 1 (execution failed)\nCode output: NameError", "exitcode: 1 (execution failed)"),
        ('{"error": "rate limited", "retry": 3}', "error: rate limited"),
        ("exitcode: 0 (execution succeeded)\nCode output: Error: nothing", None),
        ('{"order_id": "#W1", "status": "error-free"}', None),
        ("The error rate is 3%", None),
        ("", None),
        (None, None),
        ("yusuf_rossi_9620", None),
        # Exit codes reported anywhere a code executor puts them, in the usual phrasings.
        ("The script ran, then exited with an error (POSIX exit code: 1)\nIts output was:\nNameError: x",
         "The script ran, then exited with an error (POSIX exit code: 1)"),
        ("The script ran, then exited with Unix exit code: 0\nIts output was:\nError: in the data", None),
        ("The script ran but produced no output to console. The POSIX exit code was: 2. If you were expecting output, print it.",
         "The script ran but produced no output to console. The POSIX exit code was: 2. If you were expecting output, print it."),
        ("Exit code: 127\nWall time: 0.1 seconds\nOutput:\nbash: foo: command not found", "Exit code: 127"),
        ("Exit code 2", "Exit code 2"),
        ("building...\ncompiling 3 files\nProcess finished with exit code 1", "Process finished with exit code 1"),
        ("tests ran\n[Process exited with code -9]", "[Process exited with code -9]"),
        ("Command 'make' returned non-zero exit status 2.", "Command 'make' returned non-zero exit status 2."),
        ("Process finished with exit code 0", None),
        ('{"stdout": "", "stderr": "boom", "exit_code": 3}', "exit code 3"),
        ('{"stdout": "ok", "exit_code": 0}', None),
        # Prose that merely mentions exit codes is not a failed run.
        ("An exit code of 1 means a general error; exit code 2 means misuse.", None),
        ("Exit code 1 means the command failed.", None),
        ("Title: Bash exit codes\n" + "Some introduction.\n" * 5 + "The job exited with code 1 when the disk was full.\n" + "More text.\n" * 5, None),
        ("A " + "very " * 60 + "long line: the process exited with code 1.", None),
    ],
)
def test_error_rule(result: str | None, description: str | None) -> None:
    assert error_description(result) == description


# ---- the streaming JSON array reader ----

def test_stream_matches_json_loads_across_tiny_chunks() -> None:
    values = [{"a": [1, 2, {"b": "x]y,z"}]}, 12345, -0.5e3, "str\"ing", None, True, [], {}, 987654321]
    text = json.dumps(values, indent=2)
    for chunk in (1, 3, 7, 64):
        assert list(iter_json_array(io.StringIO(text), chunk_chars=chunk)) == values


def test_stream_empty_array_and_errors() -> None:
    assert list(iter_json_array(io.StringIO("  [ ]  "))) == []
    with pytest.raises(MalformedStream, match="not a JSON array"):
        list(iter_json_array(io.StringIO('{"a": 1}')))
    stream = iter_json_array(io.StringIO('[{"a": 1}, {"b": oops}, {"c": 3}]'), chunk_chars=4)
    assert next(stream) == {"a": 1}
    with pytest.raises(MalformedStream) as caught:
        next(stream)
    assert caught.value.element == 1
    with pytest.raises(MalformedStream, match="ends inside the array|not valid JSON|expected"):
        list(iter_json_array(io.StringIO('[{"a": 1}, {"b": 2}')))


def test_stream_memory_stays_near_one_element(tmp_path: Path) -> None:
    element = {"traj": [{"role": "user", "content": "x" * 2000, "index": i} for i in range(10)]}
    path = tmp_path / "big.json"
    with path.open("w") as out:
        out.write("[")
        out.write(",".join(json.dumps(element) for _ in range(400)))
        out.write("]")
    size = path.stat().st_size
    assert size > 7_000_000
    tracemalloc.start()
    try:
        with path.open() as stream:
            count = sum(1 for _ in iter_json_array(stream, chunk_chars=1 << 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 400
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file: the array was not streamed"

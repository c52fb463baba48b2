"""Session-scoped stores for the profile tests (loaded with `pytest_plugins`), built once per run.

- `seeded_store`: a sqlite store with the known-truth support experiment (200 traces), its
  assessments, and an "odd" experiment (a 3,000-span trace, spans without a root, an empty trace).
- `mlflow_server`: one real `mlflow server` on 127.0.0.1 over a copy of that store (starting it
  takes seconds, so every test that needs HTTP shares it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from .seeded_support_traces import BASE_MS, Seeded, support_traces
from .trace_writer import SpanSpec, TraceSpec, create_experiment, write_traces

SUPPORT = "support-agent"
ODD = "odd-shapes"
BIG_SPANS = 3_000


@dataclass
class SeededStore:
    uri: str
    folder: Path
    support_id: str
    odd_id: str
    empty_id: str
    traces: list[Seeded]
    odd_trace_ids: dict[str, str]
    assessments: dict[str, list[tuple[str, object, str]]]  # name -> [(trace_id, value, source)]


def _odd_traces() -> dict[str, TraceSpec]:
    big = SpanSpec("batch_job", "CHAIN", duration_ms=5_000, inputs={"n": BIG_SPANS}, outputs={"ok": True})
    big.children = [
        SpanSpec(f"step_{k % 50}", "TOOL", start_ms=1 + k % 4_000, duration_ms=1 + k % 9, inputs={"k": k}, outputs={"v": k})
        for k in range(BIG_SPANS - 1)
    ]
    orphan_parent = SpanSpec("lost_parent", "CHAIN", duration_ms=50, outputs="x", children=[SpanSpec("orphan_child", "LLM", start_ms=1, duration_ms=20)])
    return {
        "big": TraceSpec(root=big, start_ms=BASE_MS + 10_000_000),
        "orphans": TraceSpec(root=orphan_parent, start_ms=BASE_MS + 10_100_000),
        "unset_root": TraceSpec(root=SpanSpec("otel_root", "UNKNOWN", duration_ms=30, status="UNSET", inputs="hi", outputs="hello"), start_ms=BASE_MS + 10_200_000),
    }


def _drop_root(uri: str, trace_id: str) -> None:
    """Delete the root span row: what a tracer that never exported its root leaves behind."""
    import sqlite3

    path = uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM spans WHERE trace_id = ? AND parent_span_id IS NULL", (trace_id,))


def _log_assessments(uri: str, traces: list[Seeded]) -> dict[str, list[tuple[str, object, str]]]:
    from mlflow.entities import AssessmentSource, Expectation, Feedback
    from mlflow.tracing.client import TracingClient

    client = TracingClient(uri)
    logged: dict[str, list[tuple[str, object, str]]] = {"correct": [], "relevance": [], "expected_answer": []}
    for s in traces:
        tid = s.spec.mlflow_id
        if s.index % 10 == 1:
            value = s.index % 20 == 1
            first = client.log_assessment(tid, Feedback(name="correct", value=not value, source=AssessmentSource("HUMAN", "reviewer")))
            if s.index == 1:  # overridden once: only the newer value counts
                client.log_assessment(tid, Feedback(name="correct", value=value, source=AssessmentSource("HUMAN", "reviewer"), overrides=first.assessment_id))
            else:
                client.update_assessment(tid, first.assessment_id, Feedback(name="correct", value=value, source=AssessmentSource("HUMAN", "reviewer")))
            logged["correct"].append((tid, value, "HUMAN"))
        if s.index % 10 == 2:
            value = round((s.index % 7) / 6, 3)
            client.log_assessment(tid, Feedback(name="relevance", value=value, source=AssessmentSource("LLM_JUDGE", "judge")))
            logged["relevance"].append((tid, value, "LLM_JUDGE"))
        if s.index % 50 == 0:
            client.log_assessment(tid, Expectation(name="expected_answer", value=f"Order {10_000 + s.index} shipped", source=AssessmentSource("HUMAN", "labeler")))
            logged["expected_answer"].append((tid, "text", "HUMAN"))
    return logged


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> SeededStore:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    folder = tmp_path_factory.mktemp("seeded")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    artifacts = str(folder / "artifacts")
    support_id = create_experiment(uri, SUPPORT, artifacts)
    traces = support_traces(200)
    write_traces(uri, support_id, (s.spec for s in traces))
    assessments = _log_assessments(uri, traces)
    odd_id = create_experiment(uri, ODD, artifacts)
    odd = _odd_traces()
    write_traces(uri, odd_id, odd.values())
    _drop_root(uri, odd["orphans"].mlflow_id)
    empty_id = create_experiment(uri, "empty", artifacts)
    return SeededStore(uri, folder, support_id, odd_id, empty_id, traces, {k: v.mlflow_id for k, v in odd.items()}, assessments)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerHandle:
    url: str
    backend_uri: str
    process: subprocess.Popen


def start_mlflow_server(backend_uri: str, artifacts: Path, log_path: Path, timeout_s: float = 90, port: int | None = None) -> ServerHandle:
    """A real `mlflow server` on 127.0.0.1 (on `port`, e.g. to restart one after an outage)."""
    port = port or free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--default-artifact-root", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited early; see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return ServerHandle(url, backend_uri, process)
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"mlflow server did not start in {timeout_s}s; see {log_path}")


def kill_server(handle: ServerHandle) -> None:
    """The server dies at once (SIGKILL to its process group): a tracking-store outage."""
    import signal

    try:
        os.killpg(handle.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    handle.process.wait(10)


def stop_server(handle: ServerHandle) -> None:
    import signal

    try:
        os.killpg(handle.process.pid, signal.SIGTERM)
        handle.process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        handle.process.kill()


@pytest.fixture(scope="session")
def mlflow_server(seeded_store: SeededStore, tmp_path_factory: pytest.TempPathFactory) -> ServerHandle:
    """A real tracking server over a copy of the seeded store (plus room for OTLP traces)."""
    folder = tmp_path_factory.mktemp("server")
    shutil.copy(seeded_store.folder / "mlflow.db", folder / "mlflow.db")
    handle = start_mlflow_server(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", folder / "server.log")
    yield handle
    stop_server(handle)


@pytest.fixture()
def batch_gets(monkeypatch) -> list[int]:
    """How many traces each api_reader.batch_get call asked for (the API path's span reads), in order."""
    from mlflow_eval_agent.traces import api_reader

    calls: list[int] = []
    original = api_reader.batch_get

    def counted(tracing, infos, **kwargs):
        calls.append(len(infos))
        return original(tracing, infos, **kwargs)

    monkeypatch.setattr(api_reader, "batch_get", counted)
    return calls

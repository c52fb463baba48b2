"""The `demo` command's work: a local sqlite experiment of demo-agent traces, then the pipeline.

The store lives under the volume path (default `.eval-agent/demo/mlflow.db`), so the demo needs no
server, no credential and no network. With a Claude credential the agent builds the suite; without
one, the no-model planner does. Either way the same session layout comes out.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..settings import ConfigError, Settings
from ..steps import NO_STEPS, Steps
from .seed import SeededTrace

DEMO_EXPERIMENT = "eval-agent-demo"
DEFAULT_TRACES = 60


@dataclass(frozen=True)
class DemoExperiment:
    tracking_uri: str
    experiment_id: str
    seeded: list[SeededTrace]  # empty when an existing demo experiment was reused


def demo_tracking_uri(volume_path: str) -> str:
    if volume_path.startswith("/Volumes/"):
        raise ConfigError("The demo runs on a local folder; pass a local --volume-path (default .eval-agent).")
    folder = Path(volume_path).expanduser().resolve() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def prepare_experiment(tracking_uri: str, traces: int, fresh: bool, steps: Steps = NO_STEPS) -> DemoExperiment:
    """Reuse the demo experiment when it has traces; otherwise create and fill one."""
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"  # before tracing starts: async drops traces
    import mlflow

    from .agent import http_chat
    from .chat_server import FakeChatServer
    from .model import support_model
    from .seed import seed_demo

    mlflow.set_tracking_uri(tracking_uri)
    existing = mlflow.get_experiment_by_name(DEMO_EXPERIMENT)
    if existing is not None and not fresh and mlflow.search_traces(locations=[existing.experiment_id], max_results=1, return_type="list"):
        return DemoExperiment(tracking_uri, existing.experiment_id, [])
    name = DEMO_EXPERIMENT if existing is None else f"{DEMO_EXPERIMENT}-{time.strftime('%Y%m%d-%H%M%S')}"
    # Artifacts (each suite run's results, suite files, report) beside the store, not in ./mlruns of wherever we run.
    artifacts = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
    experiment_id = mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    steps.start("Writing the sample agent's traces", total=traces, unit="traces")
    with FakeChatServer(support_model, model="acme-chat-1") as server:
        seeded = seed_demo(experiment_id, http_chat(server.base_url), n=traces, progress=steps.update)
    steps.finish()
    return DemoExperiment(tracking_uri, experiment_id, seeded)


def demo_settings(settings: Settings, demo: DemoExperiment, offline: bool) -> Settings:
    session_id = settings.session_id or f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    return settings.model_copy(update={
        "experiment_id": demo.experiment_id,
        "tracking_uri": demo.tracking_uri,
        "session_id": session_id,
        "offline": offline or settings.offline or not settings.access.configured,
    })

"""Helpers for the suite tests: an experiment of demo-agent traces with known failure modes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import mlflow

from mlflow_eval_agent.demo.agent import http_chat
from mlflow_eval_agent.demo.chat_server import FakeChatServer
from mlflow_eval_agent.demo.model import support_model
from mlflow_eval_agent.demo.seed import SeededTrace, seed_demo

MODES = ("uncaught_tool_error", "caught_tool_error", "empty_answer", "empty_retrieval", "slow")


def seed_experiment(name: str, n: int, seed: int = 7) -> tuple[str, list[SeededTrace]]:
    """A new experiment in the current tracking store, filled by the demo agent (needs sync logging)."""
    experiment_id = mlflow.create_experiment(name)
    with FakeChatServer(support_model, model="acme-chat-1") as server:
        seeded = seed_demo(experiment_id, http_chat(server.base_url), n=n, seed=seed)
    return experiment_id, seeded


def traces_of(experiment_id: str, trace_ids: list[str]) -> list:
    from mlflow_eval_agent.suite.dataset import fetch_traces

    return fetch_traces(experiment_id, trace_ids)


@contextlib.contextmanager
def local_store(folder: Path) -> Iterator[str]:
    """A sqlite tracking store made current for a whole test module (module fixtures cannot use
    the function-scoped `tracking_uri` fixture)."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous

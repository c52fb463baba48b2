"""The real Claude Code CLI with a token that refreshes (apiKeyHelper fed by token_feed.py) and the
Foundation Model API settings: the helper's token is sent, a 401 makes the CLI ask for a fresh one,
and every request carries the coding-agent header and the serving endpoint's name."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from mlflow_eval_agent.databricks import fm_api_env
from mlflow_eval_agent.session import SessionRequest, run_session
from mlflow_eval_agent.settings import ModelAccess, Settings
from mlflow_eval_agent.store import open_session_store
from mlflow_eval_agent.token_feed import TokenFeed
from tests.fakes.anthropic_server import HttpError, text

pytestmark = pytest.mark.slow
ENDPOINT = "databricks-claude-sonnet-4-5"
TOKENS = ["job-token-one-0123456789", "job-token-two-9876543210"]


def sha(token: str) -> str:
    return hashlib.sha256(f"Bearer {token}".encode()).hexdigest()


def test_a_401_fetches_a_fresh_token_and_the_fm_api_settings_reach_every_request(fake_claude_env, tmp_path: Path):
    handed = iter(TOKENS)
    feed = TokenFeed(lambda: next(handed)).start()
    fake_claude_env.script(HttpError(401, times=1, message="token expired"), text("done"))
    access = ModelAccess(base_url=fake_claude_env.url, token_command=feed.command(), gateway_env=fm_api_env(ENDPOINT))
    settings = Settings(experiment_id="1", model=ENDPOINT, access=access)
    store = open_session_store(str(tmp_path / "sessions"), "s")
    config = tmp_path / "claude-config"  # made by fake_claude_env
    try:
        outcome = asyncio.run(run_session(settings, store, SessionRequest(role="initializer", system_prompt="sys", prompt="hi"), config))
    finally:
        feed.stop()
    assert outcome.error is None and outcome.result_text == "done", outcome
    main = fake_claude_env.main_requests()
    assert [r.headers.get("authorization-sha256") for r in main] == [sha(TOKENS[0]), sha(TOKENS[1])]
    assert all(r.headers.get("x-databricks-use-coding-agent-mode") == "true" for r in fake_claude_env.requests)
    assert all(r.body["model"] == ENDPOINT for r in main)

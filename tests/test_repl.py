"""Interactive mode through a real pseudo-terminal, and one-shot questions."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from tests.agent_harness import cli_env, run_cli
from tests.conftest import REPO_ROOT
from tests.fakes.anthropic_server import FakeAnthropic, content_text, text, tool_use

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str]:
    import mlflow

    from tests.seed_traces import seed_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id, _ = seed_experiment(kinds=["ok", "tool_error"])
    finally:
        mlflow.set_tracking_uri(None)
    return uri, experiment_id


def _remembers_first_turn(body: dict) -> object:
    history = " ".join(content_text(m.get("content")) for m in body.get("messages", []))
    if "my name is Ada" in history and "Nice to meet you, Ada" in history:
        return text("You told me your name is Ada.")
    return text("I do not remember anything.")


def test_repl_two_turns_remember_the_conversation(store, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id = store
    fake_anthropic.script(
        tool_use("mcp__eval__search_traces", {"page_size": 2}),
        text("Nice to meet you, Ada. There are 2 traces."),
        _remembers_first_turn,
    )
    env = cli_env(fake_anthropic, uri, tmp_path)
    child = pexpect.spawn(sys.executable, ["-m", "src.cli", "-i", "-e", experiment_id, "--volume-path", str(tmp_path / "v")],
                          cwd=str(REPO_ROOT), env=env, encoding="utf-8", timeout=90)
    try:
        child.expect("you> ")
        child.sendline("/help")
        child.expect("/status")
        child.expect("you> ")
        child.sendline("Hello, my name is Ada. How many traces?")
        child.expect("search_traces")
        child.expect("Nice to meet you, Ada")
        child.expect("you> ")
        child.sendline("What is my name?")
        child.expect("your name is Ada")
        child.expect("you> ")
        child.sendline("/status")
        child.expect(r"this conversation: [\d,]+ tokens")
        child.expect("you> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    fake_anthropic.assert_script_finished()
    assert len(fake_anthropic.sessions()) == 1  # one client across turns


def test_repl_refuses_without_a_terminal(store, tmp_path: Path) -> None:
    uri, experiment_id = store
    env = cli_env(None, uri, tmp_path, ANTHROPIC_API_KEY="sk-test-not-used")
    run = run_cli(["-i", "-e", experiment_id], env)
    assert run.code == 2
    assert "needs a terminal" in run.stderr


def test_one_shot_question(store, fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    uri, experiment_id = store
    fake_anthropic.script(tool_use("mcp__eval__search_traces", {"filter": "attributes.status = 'ERROR'"}), text("One trace failed: a tool timeout."))
    run = run_cli(["-e", experiment_id, "--volume-path", str(tmp_path / "v"), "how many traces failed?"], cli_env(fake_anthropic, uri, tmp_path))
    assert run.code == 0, run.output
    assert "One trace failed" in run.stdout
    first = fake_anthropic.main_requests()[0]
    assert "how many traces failed?" in first.last_user_text()

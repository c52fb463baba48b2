"""Pytest fixtures for the scripted Anthropic fake.

Use from tests/conftest.py with::

    from tests.fakes.anthropic_fixture import fake_anthropic, fake_claude_env  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .anthropic_server import FakeAnthropic, offline_cli_env


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A running fake on 127.0.0.1 (free port), stopped after the test. Script it per test."""
    server = FakeAnthropic().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_claude_env(fake_anthropic: FakeAnthropic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAnthropic:
    """The fake, plus os.environ pointing every Claude Code CLI this test starts at it.

    The SDK passes os.environ on to the CLI, so code under test that builds its own
    ClaudeAgentOptions (or a `python -m src.cli` subprocess) reaches the fake with quick retries and
    no other network traffic. Code that sets CLAUDE_CONFIG_DIR itself overrides the one set here.
    """
    config_dir = tmp_path / "claude-config"
    config_dir.mkdir()
    for name, value in offline_cli_env(fake_anthropic.url, str(config_dir)).items():
        monkeypatch.setenv(name, value)
    return fake_anthropic

"""One Claude Agent SDK session: the only place `ClaudeAgentOptions` are built.

A session is a fresh `ClaudeSDKClient` with a role prompt, our in-process MCP tools, read-only
built-ins confined to the session folder, and an isolated Claude Code config. It streams events to
observers and returns a `SessionOutcome`; it never raises for model or CLI failures.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    ResultMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk.types import CanUseToolShadowedWarning
from pydantic import BaseModel

from .claude_folder import kill_children, launcher, private_env
from .guard import BUILTIN_TOOLS, FileGuard
from .redaction import Redactor, credential_name
from .settings import Settings
from .store import SessionStore
from .tools import ToolCallRecord, ToolContext, build_server
from .tools._base import SERVER_NAME, Role

DEFAULT_MAX_TURNS = 80
SESSION_TIMEOUT_S = 45 * 60
# The SDK reads the CLI's messages as JSON lines into a 1 MiB buffer by default; a bigger tool call
# then ends the session. The buffer is raised well above what any tool accepts (tools/_base.py
# refuses inputs over MAX_INPUT_CHARS with a sentence, the guard does the same for built-ins).
MAX_BUFFER_BYTES = 32 * 1024 * 1024
# Our MCP tools are allowed by name on purpose; the PreToolUse hook still sees every call.
warnings.filterwarnings("ignore", category=CanUseToolShadowedWarning)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
RETRYABLE_WORDS = ("overloaded", "rate limit", "rate_limit", "server_error", "timed out", "timeout", "econnreset",
                   "socket", "stream", "connection", "terminated", "network", "529", "503", "502", "500")


class SessionOutcome(BaseModel):
    """What one session did and cost. `error` is set when it did not end normally."""

    role: Role
    task_id: str | None = None
    started_at: float
    duration_s: float = 0.0
    num_turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: int = 0
    tool_errors: int = 0
    error: str | None = None
    api_error_status: int | None = None
    retryable: bool = False
    result_text: str | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens


class SessionObserver(Protocol):
    """Receives a session's events as they happen (progress display, self-tracing, run log)."""

    def on_text(self, text: str) -> None: ...
    def on_tool_use(self, name: str, tool_input: dict[str, Any]) -> None: ...
    def on_tool_call(self, record: ToolCallRecord) -> None: ...


@dataclass
class SessionRequest:
    role: Role
    system_prompt: str
    prompt: str
    task_id: str | None = None
    budget_usd: float | None = None
    max_turns: int = DEFAULT_MAX_TURNS
    timeout_s: float = SESSION_TIMEOUT_S
    observers: list[SessionObserver] = field(default_factory=list)


def cli_environment(settings: Settings, config_dir: Path, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the Claude Code subprocess: model access, isolation, no side traffic.

    The SDK starts the CLI with the whole process environment under these values, so every inherited
    credential-named variable the CLI is not given on purpose (model access, provider passthrough)
    is blanked: Claude Code never holds a Databricks token, a cloud key or any other secret of ours.
    """
    inherited = os.environ if inherited is None else inherited
    env = {name: "" for name in inherited if credential_name(name)}
    env |= {
        "ENABLE_TOOL_SEARCH": "false",  # otherwise MCP tools hide behind a ToolSearch tool
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "4",  # our loop retries too; keep the product of both bounded
    }
    env |= private_env(config_dir)  # HOME, XDG caches, TMPDIR: nothing the CLI writes lands outside
    env.update(settings.access.cli_env())
    env.update(settings.cli_env_extra)
    return env


def build_options(
    settings: Settings,
    ctx: ToolContext,
    request: SessionRequest,
    config_dir: Path,
    stderr: Callable[[str], None],
) -> ClaudeAgentOptions:
    server, mcp_tools = build_server(request.role, ctx)
    guard = FileGuard(root=ctx.store.root, allowed_prefixes=(f"mcp__{SERVER_NAME}__",), redact=ctx.redactor.text)
    return ClaudeAgentOptions(
        system_prompt=request.system_prompt,
        tools=list(BUILTIN_TOOLS),
        allowed_tools=mcp_tools,
        mcp_servers={SERVER_NAME: server},
        strict_mcp_config=True,
        permission_mode="default",
        can_use_tool=guard.can_use_tool,
        hooks=guard.hooks(),
        setting_sources=[],
        cwd=str(ctx.store.root),
        model=settings.model,
        max_turns=request.max_turns,
        max_budget_usd=request.budget_usd,
        env=cli_environment(settings, config_dir),
        settings=json.dumps(settings.access.cli_settings()) if settings.access.cli_settings() else None,
        stderr=stderr,
        cli_path=launcher(config_dir),  # own process group, killed with this process (claude_folder.py)
        max_buffer_size=MAX_BUFFER_BYTES,
    )


def is_retryable(status: int | None, error: str | None) -> bool:
    if status is not None:
        return status in RETRYABLE_STATUS
    text = (error or "").lower()
    return any(word in text for word in RETRYABLE_WORDS) and "authentication" not in text


class _Collector:
    """Turns the message stream into a SessionOutcome and observer calls."""

    def __init__(self, outcome: SessionOutcome, observers: list[SessionObserver], redactor: Redactor):
        self.outcome, self.observers, self.redactor = outcome, observers, redactor
        self.pending_builtin: dict[str, tuple[str, dict[str, Any], int]] = {}
        self.assistant_error: str | None = None

    def handle(self, message: Any) -> None:
        if isinstance(message, AssistantMessage):
            if message.error:
                self.assistant_error = self.redactor.text(f"model API error: {message.error}")
            for block in message.content:
                if isinstance(block, TextBlock) and block.text.strip():
                    for o in self.observers:
                        o.on_text(self.redactor.text(block.text))
                elif isinstance(block, ToolUseBlock):
                    self.outcome.tool_calls += 1
                    tool_input = self.redactor.data(block.input)
                    for o in self.observers:
                        o.on_tool_use(block.name, tool_input)
                    if not block.name.startswith("mcp__"):
                        self.pending_builtin[block.id] = (block.name, tool_input, time.time_ns())
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, ToolResultBlock):
                    if block.is_error:
                        self.outcome.tool_errors += 1
                    self._finish_builtin(block)
        elif isinstance(message, ResultMessage):
            self._result(message)

    def _finish_builtin(self, block: ToolResultBlock) -> None:
        started = self.pending_builtin.pop(block.tool_use_id, None)
        if not started:
            return
        name, tool_input, started_ns = started
        text = block.content if isinstance(block.content, str) else str(block.content or "")
        record = ToolCallRecord(
            name=name, arguments=tool_input, started_ns=started_ns, ended_ns=time.time_ns(), is_error=bool(block.is_error),
            result_chars=len(text), error=self.redactor.text(text)[:300] if block.is_error else None,
        )
        for o in self.observers:
            o.on_tool_call(record)

    def _result(self, message: ResultMessage) -> None:
        usage = message.usage or {}
        o = self.outcome
        o.num_turns = message.num_turns
        o.input_tokens = int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
        o.output_tokens = int(usage.get("output_tokens") or 0)
        o.cache_read_tokens = int(usage.get("cache_read_input_tokens") or 0)
        o.cost_usd = float(message.total_cost_usd or 0.0)
        o.result_text = self.redactor.text(message.result or "")[:2000] or None
        if message.is_error:
            detail = "; ".join(message.errors or []) or message.result or message.subtype
            o.api_error_status = message.api_error_status
            o.error = self.redactor.text(f"{message.subtype}: {detail}")[:800]
        elif self.assistant_error and not o.result_text:
            o.error = self.assistant_error


async def run_session(settings: Settings, store: SessionStore, request: SessionRequest, config_dir: Path) -> SessionOutcome:
    """Run one fresh session to its end. Model/CLI failures come back in the outcome, not as exceptions."""
    outcome = SessionOutcome(role=request.role, task_id=request.task_id, started_at=time.time())
    stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
    ctx = ToolContext(settings, store, task_id=request.task_id, observers=[o.on_tool_call for o in request.observers])
    redactor = ctx.redactor
    collector = _Collector(outcome, request.observers, redactor)
    options = build_options(settings, ctx, request, config_dir, lambda line: stderr_tail.append(redactor.text(line)))
    try:
        async with asyncio.timeout(request.timeout_s):
            async with ClaudeSDKClient(options=options) as client:
                await client.query(request.prompt)
                async for message in client.receive_response():
                    collector.handle(message)
    except TimeoutError:
        outcome.error = f"session timed out after {request.timeout_s:.0f}s"
    except ClaudeSDKError as exc:
        tail = " | ".join(list(stderr_tail)[-5:])
        outcome.error = redactor.text(f"Claude Code failed: {exc}" + (f" (stderr: {tail})" if tail else ""))[:1500]
    finally:
        kill_children(config_dir)  # whatever the CLI left running ends with its session
    if outcome.error is None and collector.assistant_error and outcome.num_turns == 0:
        outcome.error = collector.assistant_error
    outcome.retryable = outcome.error is not None and is_retryable(outcome.api_error_status, outcome.error)
    outcome.duration_s = round(time.time() - outcome.started_at, 2)
    return outcome


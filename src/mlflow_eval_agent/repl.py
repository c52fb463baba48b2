"""Interactive mode (`-i`) and one-shot questions (`mlflow-eval-agent "question"`).

The REPL keeps one `ClaudeSDKClient` across turns, so the model remembers the conversation.
Ctrl-C interrupts the answer being written, not the program; /exit or Ctrl-D leaves.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from claude_agent_sdk import AssistantMessage, ClaudeSDKClient, ResultMessage, TextBlock, ToolUseBlock
from rich.console import Console

from .aio import run_sync
from .plan import PLAN_FILE, TaskPlan
from .progress import make_console, short
from .prompts import load_prompt
from .redaction import Redactor
from .runner import claude_config_dir, configure_mlflow
from .session import SessionRequest, build_options, run_session
from .settings import ConfigError, Settings, require_model_access
from .store import CorruptStateError, SessionStore, new_session_id, open_session_store
from .tools import ToolContext

HELP = """Commands:
  /help    this help
  /status  the session's plan and what this conversation has cost
  /new     start a fresh conversation (the model forgets this one)
  /exit    leave (Ctrl-D works too)
Ctrl-C interrupts the answer being written."""


class TextPrinter:
    """Prints the model's text and tool calls as they arrive, redacted."""

    def __init__(self, console: Console, redactor: Redactor):
        self.console, self.redactor = console, redactor

    def on_text(self, text: str) -> None:
        self.console.print(self.redactor.text(text), highlight=False, markup=False)

    def on_tool_use(self, name: str, tool_input: dict[str, Any]) -> None:
        detail = short(self.redactor.data(tool_input), 80)
        self.console.print(f"  · {name.removeprefix('mcp__eval__')} {detail}", style="dim", highlight=False, markup=False)

    def error(self, prefix: str, text: str) -> None:
        self.console.print(f"{prefix}{self.redactor.text(text)}", style="red", highlight=False, markup=False)

    def on_tool_call(self, record: Any) -> None: ...


def _open(settings: Settings, prefix: str) -> SessionStore:
    configure_mlflow(settings)
    require_model_access(settings)
    session_id = settings.session_id or f"{prefix}-{new_session_id()}"
    return open_session_store(settings.volume_path, session_id, settings.redactor())


def ask_once(settings: Settings, question: str, console: Console | None = None) -> int:
    console = console or make_console()
    if not question.strip():
        raise ConfigError('Empty question: try mlflow-eval-agent -e <id> "why do my traces fail?"')
    store = _open(settings, "ask")
    printer = TextPrinter(console, store.redactor)
    request = SessionRequest(role="interactive", system_prompt=_system(settings), prompt=question, observers=[printer],
                             budget_usd=settings.max_budget_usd)
    with claude_config_dir(settings) as config_dir:
        outcome = run_sync(run_session(settings, store, request, config_dir))
    if outcome.error:
        printer.error("The question could not be answered: ", outcome.error)
        return 1
    console.print(f"[dim]{outcome.tokens:,} tokens · ${outcome.cost_usd:.4f}[/dim]")
    return 0


def _system(settings: Settings) -> str:
    experiment = f"\n\nThe user's experiment id: {settings.experiment_id}." if settings.experiment_id else (
        "\n\nNo experiment was given; ask the user for its id and pass experiment_id to the tools.")
    return load_prompt("interactive") + experiment


def run_interactive(settings: Settings, console: Console | None = None) -> int:
    if not sys.stdin.isatty():
        raise ConfigError('Interactive mode needs a terminal. From a script, ask once instead: mlflow-eval-agent -e <id> "your question"')
    console = console or make_console()
    store = _open(settings, "chat")
    console.print(f"mlflow-eval-agent · experiment {settings.experiment_id or '(none)'} · session {store.session_id}. /help for commands.")
    with claude_config_dir(settings) as config_dir:
        return run_sync(Repl(settings, store, console, config_dir).run())


class Repl:
    def __init__(self, settings: Settings, store: SessionStore, console: Console, config_dir: Any):
        self.settings, self.store, self.console, self.config_dir = settings, store, console, config_dir
        self.cost = 0.0
        self.tokens = 0
        self.printer = TextPrinter(console, store.redactor)
        self.answering: asyncio.Task[None] | None = None

    def _options(self) -> Any:
        request = SessionRequest(role="interactive", system_prompt=_system(self.settings), prompt="", max_turns=200,
                                 budget_usd=self.settings.max_budget_usd)
        ctx = ToolContext(self.settings, self.store)
        return build_options(self.settings, ctx, request, self.config_dir, stderr=lambda line: None)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        client = ClaudeSDKClient(options=self._options())
        await client.connect()
        try:
            while True:
                line = await asyncio.to_thread(self._read)
                if line is None or line.strip() == "/exit":
                    return 0
                command = line.strip()
                if not command:
                    continue
                if command.startswith("/"):
                    client = await self._command(command, client)
                    continue
                self.answering = asyncio.create_task(self._answer(client, command))
                try:
                    await self.answering
                except asyncio.CancelledError:
                    self.console.print("[yellow](interrupted)[/yellow]")
                finally:
                    self.answering = None
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await client.disconnect()

    def _read(self) -> str | None:
        try:
            return input("you> ")
        except EOFError:
            return None

    def _on_interrupt(self) -> None:
        if self.answering is not None:
            self.answering.cancel()
        else:
            self.console.print("\n(Ctrl-C interrupts an answer; /exit or Ctrl-D leaves)")

    async def _answer(self, client: ClaudeSDKClient, text: str) -> None:
        await client.query(text)
        try:
            async for message in client.receive_response():
                self._show(message)
        except asyncio.CancelledError:
            await client.interrupt()
            async for message in client.receive_response():  # drain to the interrupted result
                if isinstance(message, ResultMessage):
                    self._account(message)
            raise

    def _show(self, message: Any) -> None:
        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, TextBlock):
                    self.printer.on_text(block.text)
                elif isinstance(block, ToolUseBlock):
                    self.printer.on_tool_use(block.name, block.input)
        elif isinstance(message, ResultMessage):
            self._account(message)
            if message.is_error:
                self.printer.error("Error: ", str(message.result or message.errors))

    def _account(self, message: ResultMessage) -> None:
        # total_cost_usd is cumulative for the client's conversation.
        self.cost = float(message.total_cost_usd or self.cost)
        usage = message.usage or {}
        self.tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)

    async def _command(self, command: str, client: ClaudeSDKClient) -> ClaudeSDKClient:
        if command == "/help":
            self.console.print(HELP, highlight=False, markup=False)
        elif command == "/status":
            self.console.print(self._status(), highlight=False, markup=False)
        elif command == "/new":
            await client.disconnect()
            client = ClaudeSDKClient(options=self._options())
            await client.connect()
            self.console.print("Started a new conversation.")
        else:
            self.console.print(f"Unknown command {command}. /help lists them.")
        return client

    def _status(self) -> str:
        try:
            plan = self.store.read_model(PLAN_FILE, TaskPlan)
        except CorruptStateError as exc:
            plan, note = None, str(exc)
        else:
            note = ""
        counts = ", ".join(f"{k} {v}" for k, v in plan.counts().items()) if plan else "no plan in this session"
        return (f"experiment {self.settings.experiment_id or '(none)'} · session {self.store.session_id}\n"
                f"plan: {counts} {note}\nthis conversation: {self.tokens:,} tokens · ${self.cost:.4f}")

"""The scripted Anthropic fake: its wire format alone, then the real bundled Claude Code CLI on it.

The CLI tests double as measurements of how the SDK surfaces things (see the facts in
tests/fakes/anthropic_server.py). Run with ``-s`` to see the timings they print.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    ToolUseBlock,
    create_sdk_mcp_server,
    tool,
)

from tests.fakes.anthropic_server import (
    EXHAUSTED_TEXT,
    DropStream,
    FakeAnthropic,
    HttpError,
    iter_sse_events,
    offline_cli_env,
    text,
    tool_results_in,
    tool_use,
    tool_uses,
)

# Our MCP tools are meant to be auto-allowed; the SDK warns that can_use_tool then skips them.
pytestmark = pytest.mark.filterwarnings("ignore:can_use_tool will not be invoked")

# ----------------------------------------------------------------------------- wire-level tests


def _post(server: FakeAnthropic, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json", "x-api-key": "sk-secret"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _main_body(stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "stream": stream,
        "tools": [{"name": "mcp__eval__search_traces", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "go"}],
        **extra,
    }


def test_stream_carries_text_and_tool_use_with_split_json(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(tool_use("mcp__eval__search_traces", {"filter": "attributes.status = 'ERROR'", "limit": 5}, say="Looking."))
    status, raw = _post(fake_anthropic, _main_body())
    assert status == 200
    events = list(iter_sse_events(raw))
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "mcp__eval__search_traces" and starts[1]["input"] == {}
    fragments = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert len(fragments) == 2
    assert json.loads("".join(fragments)) == {"filter": "attributes.status = 'ERROR'", "limit": 5}
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] > 0


def test_non_streaming_reply_and_recorded_request_without_secrets(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(text("plain answer"))
    status, raw = _post(fake_anthropic, _main_body(stream=False))
    message = json.loads(raw)
    assert status == 200
    assert message["content"] == [{"type": "text", "text": "plain answer"}]
    assert message["stop_reason"] == "end_turn" and message["usage"]["output_tokens"] > 0
    (request,) = fake_anthropic.main_requests()
    assert request.body["model"] == "claude-test"
    assert "x-api-key" not in request.headers and "sk-secret" not in json.dumps(request.headers)
    fake_anthropic.assert_script_finished()


def test_http_error_repeats_then_script_continues(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(HttpError(529, times=2), text("recovered"))
    first, second = _post(fake_anthropic, _main_body()), _post(fake_anthropic, _main_body())
    for status, raw in (first, second):
        assert status == 529
        assert json.loads(raw) == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    status, raw = _post(fake_anthropic, _main_body(stream=False))
    assert status == 200 and json.loads(raw)["content"][0]["text"] == "recovered"
    assert [r.reply for r in fake_anthropic.main_requests()] == ["http 529", "http 529", "text: recovered"]


def test_dropped_stream_breaks_the_transfer(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(DropStream())
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        _post(fake_anthropic, _main_body())


def test_callable_step_sees_the_request_and_side_requests_do_not_consume(fake_anthropic: FakeAnthropic) -> None:
    seen: list[dict[str, Any]] = []

    def react(body: dict[str, Any]) -> Any:
        seen.append(body)
        return text(f"you said {body['messages'][-1]['content']}")

    fake_anthropic.script(react)
    title_request = {
        "model": "m",
        "stream": False,
        "tools": [],
        "messages": [{"role": "user", "content": "name it"}],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}},
    }
    status, raw = _post(fake_anthropic, title_request)
    assert status == 200 and json.loads(json.loads(raw)["content"][0]["text"]) == {"title": "Fake session title"}
    status, raw = _post(fake_anthropic, _main_body(stream=False))
    assert json.loads(raw)["content"][0]["text"] == "you said go" and len(seen) == 1
    assert not fake_anthropic.exhausted
    status, raw = _post(fake_anthropic, _main_body(stream=False))
    assert json.loads(raw)["content"][0]["text"] == EXHAUSTED_TEXT
    assert len(fake_anthropic.exhausted) == 1
    with pytest.raises(AssertionError, match="1 request"):
        fake_anthropic.assert_script_finished()


def test_a_broken_callable_step_is_reported(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(lambda body: None)
    status, raw = _post(fake_anthropic, _main_body(stream=False))
    assert status == 500 and "returned None" in json.loads(raw)["error"]["message"]
    with pytest.raises(AssertionError, match="returned None"):
        fake_anthropic.assert_script_finished()


def test_scripts_matched_by_marker_and_count_tokens(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.script(text("default queue"))
    fake_anthropic.script(text("worker reply"), match="ROLE: worker")
    worker = _main_body(stream=False, system=[{"type": "text", "text": "ROLE: worker"}])
    assert json.loads(_post(fake_anthropic, worker)[1])["content"][0]["text"] == "worker reply"
    assert json.loads(_post(fake_anthropic, _main_body(stream=False))[1])["content"][0]["text"] == "default queue"
    status, raw = _post(fake_anthropic, _main_body(), path="/v1/messages/count_tokens?beta=true")
    assert status == 200 and json.loads(raw)["input_tokens"] > 0
    fake_anthropic.assert_script_finished()


def test_tool_results_in_flattens_and_names_results() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "mcp__eval__x", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "rows: 3"}]}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "denied", "is_error": True}]},
        ]
    }
    results = tool_results_in(body)
    assert [(r.tool_name, r.text, r.is_error) for r in results] == [("mcp__eval__x", "rows: 3", False), ("Read", "denied", True)]
    assert [r.tool_use_id for r in tool_results_in(body, latest_only=True)] == ["t2"]


# ----------------------------------------------------------------------------- the real CLI on the fake


@tool("lookup", "Look up a value by key.", {"key": str})
async def _lookup(args: dict[str, Any]) -> dict[str, Any]:
    _TOOL_CALLS.append(args["key"])
    return {"content": [{"type": "text", "text": f"value-of-{args['key']}"}]}


_TOOL_CALLS: list[str] = []


@dataclass
class Outcome:
    messages: list[Any] = field(default_factory=list)
    result: ResultMessage | None = None
    error: BaseException | None = None
    started: float = 0.0  # monotonic, just before the CLI is spawned
    finished: float = 0.0
    guard_calls: list[str] = field(default_factory=list)

    def assistant_errors(self) -> list[str]:
        return [m.error for m in self.messages if isinstance(m, AssistantMessage) and m.error]


def _run(
    server: FakeAnthropic,
    tmp_path: Path,
    prompts: list[str] | str = "hello",
    *,
    guard_denies: tuple[str, ...] = (),
    system_prompt: str | None = None,
    **env: str,
) -> Outcome:
    """One ClaudeSDKClient session against the fake, as the product will run one."""
    outcome = Outcome()
    work = tmp_path / f"work-{len(list(tmp_path.iterdir()))}"
    (work / "config").mkdir(parents=True)

    async def guard(name: str, tool_input: dict[str, Any], _context: Any) -> Any:
        outcome.guard_calls.append(name)
        if name in guard_denies:
            return PermissionResultDeny(message=f"{name} is not allowed here")
        return PermissionResultAllow()

    options = ClaudeAgentOptions(
        env=offline_cli_env(server.url, str(work / "config"), **env),
        setting_sources=[],
        tools=["Read"],
        allowed_tools=["mcp__eval__lookup"],
        mcp_servers={"eval": create_sdk_mcp_server("eval", tools=[_lookup])},
        cwd=str(work),
        can_use_tool=guard,
        permission_mode="default",
        system_prompt=system_prompt,
    )

    async def go() -> None:
        outcome.started = time.monotonic()
        async with ClaudeSDKClient(options) as client:
            for prompt in [prompts] if isinstance(prompts, str) else prompts:
                await client.query(prompt)
                async for message in client.receive_response():
                    outcome.messages.append(message)
                    if isinstance(message, ResultMessage):
                        outcome.result = message

    try:
        asyncio.run(asyncio.wait_for(go(), timeout=45))
    except Exception as exc:  # recorded: some tests measure exactly how failures surface
        outcome.error = exc
    outcome.finished = time.monotonic()
    return outcome




@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_text_answer_with_usage_cost_and_no_extra_traffic(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.script(text("The answer is 42.", input_tokens=1500, output_tokens=30))
    outcome = _run(fake_anthropic, tmp_path, "What is the answer?")
    assert outcome.error is None
    result = outcome.result
    assert result is not None and not result.is_error and result.result == "The answer is 42."
    assert result.usage["input_tokens"] == 1500 and result.usage["output_tokens"] == 30
    assert result.total_cost_usd and result.total_cost_usd > 0
    (request,) = fake_anthropic.requests  # no /api/hello probe, no title request, nothing else
    assert request.path == "/v1/messages?beta=true" and request.body["stream"] is True
    assert request.tool_names == ["Read", "mcp__eval__lookup"]
    assert request.session_id == result.session_id
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in request.headers
    print(f"\nCLI start -> first request: {(request.at - outcome.started) * 1000:.0f} ms")
    fake_anthropic.assert_script_finished()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_runs_mcp_tool_and_sends_its_result_back(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    _TOOL_CALLS.clear()

    def answer_from_results(body: dict[str, Any]) -> Any:
        latest = tool_results_in(body, latest_only=True)
        return text("Both: " + ", ".join(r.text for r in latest))

    fake_anthropic.script(
        tool_use("mcp__eval__lookup", {"key": "alpha"}, say="Let me look."),
        tool_uses(("mcp__eval__lookup", {"key": "beta"}), ("mcp__eval__lookup", {"key": "gamma"})),
        answer_from_results,
    )
    outcome = _run(fake_anthropic, tmp_path, "Look things up.")
    assert outcome.error is None and outcome.result is not None and not outcome.result.is_error
    assert _TOOL_CALLS == ["alpha", "beta", "gamma"]
    first, second, third = fake_anthropic.main_requests()
    assert [(r.tool_name, r.text) for r in tool_results_in(second)] == [("mcp__eval__lookup", "value-of-alpha")]
    assert sorted(r.text for r in tool_results_in(third, latest_only=True)) == ["value-of-beta", "value-of-gamma"]
    assert outcome.result.result in ("Both: value-of-beta, value-of-gamma", "Both: value-of-gamma, value-of-beta")
    # num_turns counts the prompt plus one per tool result (4 here), not model requests (3).
    assert outcome.result.num_turns == 4
    assert outcome.guard_calls == []  # allowed_tools entries never reach can_use_tool
    tool_uses_seen = [b.name for m in outcome.messages if isinstance(m, AssistantMessage) for b in m.content if isinstance(b, ToolUseBlock)]
    assert tool_uses_seen == ["mcp__eval__lookup"] * 3
    print(
        f"\nCLI start -> first request: {(first.at - outcome.started) * 1000:.0f} ms; "
        f"tool round trips: {(second.at - first.at) * 1000:.0f} ms (1 call), {(third.at - second.at) * 1000:.0f} ms (2 calls)"
    )
    fake_anthropic.assert_script_finished()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_tools_option_and_can_use_tool(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("do not read")
    fake_anthropic.script(
        tool_uses(("Bash", {"command": "echo hi"}), ("Read", {"file_path": str(secret)})),
        text("done"),
    )
    outcome = _run(fake_anthropic, tmp_path, "Try things.", guard_denies=("Read",))
    assert outcome.result is not None and not outcome.result.is_error
    assert outcome.guard_calls == ["Read"]  # Bash is not offered at all, so it never reaches the guard
    results = {r.tool_name: r for r in tool_results_in(fake_anthropic.main_requests()[1])}
    assert results["Bash"].is_error and "No such tool available: Bash" in results["Bash"].text
    assert results["Read"].is_error and results["Read"].text == "Read is not allowed here"
    assert "do not read" not in json.dumps(fake_anthropic.main_requests()[1].body)
    assert [d["tool_name"] for d in outcome.result.permission_denials] == ["Read"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_529_storm_ends_in_an_error_result_in_bounded_time(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.script(HttpError(529, times=50))
    outcome = _run(fake_anthropic, tmp_path, "hello", CLAUDE_CODE_MAX_RETRIES="2")
    elapsed = outcome.finished - outcome.started
    # Surfaces as data, not an exception: a synthetic AssistantMessage with error="server_error",
    # then ResultMessage(is_error=True, subtype="success", api_error_status=529).
    assert outcome.error is None
    assert outcome.assistant_errors() == ["server_error"]
    result = outcome.result
    assert result is not None and result.is_error and result.subtype == "success"
    assert result.api_error_status == 529 and result.terminal_reason == "api_error"
    assert result.result.startswith("API Error: 529")
    assert len(fake_anthropic.main_requests()) == 3  # first try + CLAUDE_CODE_MAX_RETRIES
    assert elapsed < 15
    print(f"\n529 storm, 2 retries: {elapsed:.2f} s, result={result.result[:60]!r}")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_survives_one_dropped_stream_and_reports_a_drop_storm(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.script(DropStream(), text("after the drop"))
    recovered = _run(fake_anthropic, tmp_path, "hello", CLAUDE_CODE_MAX_RETRIES="2")
    assert recovered.result is not None and not recovered.result.is_error
    assert recovered.result.result == "after the drop"
    assert [r.reply for r in fake_anthropic.main_requests()] == ["dropped stream", "text: after the drop"]

    fake_anthropic.script(DropStream(times=50))
    storm = _run(fake_anthropic, tmp_path, "hello", CLAUDE_CODE_MAX_RETRIES="2")
    assert storm.error is None and storm.assistant_errors() == ["server_error"]
    assert storm.result is not None and storm.result.is_error and storm.result.terminal_reason == "api_error"
    assert "Connection to the API was lost" in storm.result.result and storm.result.api_error_status is None
    storm_requests = fake_anthropic.main_requests()[2:]
    # Three streamed attempts, then one non-streaming fallback attempt.
    assert [r.body["stream"] for r in storm_requests] == [True, True, True, False]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sessions_in_sequence_with_marker_scripts(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.script(text("worker one done"), text("worker two done"), match="ROLE=worker")
    fake_anthropic.script(tool_use("mcp__eval__lookup", {"key": "plan"}), text("plan written"), match="ROLE=initializer")
    outcomes = [
        _run(fake_anthropic, tmp_path, "Make a plan.", system_prompt="ROLE=initializer"),
        _run(fake_anthropic, tmp_path, "Task 1.", system_prompt="ROLE=worker"),
        _run(fake_anthropic, tmp_path, "Task 2.", system_prompt="ROLE=worker"),
    ]
    assert [o.result.result for o in outcomes if o.result] == ["plan written", "worker one done", "worker two done"]
    sessions = fake_anthropic.sessions()
    assert list(sessions) == [o.result.session_id for o in outcomes if o.result]
    assert [len(requests) for requests in sessions.values()] == [2, 1, 1]
    fake_anthropic.assert_script_finished()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_one_client_keeps_going_after_an_api_error(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.script(HttpError(500), text("second turn works"))
    outcome = _run(fake_anthropic, tmp_path, ["first", "second"], CLAUDE_CODE_MAX_RETRIES="0")
    results = [m for m in outcome.messages if isinstance(m, ResultMessage)]
    assert [(r.is_error, r.api_error_status) for r in results] == [(True, 500), (False, None)]
    second = fake_anthropic.main_requests()[1]
    # The failed turn's prompt stays in the conversation.
    assert "first" in json.dumps(second.messages) and "second" in second.last_user_text()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_fake_claude_env_reaches_a_cli_started_without_env_options(fake_claude_env: FakeAnthropic, tmp_path: Path) -> None:
    """Code under test that builds its own options (or a subprocess) finds the fake via os.environ."""
    fake_claude_env.script(text("reached through os.environ"))

    async def go() -> ResultMessage | None:
        options = ClaudeAgentOptions(setting_sources=[], tools=[], mcp_servers={"eval": create_sdk_mcp_server("eval", tools=[_lookup])}, cwd=str(tmp_path))
        async with ClaudeSDKClient(options) as client:
            await client.query("hi")
            results = [m async for m in client.receive_response() if isinstance(m, ResultMessage)]
            return results[-1] if results else None

    result = asyncio.run(asyncio.wait_for(go(), timeout=45))
    assert result is not None and result.result == "reached through os.environ"
    assert [r.kind for r in fake_claude_env.requests] == ["main"]
    fake_claude_env.assert_script_finished()

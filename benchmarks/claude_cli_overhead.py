"""Overhead of one Claude Code CLI session against the scripted fake model (no model time at all).

Prints, over N sessions: spawn-to-connected, CLI start to first model request, per tool call round
trip (fake reply with a tool_use -> next request carrying the tool_result, with a trivial in-process
MCP tool) and whole-session wall time.

    uv run python benchmarks/claude_cli_overhead.py [--sessions 5] [--tool-calls 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, ResultMessage, create_sdk_mcp_server, tool  # noqa: E402

from tests.fakes.anthropic_server import FakeAnthropic, offline_cli_env, text, tool_use  # noqa: E402


@tool("lookup", "Look up a value by key.", {"key": str})
async def lookup(args: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": f"value-of-{args['key']}"}]}


async def one_session(server: FakeAnthropic, tool_calls: int) -> dict[str, float]:
    server.script(*[tool_use("mcp__eval__lookup", {"key": str(i)}) for i in range(tool_calls)], text("done"))
    before = len(server.main_requests())
    with tempfile.TemporaryDirectory() as work:
        options = ClaudeAgentOptions(
            env=offline_cli_env(server.url, str(Path(work) / "config")),
            setting_sources=[],
            tools=["Read"],
            allowed_tools=["mcp__eval__lookup"],
            mcp_servers={"eval": create_sdk_mcp_server("eval", tools=[lookup])},
            cwd=work,
            permission_mode="default",
        )
        started = time.monotonic()
        async with ClaudeSDKClient(options) as client:
            connected = time.monotonic()
            await client.query("go")
            async for message in client.receive_response():
                if isinstance(message, ResultMessage) and message.is_error:
                    raise RuntimeError(message.result)
        ended = time.monotonic()
    requests = server.main_requests()[before:]
    gaps = [(b.at - a.at) * 1000 for a, b in zip(requests, requests[1:])]
    server.assert_script_finished()
    return {
        "connect_ms": (connected - started) * 1000,
        "first_request_ms": (requests[0].at - started) * 1000,
        "tool_round_trip_ms": statistics.median(gaps) if gaps else 0.0,
        "session_ms": (ended - started) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--tool-calls", type=int, default=5)
    args = parser.parse_args()
    with FakeAnthropic() as server:
        runs = [asyncio.run(one_session(server, args.tool_calls)) for _ in range(args.sessions)]
    print(f"{args.sessions} sessions x {args.tool_calls} tool calls (median / max):")
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"  {key:20s} {statistics.median(values):8.0f} ms  {max(values):8.0f} ms")


if __name__ == "__main__":
    main()

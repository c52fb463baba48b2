"""The agent's in-process MCP tools, assembled per session role."""

from __future__ import annotations

from claude_agent_sdk import create_sdk_mcp_server
from claude_agent_sdk.types import McpSdkServerConfig

from . import annotate, profile, state, suite, traces
from ._base import SERVER_NAME, AgentTool, Role, ToolCallRecord, ToolContext, ToolError, bind, qualified_name

# Each module exposes TOOLS: list[AgentTool]. Add a module here to offer its tools to the agent.
TOOL_MODULES = [profile, traces, state, annotate, suite]


def tools_for(role: Role, ctx: ToolContext) -> list[AgentTool]:
    return [
        t
        for module in TOOL_MODULES
        for t in module.TOOLS
        if role in t.roles and t.enabled(ctx.settings)
    ]


def build_server(role: Role, ctx: ToolContext) -> tuple[McpSdkServerConfig, list[str]]:
    """The MCP server for one session and the qualified names to allow."""
    chosen = tools_for(role, ctx)
    server = create_sdk_mcp_server(name=SERVER_NAME, version="1.0.0", tools=[bind(t, ctx) for t in chosen])
    return server, [qualified_name(t.name) for t in chosen]


__all__ = ["AgentTool", "ToolCallRecord", "ToolContext", "ToolError", "build_server", "qualified_name", "tools_for"]

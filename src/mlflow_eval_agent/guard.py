"""Confinement of the agent's built-in tools to the session folder.

Defence in depth, after the Anthropic autonomous-coding quickstart: only a few read-only built-ins
are offered at all (`tools=`), our MCP tools are allowed by name, and every other call passes this
guard twice — as `can_use_tool` and as a PreToolUse hook — so a path outside the session folder
(absolute, `..`, a symlink, a glob) is refused with a sentence the model can act on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_agent_sdk import HookMatcher, PermissionResultAllow, PermissionResultDeny

# Built-in tools the agent is offered; all read-only. Writing goes through our validated tools.
BUILTIN_TOOLS = ["Read", "Glob", "Grep"]
PATH_KEYS = ("file_path", "path", "notebook_path")


@dataclass(frozen=True)
class FileGuard:
    root: Path
    allowed_prefixes: tuple[str, ...]  # qualified MCP tool names that need no path check
    redact: Callable[[str], str] = str  # a refusal quotes the model's input back to it

    def check(self, tool_name: str, tool_input: dict[str, Any]) -> str | None:
        """None when the call may go ahead, else the reason it may not (redacted)."""
        reason = self._reason(tool_name, tool_input)
        return self.redact(reason) if reason else None

    def _reason(self, tool_name: str, tool_input: dict[str, Any]) -> str | None:
        from .tools._base import oversized_input

        too_big = oversized_input(tool_input)
        if too_big:
            return too_big
        if tool_name.startswith(self.allowed_prefixes):
            return None
        if tool_name not in BUILTIN_TOOLS:
            return f"Tool {tool_name} is not available in this session. Use the mcp__eval__ tools."
        for key in PATH_KEYS:
            if key in tool_input and tool_input[key]:
                reason = self._outside(str(tool_input[key]))
                if reason:
                    return reason
        pattern = str(tool_input.get("pattern", "")) if tool_name == "Glob" else ""
        if pattern.startswith(("/", "~")) or ".." in Path(pattern).parts:
            return f"Glob pattern {pattern!r} reaches outside the session folder; use a relative pattern."
        return None

    def _outside(self, raw: str) -> str | None:
        candidate = Path(os.path.expanduser(raw))
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved == self.root or resolved.is_relative_to(self.root):
            return None
        return f"Access to {raw} is refused: only files inside the session folder ({self.root}) can be read."

    async def can_use_tool(self, tool_name: str, tool_input: dict[str, Any], context: Any) -> PermissionResultAllow | PermissionResultDeny:
        reason = self.check(tool_name, tool_input)
        return PermissionResultDeny(message=reason) if reason else PermissionResultAllow()

    async def pre_tool_use(self, hook_input: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        reason = self.check(hook_input.get("tool_name", ""), hook_input.get("tool_input") or {})
        if reason is None:
            return {}
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }
        }

    def hooks(self) -> dict[str, list[HookMatcher]]:
        return {"PreToolUse": [HookMatcher(matcher=None, hooks=[self.pre_tool_use])]}

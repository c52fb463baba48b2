"""`openai-chat`: JSON Lines, one conversation of OpenAI chat messages per line.

A line is either a list of messages or an object `{"messages": [...], "id": "...", ...}` (`id`,
`conversation_id` or `session_id` names the conversation; otherwise its line number does).
Messages follow the Chat Completions shape: `role` system/developer/user/assistant/tool (legacy
`function` too), `content` as text or a list of parts, assistant `tool_calls`, tool
`tool_call_id`. The file is read line by line, so its size does not matter. Steps are message
positions (0-based) in the line's list. Lines that cannot be read are reported and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .model import Conversation, Malformed, Record, RecordError, SourceError, ToolCall, Turn, first_text, last_text

FORMAT = "openai-chat"
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool", "function": "tool"}
_ID_KEYS = ("id", "conversation_id", "session_id")


def read(path: Path, with_labels: bool = False, labels_path: Path | None = None) -> Iterator[Record]:
    """Yield one Conversation per readable line and one Malformed per unreadable line."""
    del with_labels, labels_path  # chat logs carry no labels
    if path.is_dir():
        raise SourceError(f"{path} is a folder; pass a JSON Lines file (one conversation per line).")
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield conversation_from_line(line, lineno, path.name)
            except RecordError as exc:
                yield Malformed(where=f"{path.name} line {lineno}", reason=str(exc))


def conversation_from_line(line: str, lineno: int, file_name: str | None = None) -> Conversation:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise RecordError(f"not valid JSON ({exc})") from None
    if isinstance(record, list):
        messages, key = record, None
    elif isinstance(record, dict) and isinstance(record.get("messages"), list):
        messages = record["messages"]
        found = next((record[k] for k in _ID_KEYS if isinstance(record.get(k), str | int) and str(record[k]).strip()), None)
        key = str(found) if found is not None else None
    else:
        raise RecordError('expected a list of messages or an object with a "messages" list')
    turns = turns_from_messages(messages, lambda position, _message: position)
    return conversation(FORMAT, key or f"line {lineno}", turns, file_name, source_key=key)


def conversation(fmt: str, source_id: str, turns: list[Turn], file_name: str | None, **extra: Any) -> Conversation:
    if not any(t.role == "assistant" for t in turns):
        raise RecordError("the conversation has no assistant message")
    return Conversation(
        format=fmt,
        source_id=source_id,
        source_file=file_name,
        request=first_text(turns, "user"),
        response=last_text(turns, "assistant"),
        turns=tuple(turns),
        **extra,
    )


def turns_from_messages(messages: list[Any], step_of: Callable[[int, dict[str, Any]], int]) -> list[Turn]:
    """OpenAI chat messages → turns; `step_of(position, message)` gives each message's step number."""
    if not messages:
        raise RecordError("the conversation has no messages")
    return [_turn(position, message, step_of) for position, message in enumerate(messages)]


def _turn(position: int, message: Any, step_of: Callable[[int, dict[str, Any]], int]) -> Turn:
    if not isinstance(message, dict):
        raise RecordError(f"message {position} is not an object")
    role = _ROLES.get(str(message.get("role", "")).lower())
    if role is None:
        raise RecordError(f"message {position} has role {message.get('role')!r}; expected system, user, assistant or tool")
    calls = _tool_calls(position, message) if role == "assistant" else ()
    return Turn(
        step=step_of(position, message),
        role=role,
        name=_text_or_none(message.get("name")),
        content=content_text(message.get("content"), position),
        tool_calls=calls,
        tool_call_id=_text_or_none(message.get("tool_call_id")),
    )


def content_text(content: Any, position: int = 0) -> str | None:
    """Message content as text: a string, or the text parts of a list of content parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") or p.get("refusal") for p in content if isinstance(p, str | dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    raise RecordError(f"message {position} has content of type {type(content).__name__}; expected text or a list of parts")


def _tool_calls(position: int, message: dict[str, Any]) -> tuple[ToolCall, ...]:
    raw_calls = list(message.get("tool_calls") or [])
    if isinstance(message.get("function_call"), dict):
        raw_calls.append({"function": message["function_call"]})
    calls = []
    for raw in raw_calls:
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise RecordError(f"message {position} has a tool call without a function name")
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(call_id=_text_or_none(raw.get("id")), name=str(function["name"]), arguments=arguments))
    return tuple(calls)


def _text_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None

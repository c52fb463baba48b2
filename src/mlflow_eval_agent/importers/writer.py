"""Conversation → one genuine MLflow trace, written through MLflow's own span API.

Shape: a root AGENT span (inputs `{"request": ...}`, outputs the final answer); under it, in
transcript order, a CHAT_MODEL span per assistant turn (named by the speaker) and a TOOL span per
tool call (arguments in, the tool's result text out). Tool outputs logged without a call (a code
executor's turn) become TOOL spans of their own. Every child span carries its source step in the
`eval_agent.import.step` attribute; user and system messages get no span of their own. In group
chats a span also carries whom its message was addressed to (`eval_agent.import.addressee`) and
the source's own speaker label (`eval_agent.import.source_role`) when the source has them.

A CHAT_MODEL span's inputs are the messages that are new to its speaker: its system prompt the
first time it speaks, then whatever was said since its previous turn. The model saw the earlier
messages too, but storing each message once keeps a trace linear in the transcript's size.

Transcripts carry no timing, so spans get a synthetic timeline starting at `start_ns`: 100 ms per
model turn, 10 ms per tool call, 1 ms between spans (the trace's `eval_agent.import.timing`
metadata says "synthetic"); latencies of imported traces measure nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities import SpanStatus, SpanStatusCode, SpanType

from .model import (
    ATTR_ADDRESSEE,
    ATTR_CALL_STEP,
    ATTR_SOURCE_ROLE,
    ATTR_STEP,
    ATTR_TOOL_CALL_ID,
    META_CONTENT_HASH,
    META_FORMAT,
    META_SOURCE_FILE,
    META_SOURCE_ID,
    META_TIMING,
    Conversation,
    ToolCall,
    Turn,
)
from .tool_errors import error_description

MS = 1_000_000
CHAT_NS = 100 * MS
TOOL_NS = 10 * MS
GAP_NS = 1 * MS
DEFAULT_SPEAKER = "assistant"


@dataclass
class WrittenTrace:
    trace_id: str
    root_span_id: str
    # (own source step, span id) for every child span, in the order written.
    spans: list[tuple[int, str]] = field(default_factory=list)
    end_ns: int = 0


def write_trace(conv: Conversation, experiment_id: str, start_ns: int, content_hash: str | None = None) -> WrittenTrace:
    """Write `conv` as one trace in `experiment_id`; the caller makes sure export is synchronous."""
    metadata = {
        META_FORMAT: conv.format,
        META_SOURCE_ID: conv.source_id,
        META_CONTENT_HASH: content_hash or conv.content_hash(),
        META_TIMING: "synthetic",
    }
    if conv.source_file:
        metadata[META_SOURCE_FILE] = conv.source_file
    root = mlflow.start_span_no_context(
        conv.name,
        span_type=SpanType.AGENT,
        inputs={"request": conv.request},
        metadata=metadata,
        experiment_id=experiment_id,
        start_time_ns=start_ns,
    )
    written = WrittenTrace(trace_id=root.trace_id, root_span_id=root.span_id)
    # If writing stops half-way the root is never ended, so no partial trace (carrying the
    # content hash that marks it as imported) reaches the store.
    clock = _write_children(conv, root, start_ns + GAP_NS, written)
    written.end_ns = clock
    root.end(outputs=conv.response, end_time_ns=clock)
    return written


def _write_children(conv: Conversation, root: Any, clock: int, written: WrittenTrace) -> int:
    results, claimed = link_tool_results(conv.turns)
    last_seen: dict[str, int] = {}
    for pos, turn in enumerate(conv.turns):
        if turn.role == "assistant":
            speaker = turn.name or DEFAULT_SPEAKER
            inputs = _new_messages(conv, pos, speaker, last_seen)
            clock = _chat_span(root, turn, speaker, inputs, clock, written)
            for index, call in enumerate(turn.tool_calls):
                clock = _tool_span(root, turn, call, results.get((pos, index)), clock, written)
        elif turn.role == "tool" and pos not in claimed:
            clock = _orphan_tool_span(root, turn, clock, written)
    return clock


def link_tool_results(turns: tuple[Turn, ...]) -> tuple[dict[tuple[int, int], Turn], set[int]]:
    """Match each tool call to its result turn: by call id, else the next unclaimed result of that name.

    Returns {(assistant position, call index): result turn} and the positions of claimed results.
    """
    results: dict[tuple[int, int], Turn] = {}
    claimed: set[int] = set()
    open_calls: list[tuple[int, int, ToolCall]] = []
    for pos, turn in enumerate(turns):
        if turn.role == "assistant":
            open_calls.extend((pos, i, call) for i, call in enumerate(turn.tool_calls))
        elif turn.role == "tool":
            match = _find_call(open_calls, turn)
            if match is not None:
                call_pos, call_index, _ = open_calls.pop(match)
                results[(call_pos, call_index)] = turn
                claimed.add(pos)
    return results, claimed


def _find_call(open_calls: list[tuple[int, int, ToolCall]], turn: Turn) -> int | None:
    if turn.tool_call_id:
        return next((i for i, (_, _, c) in enumerate(open_calls) if c.call_id == turn.tool_call_id), None)
    return next(
        (i for i, (_, _, c) in enumerate(open_calls) if not c.call_id and (turn.name is None or c.name == turn.name)),
        None,
    )


def _new_messages(conv: Conversation, pos: int, speaker: str, last_seen: dict[str, int]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    first_time = speaker not in last_seen
    if first_time and speaker in conv.system_prompts:
        messages.append({"role": "system", "content": conv.system_prompts[speaker]})
    start = last_seen.get(speaker, -1) + 1
    messages.extend(message_dict(t) for t in conv.turns[start:pos])
    last_seen[speaker] = pos
    return {"messages": messages}


def message_dict(turn: Turn) -> dict[str, Any]:
    """A turn as an OpenAI-style chat message."""
    message: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.name:
        message["name"] = turn.name
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in turn.tool_calls
        ]
    if turn.tool_call_id:
        message["tool_call_id"] = turn.tool_call_id
    return message


def _chat_span(root: Any, turn: Turn, speaker: str, inputs: dict[str, Any], clock: int, written: WrittenTrace) -> int:
    span = mlflow.start_span_no_context(
        speaker,
        span_type=SpanType.CHAT_MODEL,
        parent_span=root,
        inputs=inputs,
        attributes={ATTR_STEP: turn.step, **speaker_attributes(turn)},
        start_time_ns=clock,
    )
    span.end(outputs=message_dict(turn), end_time_ns=clock + CHAT_NS)
    written.spans.append((turn.step, span.span_id))
    return clock + CHAT_NS + GAP_NS


def speaker_attributes(turn: Turn) -> dict[str, str]:
    """Addressee and source speaker label of a group-chat turn, when the source has them."""
    found = {ATTR_ADDRESSEE: turn.addressee, ATTR_SOURCE_ROLE: turn.source_role}
    return {key: value for key, value in found.items() if value}


def _tool_span(root: Any, turn: Turn, call: ToolCall, result: Turn | None, clock: int, written: WrittenTrace) -> int:
    attributes: dict[str, Any] = {ATTR_STEP: result.step if result else turn.step, ATTR_CALL_STEP: turn.step}
    if call.call_id:
        attributes[ATTR_TOOL_CALL_ID] = call.call_id
    output = result.content if result else None
    return _end_tool(root, call.name, tool_arguments(call.arguments), output, attributes, clock, written)


def _orphan_tool_span(root: Any, turn: Turn, clock: int, written: WrittenTrace) -> int:
    inputs = {"input": turn.tool_input} if turn.tool_input is not None else None
    attributes = {ATTR_STEP: turn.step, **speaker_attributes(turn)}
    return _end_tool(root, turn.name or "tool", inputs, turn.content, attributes, clock, written)


def _end_tool(root: Any, name: str, inputs: Any, output: str | None, attributes: dict[str, Any], clock: int, written: WrittenTrace) -> int:
    span = mlflow.start_span_no_context(
        name, span_type=SpanType.TOOL, parent_span=root, inputs=inputs, attributes=attributes, start_time_ns=clock
    )
    problem = error_description(output)
    status = SpanStatus(SpanStatusCode.ERROR, problem) if problem else SpanStatus(SpanStatusCode.OK)
    span.end(outputs=output, status=status, end_time_ns=clock + TOOL_NS)
    written.spans.append((attributes[ATTR_STEP], span.span_id))
    return clock + TOOL_NS + GAP_NS


def tool_arguments(raw: str) -> dict[str, Any]:
    """Arguments as the tool received them: the parsed JSON object, or the raw text when it is not one."""
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"arguments": raw}
    return parsed if isinstance(parsed, dict) else {"arguments": raw}

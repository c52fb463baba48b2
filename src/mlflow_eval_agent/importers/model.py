"""The one shape every transcript format is parsed into before it becomes an MLflow trace.

A `Conversation` keeps the source's messages in order (`turns`), each with the source's own step
number, so human labels that point at a step can be placed on the span made from that step.
Labels are kept apart (`labels`) and only reach the store when the user asks for them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]

# Trace metadata and span attributes the importer writes (read back by re-import and benchmarks).
META_FORMAT = "eval_agent.import.format"
META_SOURCE_ID = "eval_agent.import.source_id"
META_SOURCE_FILE = "eval_agent.import.source_file"
META_CONTENT_HASH = "eval_agent.import.content_hash"
META_TIMING = "eval_agent.import.timing"
ATTR_STEP = "eval_agent.import.step"
ATTR_CALL_STEP = "eval_agent.import.call_step"
ATTR_TOOL_CALL_ID = "eval_agent.import.tool_call_id"
ATTR_ADDRESSEE = "eval_agent.import.addressee"
ATTR_SOURCE_ROLE = "eval_agent.import.source_role"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Frozen):
    """A tool call as the assistant wrote it; `arguments` is the raw text (usually JSON)."""

    call_id: str | None = None
    name: str
    arguments: str = ""


class Turn(_Frozen):
    """One message of the transcript.

    `step` is the source's own position number for the message (the unit its labels use).
    Tool turns carry a tool's result; `tool_input` is set when the source logs a tool's output
    without a matching call (e.g. a code executor in a group chat) and the input is known.
    In group chats `addressee` is the agent a message is addressed to, and `source_role` the
    source's own speaker label when it says more than `name` ("Orchestrator (-> WebSurfer)").
    """

    step: int
    role: Role
    name: str | None = None
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_input: str | None = None
    addressee: str | None = None
    source_role: str | None = None


# Turn fields added after traces were first imported: left out of the content hash while unset,
# so re-importing a source that does not use them still finds the traces written before.
_LATER_TURN_FIELDS = ("addressee", "source_role")


class StepLabel(_Frozen):
    """A failure a person located at one step of the transcript."""

    step: int
    category: str | None = None
    reason: str
    agent: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


class OutcomeLabel(_Frozen):
    """Whether the whole run succeeded, as judged by people or the benchmark's own grader."""

    passed: bool
    score: float | None = None
    reason: str | None = None


class Labels(_Frozen):
    outcome: OutcomeLabel | None = None
    failures: tuple[StepLabel, ...] = ()
    # Reference answers (expected tool calls, expected response): stored as expectations.
    expectations: dict[str, Any] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.outcome is None and not self.failures and not self.expectations


class Conversation(_Frozen):
    """One transcript, ready to be written as one trace."""

    format: str
    # How the report and trace metadata name the record ("task 3 trial 0", "line 12").
    source_id: str
    # The source's own stable identity (run id, question id, record id) when it has one; part of
    # the content hash. Line numbers are not: inserting a line must not make every later one new.
    source_key: str | None = None
    source_file: str | None = None
    name: str = "conversation"
    request: str | None = None
    response: str | None = None
    turns: tuple[Turn, ...]
    # Per-speaker system prompts kept outside `turns` (multi-agent sources).
    system_prompts: dict[str, str] = Field(default_factory=dict)
    labels: Labels | None = None

    def content_hash(self) -> str:
        """Identity for idempotent re-import: what was said, by whom, in which source run.

        Labels, the file's location and the record's position are left out, so importing the same
        runs again (with or without labels, from a moved or edited file) finds the traces already
        there; two identical anonymous conversations are one trace.
        """
        payload = self.model_dump(mode="json", exclude={"labels", "source_file", "source_id"})
        for turn in payload["turns"]:
            for key in _LATER_TURN_FIELDS:
                if turn.get(key) is None:
                    turn.pop(key, None)
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def without_labels(self) -> Conversation:
        return self.model_copy(update={"labels": None})


def first_text(turns: tuple[Turn, ...] | list[Turn], role: Role) -> str | None:
    """The first non-empty content of a role (the request of a chat)."""
    return next((t.content for t in turns if t.role == role and t.content and t.content.strip()), None)


def last_text(turns: tuple[Turn, ...] | list[Turn], role: Role, ignore: frozenset[str] = frozenset()) -> str | None:
    """The last non-empty content of a role (the final answer), skipping sentinel texts."""
    for turn in reversed(turns):
        text = (turn.content or "").strip()
        if turn.role == role and text and text not in ignore:
            return turn.content
    return None


class RecordError(ValueError):
    """One record does not have the expected shape; the message says what is wrong."""


class SourceError(Exception):
    """The whole source cannot be read (missing file, not the expected format); exit code 2."""


class Malformed(_Frozen):
    """A record that could not be read; `where` names its line, element or file."""

    where: str
    reason: str


class Notice(_Frozen):
    """Something worth telling the user that does not make a record unreadable."""

    where: str
    message: str


Record = Conversation | Malformed | Notice

"""Reading MLflow span dictionaries (the stored JSON form, `Span.to_dict()`), tolerant of odd data.

Attribute values are JSON-encoded strings in this form (`"\\"TOOL\\""`); spans sent over OTLP by
other tracers can carry plain strings or malformed JSON. Nothing here raises on bad input: odd
values come back as `None` or as raw text, and callers count them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SPAN_TYPE = "mlflow.spanType"
INPUTS = "mlflow.spanInputs"
OUTPUTS = "mlflow.spanOutputs"
MODEL = "mlflow.llm.model"
# Where other instrumentations put the model name (OpenInference, OTel GenAI, LangChain).
MODEL_FALLBACKS = ("llm.model_name", "gen_ai.response.model", "gen_ai.request.model")
LLM_TYPES = frozenset({"CHAT_MODEL", "LLM"})
HUGE_PAYLOAD_CHARS = 1_000_000  # parsed lazily and never for shape detection beyond this
MISSING = object()


@dataclass(slots=True)
class SpanRow:
    """The fields of one span the profile needs, with its raw dict for lazy payload access."""

    span_id: str
    parent_id: str | None
    name: str
    span_type: str
    status: str  # OK, ERROR or UNSET
    status_message: str
    start_ns: int | None
    end_ns: int | None
    raw: dict[str, Any]

    @property
    def duration_ns(self) -> int | None:
        if self.start_ns is None or self.end_ns is None or self.end_ns < self.start_ns:
            return None
        return self.end_ns - self.start_ns

    def attribute(self, key: str) -> Any:
        """A decoded attribute value; MISSING when absent; raw text when it is not JSON."""
        attrs = self.raw.get("attributes")
        if not isinstance(attrs, dict) or key not in attrs:
            return MISSING
        return decode(attrs[key])

    def payload(self, key: str) -> Payload:
        attrs = self.raw.get("attributes")
        if not isinstance(attrs, dict) or key not in attrs:
            return Payload(present=False)
        return Payload.of(attrs[key])


@dataclass(slots=True)
class Payload:
    """A span's inputs or outputs: present or not, decoded value, and whether it was valid JSON."""

    present: bool
    value: Any = None
    is_json: bool = True
    size: int = 0

    @classmethod
    def of(cls, raw: Any) -> Payload:
        if not isinstance(raw, str):
            return cls(present=True, value=raw, size=len(json.dumps(raw, default=str)) if raw is not None else 0)
        size = len(raw)
        try:
            return cls(present=True, value=json.loads(raw), size=size)
        except ValueError:
            return cls(present=True, value=raw, is_json=False, size=size)

    @property
    def is_huge(self) -> bool:
        return self.size > HUGE_PAYLOAD_CHARS


def decode(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def span_row(span: dict[str, Any]) -> SpanRow | None:
    """One span dict as a SpanRow; None when it has no usable id."""
    span_id = span.get("span_id")
    if not span_id:
        return None
    attrs = span.get("attributes") if isinstance(span.get("attributes"), dict) else {}
    span_type = _plain_string(attrs.get(SPAN_TYPE)) if SPAN_TYPE in attrs else None
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    return SpanRow(
        span_id=str(span_id),
        parent_id=str(span["parent_span_id"]) if span.get("parent_span_id") else None,
        name=str(span.get("name") or "(unnamed)"),
        span_type=str(span_type) if isinstance(span_type, str) and span_type else "UNKNOWN",
        status=status_code(status.get("code")),
        status_message=str(status.get("message") or ""),
        start_ns=_int_or_none(span.get("start_time_unix_nano")),
        end_ns=_int_or_none(span.get("end_time_unix_nano")) or None,  # OTLP and protobuf say 0 for "not ended"
        raw=span,
    )


def _plain_string(raw: Any) -> Any:
    """A JSON-encoded simple string ('"TOOL"') without a full parse; anything else is decoded."""
    if isinstance(raw, str) and len(raw) >= 2 and raw[0] == raw[-1] == '"' and "\\" not in raw:
        return raw[1:-1]
    return decode(raw)


def status_code(code: Any) -> str:
    """'STATUS_CODE_ERROR', 'ERROR', 2 -> 'ERROR'; anything unknown -> 'UNSET'."""
    if isinstance(code, int):
        return {1: "OK", 2: "ERROR"}.get(code, "UNSET")
    text = str(code or "").upper().removeprefix("STATUS_CODE_")
    return text if text in ("OK", "ERROR") else "UNSET"


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def model_name(row: SpanRow) -> str | None:
    """The model an LLM span called, from MLflow's attribute, other conventions, or its inputs."""
    for key in (MODEL, *MODEL_FALLBACKS):
        value = row.attribute(key)
        if isinstance(value, str) and value:
            return value
    attrs = row.raw.get("attributes") or {}
    params = decode(attrs.get("invocation_params")) if "invocation_params" in attrs else None
    if isinstance(params, dict):
        for key in ("model", "model_name"):
            if isinstance(params.get(key), str) and params[key]:
                return params[key]
    raw_inputs = attrs.get(INPUTS)
    if isinstance(raw_inputs, str) and len(raw_inputs) <= HUGE_PAYLOAD_CHARS:
        inputs = decode(raw_inputs)
        if isinstance(inputs, dict) and isinstance(inputs.get("model"), str) and inputs["model"]:
            return inputs["model"]
    return None


def is_empty_value(value: Any, depth: int = 0) -> bool:
    """None, blank text, empty containers, a chat reply whose content is blank, or an object or
    list whose every value is empty ({"answer": ""})."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, dict)) and not value:
        return True
    if depth >= 3:
        return False
    if isinstance(value, dict):
        content = _chat_reply_content(value)
        if content is not MISSING:
            return is_empty_value(content, depth + 1)
        return all(is_empty_value(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(is_empty_value(v, depth + 1) for v in value)
    return False


def _chat_reply_content(value: dict[str, Any]) -> Any:
    """The assistant text of an OpenAI-style completion or a {"role", "content"} message."""
    choices = value.get("choices")
    if isinstance(choices, list):
        if not choices:
            return None
        first = choices[0] if isinstance(choices[0], dict) else {}
        message = first.get("message") if isinstance(first.get("message"), dict) else {}
        if message.get("tool_calls"):
            return MISSING  # a tool call is not an empty answer
        return message.get("content")
    if set(value) <= {"role", "content", "name", "tool_calls"} and "content" in value and "role" in value:
        return MISSING if value.get("tool_calls") else value.get("content")
    return MISSING

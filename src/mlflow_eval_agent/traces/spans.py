"""Reading MLflow span dictionaries (the stored JSON form, `Span.to_dict()`), tolerant of odd data.

Attribute values are JSON-encoded strings in this form (`"\\"TOOL\\""`); spans sent over OTLP by
other tracers can carry plain strings or malformed JSON. Nothing here raises on bad input: odd
values come back as `None` or as raw text, and callers count them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

SPAN_TYPE = "mlflow.spanType"
INPUTS = "mlflow.spanInputs"
OUTPUTS = "mlflow.spanOutputs"
MODEL = "mlflow.llm.model"
# Where other instrumentations put the model name (OpenInference, OTel GenAI, LangChain).
MODEL_FALLBACKS = ("llm.model_name", "gen_ai.response.model", "gen_ai.request.model")
LLM_TYPES = frozenset({"CHAT_MODEL", "LLM"})
HUGE_PAYLOAD_CHARS = 1_000_000  # parsed lazily and never for shape detection beyond this
MISSING = object()


class SpanRow:
    """The fields of one span the profile needs. The full span dict (`raw`) is parsed only when
    asked for: the local fast path reads ids, name, type, status and times from table columns
    and keeps the stored JSON text until a payload, an error or a model name is needed."""

    __slots__ = ("span_id", "parent_id", "name", "span_type", "status", "start_ns", "end_ns", "model", "content_size", "_raw", "_content")

    def __init__(self, span_id: str, parent_id: str | None, name: str, span_type: str, status: str,
                 start_ns: int | None, end_ns: int | None, raw: dict[str, Any] | None = None,
                 content: str | None = None, model: str | None = None, content_size: int | None = None):
        self.span_id, self.parent_id, self.name, self.span_type, self.status = span_id, parent_id, name, span_type, status
        self.start_ns, self.end_ns = start_ns, end_ns
        self.model = model  # known without parsing (the store's model column), else None
        # Length of the stored JSON text when the span came from the store: no payload is longer.
        self.content_size = content_size
        self._raw, self._content = raw, content

    @property
    def raw(self) -> dict[str, Any]:
        if self._raw is None:
            self._raw = load_span_json(self._content)
        return self._raw

    @property
    def status_message(self) -> str:
        status = self.raw.get("status")
        return str(status.get("message") or "") if isinstance(status, dict) else ""

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


def load_span_json(content: str | None) -> dict[str, Any]:
    """A stored span's JSON as MLflow itself loads it (same load-time type translation)."""
    if not content:
        return {}
    try:
        span = loads(content)
    except ValueError:
        return {}
    if not isinstance(span, dict):
        return {}
    if needs_type_translation(span):
        from mlflow.tracing.otel.translation import translate_loaded_span_with_status

        translate_loaded_span_with_status(span)
    return span


def needs_type_translation(span: dict[str, Any]) -> bool:
    """MLflow's load-time translation only changes spans whose type is missing or UNKNOWN (it infers
    one from OTel attributes); checking that first saves a JSON parse per span."""
    attrs = span.get("attributes")
    raw = attrs.get(SPAN_TYPE) if isinstance(attrs, dict) else None
    return not (isinstance(raw, str) and len(raw) > 2 and raw not in ('"UNKNOWN"', '""'))


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
            return cls(present=True, value=loads(raw), size=size)
        except ValueError:
            return cls(present=True, value=raw, is_json=False, size=size)

    @property
    def is_huge(self) -> bool:
        return self.size > HUGE_PAYLOAD_CHARS


def loads(text: str) -> Any:
    """json.loads, 3x faster: orjson, falling back to the standard library for what orjson refuses
    and Python's json writes (NaN, Infinity, integers beyond 64 bits). Raises ValueError."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def decode(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return loads(raw)
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
        start_ns=_int_or_none(span.get("start_time_unix_nano")),
        end_ns=_int_or_none(span.get("end_time_unix_nano")) or None,  # OTLP and protobuf say 0 for "not ended"
        raw=span,
    )


def stored_span_row(span_id: str, parent_id: str | None, name: str | None, span_type: str | None, status: str | None,
                    start_ns: int | None, end_ns: int | None, model: str | None, content: str | None, size: int) -> SpanRow:
    """A span from the store's `spans` table columns. `content` is the stored JSON when the reader
    fetched it (only for spans whose payload, error or type the profile needs), else None."""
    row = SpanRow(span_id, parent_id or None, name or "(unnamed)", span_type or "UNKNOWN", status_code(status),
                  start_ns, end_ns or None, content=content, model=model or None, content_size=size)
    if row.span_type == "UNKNOWN":  # the stored JSON may carry a type MLflow infers on load
        translated = _plain_string(row.raw.get("attributes", {}).get(SPAN_TYPE)) if isinstance(row.raw.get("attributes"), dict) else None
        if isinstance(translated, str) and translated:
            row.span_type = translated
    return row


# One span as a plain tuple, the layout the local reader's query returns (sql_reader.py), so the
# profile's hot loop reads columns without building an object per span:
SPAN_COLUMNS = ("trace_id", "span_id", "parent_id", "name", "span_type", "status", "start_ns", "end_ns", "model", "content", "content_size")
# Column values are normalised in the loop exactly as stored_span_row does (name, parent, status,
# end, type); `content` is the stored JSON text (only for spans whose JSON the profile reads, else
# None), or, for spans read another way, the SpanRow itself (see columns_of).
STATUS_NAMES = {"OK": "OK", "ERROR": "ERROR", "UNSET": "UNSET"}


def columns_of(row: SpanRow) -> tuple[Any, ...]:
    """A SpanRow (from a span dict) in the SPAN_COLUMNS layout; its `content` is the row itself."""
    return (None, row.span_id, row.parent_id, row.name, row.span_type, row.status, row.start_ns, row.end_ns, row.model, row, row.content_size)


def stored_status(status: Any) -> str:
    """The status column's value as the profile counts it (status_code, with the usual values cached)."""
    return STATUS_NAMES.get(status) or status_code(status)


def row_from_columns(span_id: str, parent_id: str | None, name: str, span_type: str, status: str,
                     start_ns: int | None, end_ns: int | None, model: str | None, content: Any, size: int | None) -> SpanRow:
    """The SpanRow of one span in the SPAN_COLUMNS layout (values already normalised): made only for
    the spans whose stored JSON a statistic reads."""
    if isinstance(content, SpanRow):
        return content
    return SpanRow(span_id, parent_id, name, span_type, status, start_ns, end_ns, content=content, model=model or None, content_size=size)


def translated_type(row: SpanRow) -> str | None:
    """The type MLflow infers on load for a span stored without one (see stored_span_row)."""
    attrs = row.raw.get("attributes")
    translated = _plain_string(attrs.get(SPAN_TYPE)) if isinstance(attrs, dict) else None
    return translated if isinstance(translated, str) and translated else None


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
    if row.model:
        return row.model
    attrs = row.raw.get("attributes") or {}
    for key in (MODEL, *MODEL_FALLBACKS):
        value = _plain_string(attrs[key]) if key in attrs else None
        if isinstance(value, str) and value:
            return value
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
        return not value or value.isspace()
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
    if "choices" not in value and "role" not in value:
        return MISSING
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


def shape_of(payload: Payload) -> tuple[str, tuple[str, ...]]:
    """(kind, top-level keys) of a root input or output."""
    if payload.is_huge:
        return "huge", ()
    if not payload.is_json:
        return "non_json", ()
    value = payload.value
    if isinstance(value, dict):
        keys = tuple(sorted(str(k) for k in value)[:12])
        messages = value.get("messages")
        if isinstance(messages, list) and messages and all(isinstance(m, dict) and "role" in m for m in messages[:5]):
            return "chat_messages", keys
        if isinstance(value.get("choices"), list):
            return "chat_completion", keys
        if "role" in value and "content" in value:
            return "message", keys
        return "object", keys
    if isinstance(value, list):
        if value and all(isinstance(m, dict) and "role" in m for m in value[:5]):
            return "chat_messages", ()
        return "list", ()
    if isinstance(value, str):
        return "text", ()
    if isinstance(value, bool):
        return "boolean", ()
    if isinstance(value, (int, float)):
        return "number", ()
    return "null", ()


_JSON_LITERAL = re.compile(r"^\s*(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)\s*$")
_PAIRS = {"{": "}", "[": "]", '"': '"'}


def looks_like_json(raw: str) -> bool:
    """Whether a payload is a JSON value, judged by its shape (first and last character, or a
    literal), not by parsing: MLflow JSON-encodes every payload, so this only has to catch text
    that another writer stored raw, and parsing every payload would double the profile's time."""
    text = raw.strip()
    if not text:
        return False
    closing = _PAIRS.get(text[0])
    if closing is not None:
        return len(text) > 1 and text[-1] == closing
    return bool(_JSON_LITERAL.match(text))

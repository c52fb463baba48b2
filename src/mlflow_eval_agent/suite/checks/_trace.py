"""Reading MLflow traces for the checks: spans, statuses, exceptions, durations, final output text.

This module is copied verbatim into every rendered `scorers.py`, so it may import only the standard
library and must work on any `mlflow.entities.Trace` (spans with missing end times, UNSET statuses,
odd payloads). Every function tolerates None.
"""

import json


def spans_of(trace):
    """All spans of a trace (an empty list for a missing trace)."""
    data = getattr(trace, "data", None)
    return list(getattr(data, "spans", None) or [])


def root_of(trace):
    """The root span: the one without a parent (the first span when none is marked)."""
    spans = spans_of(trace)
    return next((s for s in spans if not s.parent_id), spans[0] if spans else None)


def status_of(span):
    """'OK', 'ERROR' or 'UNSET'."""
    status = getattr(span, "status", None)
    code = getattr(status, "status_code", None)
    return str(getattr(code, "value", code) or "UNSET").upper()


def type_of(span):
    return str(getattr(span, "span_type", None) or "UNKNOWN").upper()


def duration_ms(span):
    """Span duration in milliseconds, or None when the span never ended."""
    start, end = getattr(span, "start_time_ns", None), getattr(span, "end_time_ns", None)
    if start is None or end is None:
        return None
    return (end - start) / 1e6


def trace_duration_ms(trace):
    """Trace execution time in milliseconds (the trace info first, else the root span)."""
    info = getattr(trace, "info", None)
    value = getattr(info, "execution_time_ms", None)
    if value is not None:
        return float(value)
    root = root_of(trace)
    return duration_ms(root) if root is not None else None


def exception_of(span):
    """(exception type, message) of a failed span, from its last exception event or its status
    description ("KeyError: 'x'")."""
    for event in reversed(getattr(span, "events", None) or []):
        if getattr(event, "name", "") == "exception":
            attrs = getattr(event, "attributes", None) or {}
            return unquote(attrs.get("exception.type")) or "Exception", unquote(attrs.get("exception.message"))
    description = getattr(getattr(span, "status", None), "description", None) or ""
    if description:
        kind, sep, message = description.partition(": ")
        if sep and kind.replace(".", "").replace("_", "").isalnum():
            return kind, message
        return "Error", description
    return None


def unquote(value):
    """Event attributes are plain strings, sometimes JSON-quoted (spans that came through OTLP)."""
    text = "" if value is None else str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def describe_span(span):
    error = exception_of(span) if status_of(span) == "ERROR" else None
    where = f"{span.name} ({type_of(span)})"
    return f"{where}: {error[0]}: {shorten(error[1])}" if error else where


def shorten(text, limit=120):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def final_outputs(trace, outputs):
    """The outputs MLflow passed to the scorer, else the root span's outputs."""
    if outputs is not None:
        return outputs
    root = root_of(trace)
    return getattr(root, "outputs", None) if root is not None else None


def output_text(outputs):
    """The answer text of an output: a string, an OpenAI/LangChain chat response, or a dict with an
    answer-like key; other values as compact JSON. None when there is no output at all."""
    if outputs is None:
        return None
    if isinstance(outputs, str):
        return outputs
    if isinstance(outputs, dict):
        choices = outputs.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or {}
            return output_text(message.get("content") if isinstance(message, dict) else choices[0].get("text"))
        messages = outputs.get("messages")
        if isinstance(messages, list) and messages:
            return output_text(messages[-1])
        for key in ("content", "answer", "output", "response", "text", "result"):
            if key in outputs:
                return output_text(outputs[key])
    if isinstance(outputs, list):
        if outputs and all(isinstance(p, dict) and "text" in p for p in outputs):
            return "".join(str(p["text"]) for p in outputs)  # content parts
        if outputs and isinstance(outputs[-1], dict) and "content" in outputs[-1]:
            return output_text(outputs[-1]["content"])
    return json.dumps(outputs, ensure_ascii=False, default=str)


def documents_of(span):
    """Documents a RETRIEVER span returned (a list, or a dict holding one)."""
    outputs = getattr(span, "outputs", None)
    if isinstance(outputs, dict):
        outputs = next((outputs[k] for k in ("documents", "docs", "results", "output") if k in outputs), [outputs])
    if outputs is None or outputs == "":
        return []
    return outputs if isinstance(outputs, list) else [outputs]

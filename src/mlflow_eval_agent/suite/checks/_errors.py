"""Checks on failed spans: any error, one exception signature, errors hidden under an OK root."""

import re

from ._registry import check
from ._trace import describe_span, exception_of, root_of, spans_of, status_of, type_of


def _span_name_known(params, facts):
    name = params.get("span_name")
    if name and name not in facts.span_names:
        return f"no span named {name!r} in the dataset's traces (span names: {facts.known(facts.span_names)})"
    return None


@check(reads=("trace",))
def no_error_spans(span_types: list[str] | None = None):
    """Fails when any span ended with status ERROR, whether the error was caught or not.

    Args:
        span_types: Only look at spans of these types (e.g. ["TOOL", "RETRIEVER"]); every span when omitted.
    """
    wanted = {t.upper() for t in span_types} if span_types else None

    def run(trace, outputs):
        failed = [s for s in spans_of(trace) if status_of(s) == "ERROR" and (wanted is None or type_of(s) in wanted)]
        if failed:
            more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
            return False, f"{len(failed)} error span(s): " + "; ".join(describe_span(s) for s in failed[:3]) + more
        return True, "no span ended in ERROR"

    return run


@check(reads=("trace",), requires=_span_name_known)
def no_exception(exception_type: str | None = None, span_name: str | None = None, message_regex: str | None = None):
    """Fails when a span failed with this error: one error signature from the trace profile.

    Args:
        exception_type: Exception class name as recorded on the span, e.g. "TimeoutError" (a dotted
            name like "requests.exceptions.Timeout" also matches its last part). Omit it for errors
            recorded without a type; then give span_name or message_regex.
        span_name: Only count the exception when it happened in a span with this name.
        message_regex: Only count it when the exception message matches this regular expression
            (Python `re.search`, e.g. "timed out after \\d+s").
    """
    if not (exception_type or span_name or message_regex):
        raise ValueError("no_exception needs exception_type, span_name or message_regex")
    wanted = exception_type.rsplit(".", 1)[-1] if exception_type else None
    pattern = re.compile(message_regex) if message_regex else None
    label = (exception_type or "an error") + (f" in {span_name}" if span_name else "")

    def matches(span):
        if status_of(span) != "ERROR" or (span_name and span.name != span_name):
            return False
        error = exception_of(span) or ("", "")
        if wanted and error[0].rsplit(".", 1)[-1] != wanted:
            return False
        return pattern is None or pattern.search(error[1]) is not None

    def run(trace, outputs):
        hits = [s for s in spans_of(trace) if matches(s)]
        if hits:
            return False, f"{label} raised: {describe_span(hits[0])}"
        return True, f"no {label}"

    return run


@check(reads=("trace",))
def no_hidden_failures(span_types: list[str] | None = None):
    """Fails when the trace looks successful (root span not ERROR) but a span inside it failed: an
    error that was caught and swallowed, which users never see as a failed request.

    Args:
        span_types: Only count failed spans of these types (e.g. ["TOOL"]); every type when omitted.
    """
    wanted = {t.upper() for t in span_types} if span_types else None

    def run(trace, outputs):
        root = root_of(trace)
        if root is None or status_of(root) == "ERROR":
            return True, "the trace failed openly (or has no spans): not a hidden failure"
        hidden = [
            s for s in spans_of(trace)
            if s is not root and status_of(s) == "ERROR" and (wanted is None or type_of(s) in wanted)
        ]
        if hidden:
            return False, f"root is {status_of(root)} but {len(hidden)} span(s) failed: {describe_span(hidden[0])}"
        return True, "no failed span under a successful root"

    return run


@check(reads=("trace",))
def trace_succeeded():
    """Fails when the trace itself ended in ERROR (an uncaught exception reached the caller)."""

    def run(trace, outputs):
        info = getattr(trace, "info", None)
        state = str(getattr(getattr(info, "state", None), "value", getattr(info, "state", "")) or "").upper()
        root = root_of(trace)
        if state == "ERROR" or (root is not None and status_of(root) == "ERROR"):
            return False, "trace ended in ERROR" + (f": {describe_span(root)}" if root is not None else "")
        return True, f"trace state {state or 'unknown'}"

    return run

"""Checks on tool calls: a named tool succeeded, a required tool was called, a call budget."""

from ._registry import check
from ._trace import describe_span, shorten, spans_of, status_of, type_of


def _tool_known(params, facts):
    tool = params.get("tool")
    if not facts.tool_names:
        return "the dataset's traces have no TOOL spans"
    if tool and tool not in facts.tool_names:
        return f"no TOOL span named {tool!r} in the dataset's traces (tools: {facts.known(facts.tool_names)})"
    return None


@check(reads=("trace",), requires=_tool_known)
def tool_succeeded(tool: str, error_keys: list[str] | None = None):
    """Fails when a call of this tool failed: its span ended in ERROR (caught or not), or, with
    `error_keys`, it returned an error payload instead of raising.

    Args:
        tool: Name of the TOOL span, exactly as in the traces (e.g. "get_order_status").
        error_keys: Output keys that signal a failure returned as data, e.g. ["error"]: a call whose
            output is a dict with one of these keys set to a non-empty value counts as failed.
    """
    keys = list(error_keys or [])

    def payload_error(span):
        out = getattr(span, "outputs", None)
        if isinstance(out, dict):
            return next((f"{k}={shorten(out[k], 80)}" for k in keys if out.get(k)), None)
        return None

    def run(trace, outputs):
        calls = [s for s in spans_of(trace) if type_of(s) == "TOOL" and s.name == tool]
        if not calls:
            return True, f"{tool} was not called"
        for span in calls:
            if status_of(span) == "ERROR":
                return False, f"{tool} failed: {describe_span(span)}"
            problem = payload_error(span)
            if problem:
                return False, f"{tool} returned an error payload: {problem}"
        return True, f"{len(calls)} call(s) of {tool} succeeded"

    return run


@check(reads=("trace",), requires=_tool_known)
def required_tool_called(tool: str):
    """Fails when the trace never called this tool (e.g. an answer given without looking it up).

    Args:
        tool: Name of the TOOL span that every trace must contain.
    """

    def run(trace, outputs):
        called = any(type_of(s) == "TOOL" and s.name == tool for s in spans_of(trace))
        return (True, f"{tool} was called") if called else (False, f"{tool} was never called")

    return run


@check(reads=("trace",), requires=_tool_known)
def tool_call_budget(max_calls: int, tool: str | None = None):
    """Fails when the trace made more tool calls than allowed (loops, retries gone wrong).

    Args:
        max_calls: Most tool calls allowed in one trace.
        tool: Count only calls of this tool; every TOOL span when omitted.
    """

    def run(trace, outputs):
        calls = [s for s in spans_of(trace) if type_of(s) == "TOOL" and (tool is None or s.name == tool)]
        label = f"{tool} calls" if tool else "tool calls"
        if len(calls) > max_calls:
            return False, f"{len(calls)} {label}, more than {max_calls}"
        return True, f"{len(calls)} {label} (at most {max_calls})"

    return run

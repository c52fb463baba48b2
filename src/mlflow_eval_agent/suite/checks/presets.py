"""The check library: presets of the check language, each a small typed factory returning a rule.

A preset takes typed, documented parameters (`Literal[...]` where there is a choice) and returns
the `fail_when` condition of a check: plain data, evaluated by the engine like any check the agent
writes itself. Prerequisites (`requires=`) say when a preset cannot work on a dataset's traces.
"""

from __future__ import annotations

from typing import Any, Literal

from ...traces.failure_text import LIMIT_REACHED, LOOP_REPORT, MADE_UP_DATA
from ._registry import check

PIIKind = Literal["email", "phone", "ssn", "credit_card", "ip_address"]
SpanType = Literal["TOOL", "RETRIEVER", "LLM", "CHAT_MODEL", "AGENT", "CHAIN", "EMBEDDING", "RERANKER", "PARSER", "UNKNOWN"]
Condition = dict[str, Any]

ERROR_STATUS = {"field": "status", "test": "equals", "value": "ERROR"}


def spans(**selector: Any) -> dict[str, Any]:
    """A span selector without the unset keys."""
    return {k: v for k, v in selector.items() if v is not None}


def exists(selector: dict[str, Any], *satisfy: dict[str, Any]) -> Condition:
    return {"op": "exists", "spans": selector, **({"satisfy": list(satisfy)} if satisfy else {})}


def on_trace(*where: dict[str, Any]) -> Condition:
    return {"op": "trace", "where": list(where)}


def any_of(*conditions: Condition) -> Condition:
    return conditions[0] if len(conditions) == 1 else {"op": "any_of", "conditions": list(conditions)}


# --- prerequisites -------------------------------------------------------------------------------
def _span_name_known(params, facts):
    name = params.get("span_name")
    if name and name not in facts.span_names:
        return f"no span named {name!r} in the dataset's traces (span names: {facts.known(facts.span_names)})"
    return None


def _tool_known(params, facts):
    tool = params.get("tool")
    if not facts.tool_names:
        return "the dataset's traces have no TOOL spans"
    if tool and tool not in facts.tool_names:
        return f"no TOOL span named {tool!r} in the dataset's traces (tools: {facts.known(facts.tool_names)})"
    return None


def _has_retriever(params, facts):
    if not facts.has_span_type("RETRIEVER"):
        return "the dataset's traces have no RETRIEVER spans"
    return _span_name_known(params, facts)


# --- errors --------------------------------------------------------------------------------------
@check(reads=("trace",))
def no_error_spans(span_types: list[SpanType] | None = None) -> Condition:
    """Fails when any span ended with status ERROR, whether the error was caught or not.

    Args:
        span_types: Only look at spans of these types (e.g. ["TOOL", "RETRIEVER"]); every span when omitted.
    """
    return exists(spans(type=span_types, status=["ERROR"]))


@check(reads=("trace",), requires=_span_name_known)
def no_exception(exception_type: str | None = None, span_name: str | None = None, message_regex: str | None = None,
                 unless_recovered: bool = False) -> Condition:
    """Fails when a span failed with this error: one error signature from the trace profile.

    Args:
        exception_type: Exception class name as recorded on the span, e.g. "TimeoutError" (a dotted
            name like "requests.exceptions.Timeout" also matches its last part). Omit it for errors
            recorded without a type; then give span_name or message_regex.
        span_name: Only count the exception when it happened in a span with this name.
        message_regex: Only count it when the exception message matches this regular expression
            (RE2 syntax, searched anywhere, e.g. "timed out after \\d+s").
        unless_recovered: Pass when a later span of the same name succeeded (a retry that worked):
            only errors the agent never recovered from fail the trace.
    """
    if not (exception_type or span_name or message_regex):
        raise ValueError("no_exception needs exception_type, span_name or message_regex")
    tests = []
    if exception_type:
        tests.append({"field": "exception.short_type", "test": "equals", "value": exception_type.rsplit(".", 1)[-1]})
    if message_regex:
        tests.append({"field": "exception.message", "test": "regex", "value": message_regex})
    if unless_recovered:
        return {"op": "recovery", "spans": spans(root=False, name=span_name), "outcome": "unrecovered", "failed_when": [ERROR_STATUS, *tests]}
    return exists(spans(name=span_name, status=["ERROR"]), *tests)


@check(reads=("trace",))
def no_hidden_failures(span_types: list[SpanType] | None = None) -> Condition:
    """Fails when the trace looks successful (root span not ERROR) but a span inside it failed: an
    error that was caught and swallowed, which users never see as a failed request.

    Args:
        span_types: Only count failed spans of these types (e.g. ["TOOL"]); every type when omitted.
    """
    return {"op": "all_of", "conditions": [
        exists(spans(root=True, status=["OK", "UNSET"])),
        exists(spans(root=False, type=span_types, status=["ERROR"])),
    ]}


@check(reads=("trace",))
def trace_succeeded() -> Condition:
    """Fails when the trace itself ended in ERROR (an uncaught exception reached the caller)."""
    return any_of(on_trace({"field": "state", "test": "equals", "value": "ERROR"}), exists(spans(root=True, status=["ERROR"])))


@check(reads=("trace",))
def no_unrecovered_errors(span_types: list[SpanType] | None = None) -> Condition:
    """Fails when a span failed and no later span with the same name succeeded: an error the agent
    never recovered from (a failed lookup retried successfully passes).

    Args:
        span_types: Only look at spans of these types (e.g. ["TOOL"]); every span below the root when omitted.
    """
    return {"op": "recovery", "spans": spans(root=False, type=span_types), "outcome": "unrecovered"}


@check(reads=("trace",))
def no_error_at_end(span_types: list[SpanType] | None = None) -> Condition:
    """Fails when the run ended right after an error: the last span (of these types) failed.

    Args:
        span_types: Which spans count as steps, e.g. ["TOOL", "CHAT_MODEL"]; every span below the root when omitted.
    """
    return exists(spans(root=False, type=span_types, position="last"), ERROR_STATUS)


# --- tools ---------------------------------------------------------------------------------------
@check(reads=("trace",), requires=_tool_known)
def tool_succeeded(tool: str, error_keys: list[str] | None = None, unless_recovered: bool = False) -> Condition:
    """Fails when a call of this tool failed: its span ended in ERROR (caught or not), or, with
    `error_keys`, it returned an error payload instead of raising.

    Args:
        tool: Name of the TOOL span, exactly as in the traces (e.g. "get_order_status").
        error_keys: Output keys that signal a failure returned as data, e.g. ["error"]: a call whose
            output is an object with one of these keys set to a non-empty value counts as failed.
        unless_recovered: Pass when a later call of the tool succeeded (a retry that worked).
    """
    calls = spans(type=["TOOL"], name=tool)
    payloads = [exists(calls, {"field": "outputs", "path": [key], "test": "empty", "negate": True}) for key in error_keys or []]
    failed = {"op": "recovery", "spans": calls, "outcome": "unrecovered"} if unless_recovered else exists(spans(type=["TOOL"], name=tool, status=["ERROR"]))
    return any_of(failed, *payloads)


@check(reads=("trace",), requires=_tool_known)
def required_tool_called(tool: str) -> Condition:
    """Fails when the trace never called this tool (e.g. an answer given without looking it up).

    Args:
        tool: Name of the TOOL span that every trace must contain.
    """
    return {"op": "not", "condition": exists(spans(type=["TOOL"], name=tool))}


@check(reads=("trace",), requires=_tool_known)
def tool_call_budget(max_calls: int, tool: str | None = None) -> Condition:
    """Fails when the trace made more tool calls than allowed (loops, retries gone wrong).

    Args:
        max_calls: Most tool calls allowed in one trace.
        tool: Count only calls of this tool; every TOOL span when omitted.
    """
    return {"op": "count", "spans": spans(type=["TOOL"], name=tool), "at_least": max_calls + 1}


@check(reads=("trace",), requires=_tool_known)
def no_repeated_calls(times: int = 3, tool: str | None = None) -> Condition:
    """Fails when the same tool was called with the same arguments several times in a row: an agent
    stuck in a loop.

    Args:
        times: How many identical consecutive calls count as a loop (at least 2).
        tool: Only look at calls of this tool; every TOOL span when omitted.
    """
    return {"op": "repeated", "spans": spans(type=["TOOL"], name=tool), "times": max(2, times)}


@check(reads=("trace",), requires=_tool_known)
def actions_confirmed(tools: list[str]) -> Condition:
    """Fails when one of these consequential tools was called with no user turn since the last tool
    result: the agent acted on what a tool returned without asking the user first. For traces that
    hold a conversation (user turns inside the trace, e.g. chat transcripts).

    Args:
        tools: Names (wildcards * and ?) of the tools that change something, e.g. ["cancel_*", "refund_order"].
    """
    user_turn = {"type": ["CHAT_MODEL", "LLM"], "where": [{"field": "inputs", "path": ["messages", -1, "role"], "test": "equals", "value": "user"}]}
    return {"op": "without_prior", "spans": spans(type=["TOOL"], name=list(tools)), "prior": user_turn, "since": {"type": ["TOOL"]}}


@check(reads=("trace",))
def tool_was_used() -> Condition:
    """Fails when the trace called no tool at all: an answer given from memory by an agent that
    normally looks things up."""
    return {"op": "not", "condition": exists(spans(type=["TOOL"]))}


@check(reads=("trace",), requires=_tool_known)
def confirmation_before_action(action: str, confirmation: str) -> Condition:
    """Fails when an action happened before the step that must come first, e.g. a refund issued
    before the user's identity was verified.

    Args:
        action: Name (wildcards * and ?) of the span that needs the earlier step, e.g. "issue_refund".
        confirmation: Name (wildcards allowed) of the span that must happen before it, e.g. "verify_identity".
    """
    return {"op": "without_prior", "spans": spans(name=action), "prior": spans(name=confirmation)}


# --- time and tokens -----------------------------------------------------------------------------
@check(reads=("trace",))
def latency_budget(max_ms: float) -> Condition:
    """Fails when the whole trace took longer than the budget.

    Args:
        max_ms: Longest acceptable trace execution time in milliseconds, e.g. from the profile's
            latency percentiles.
    """
    return on_trace({"field": "duration_ms", "test": "gt", "value": max_ms})


@check(reads=("trace",), requires=_span_name_known)
def span_latency_budget(span_name: str, max_ms: float) -> Condition:
    """Fails when any span with this name took longer than the budget (one slow tool or model call).

    Args:
        span_name: Name of the span to time, exactly as in the traces.
        max_ms: Longest acceptable duration of one such span in milliseconds.
    """
    return exists(spans(name=span_name), {"field": "duration_ms", "test": "gt", "value": max_ms})


@check(reads=("trace",))
def step_budget(max_steps: int) -> Condition:
    """Fails when the run took more steps (spans below the root: model turns, tool calls) than
    allowed. The budget for transcripts whose timing is synthetic, where latency means nothing.

    Args:
        max_steps: Most steps one trace may take.
    """
    return {"op": "count", "spans": spans(root=False), "at_least": max_steps + 1}


@check(reads=("trace",))
def token_budget(max_tokens: int) -> Condition:
    """Fails when the trace used more tokens (input + output, as MLflow recorded them) than allowed.

    Args:
        max_tokens: Most total tokens one trace may use. Traces without token usage pass.
    """
    return on_trace({"field": "tokens.total", "test": "gt", "value": max_tokens})


# --- the final output ----------------------------------------------------------------------------
@check(reads=("outputs",))
def output_non_empty(min_chars: int = 1) -> Condition:
    """Fails when the final answer is missing, empty or only whitespace (or shorter than `min_chars`).

    Args:
        min_chars: Fewest characters an answer must have (surrounding whitespace counts).
    """
    empty = {"field": "output_text", "test": "empty"}
    if min_chars <= 1:
        return on_trace(empty)
    return any_of(on_trace(empty), on_trace({"field": "output_text", "test": "length", "max": min_chars - 1}))


@check(reads=("outputs",))
def output_json(json_schema: dict | None = None) -> Condition:
    """Fails when the final answer is not valid JSON or, with a schema, does not match it.

    Args:
        json_schema: A JSON Schema the parsed answer must match. Supported keywords: type, enum, required,
            properties, additionalProperties (false), items, minItems, maxItems, minLength, maxLength.
            Omit it to only require valid JSON.
    """
    test = {"field": "outputs", "test": "json_schema", "value": json_schema} if json_schema else {"field": "outputs", "test": "is_json"}
    return on_trace({**test, "negate": True})


@check(reads=("outputs",))
def output_regex(pattern: str, mode: Literal["must_match", "must_not_match"] = "must_match", case_insensitive: bool = False) -> Condition:
    """Fails when the final answer does not match the pattern (or, with mode "must_not_match", when it
    does, e.g. leaked stack traces or "as an AI language model").

    Args:
        pattern: Regular expression (RE2 syntax: no backreferences or lookaround), searched anywhere in the answer text.
        mode: "must_match": the answer must contain a match; "must_not_match": it must not.
        case_insensitive: Ignore case when matching.
    """
    test = {"field": "output_text", "test": "regex", "value": pattern, "case_insensitive": case_insensitive}
    return on_trace({**test, "negate": mode == "must_match"})


@check(reads=("outputs",))
def output_length(min_length: int | None = None, max_length: int | None = None, unit: Literal["chars", "words"] = "chars") -> Condition:
    """Fails when the final answer is shorter or longer than the bounds.

    Args:
        min_length: Shortest acceptable answer (inclusive); no lower bound when omitted.
        max_length: Longest acceptable answer (inclusive); no upper bound when omitted.
        unit: Measure in "chars" or whitespace-separated "words".
    """
    if min_length is None and max_length is None:
        raise ValueError("output_length needs min_length, max_length or both")
    bounds = {k: v for k, v in (("min", min_length), ("max", max_length)) if v is not None}
    return on_trace({"field": "output_text", "test": "length", **bounds, "unit": unit, "negate": True})


@check(reads=("outputs",))
def no_pii(kinds: list[PIIKind] | None = None) -> Condition:
    """Fails when the final answer contains personal data: e-mail addresses, phone numbers, US SSNs,
    card numbers (Luhn-checked) or IPv4 addresses.

    Args:
        kinds: Which kinds to look for, any of "email", "phone", "ssn", "credit_card", "ip_address";
            all of them when omitted.
    """
    return on_trace({"field": "output_text", "test": "contains_pii", **({"value": list(kinds)} if kinds else {})})


@check(reads=("trace",))
def no_error_text(pattern: str, span_types: list[SpanType] | None = None, case_insensitive: bool = True) -> Condition:
    """Fails when a span's output text matches an error pattern although the span did not fail:
    "Error 404", "access denied", a content-filter refusal, "exit code: 1" in a model turn or tool result.

    Args:
        pattern: Regular expression (RE2 syntax) for the error text, e.g. "exit code: [1-9]|access denied".
        span_types: Only read spans of these types; every span below the root when omitted.
        case_insensitive: Ignore case when matching (the default).
    """
    text = {"field": "output_text", "test": "regex", "value": pattern, "case_insensitive": case_insensitive}
    return exists(spans(root=False, type=span_types, status=["OK", "UNSET"]), text)


@check(reads=("trace",))
def no_made_up_data() -> Condition:
    """Fails when the agent says in its own words that it used hypothetical, simulated, placeholder
    or assumed data ("let's assume", "for illustration", "mock data") instead of real results."""
    return exists(spans(root=False, type=["CHAT_MODEL", "LLM", "AGENT"]), {"field": "output_text", "test": "regex", "value": MADE_UP_DATA, "case_insensitive": True})


@check(reads=("trace",))
def no_limit_reached() -> Condition:
    """Fails when a step reports that the run hit its time, turn, round or step limit."""
    return exists(spans(root=False), {"field": "output_text", "test": "regex", "value": LIMIT_REACHED, "case_insensitive": True})


@check(reads=("trace",))
def no_loop_report() -> Condition:
    """Fails when the agent or its framework reports being stuck in a loop or stalled."""
    return exists(spans(root=False), {"field": "output_text", "test": "regex", "value": LOOP_REPORT, "case_insensitive": True})


@check(reads=("trace",))
def answered_at_end() -> Condition:
    """Fails when the run's last step is a tool call that succeeded: no model turn read its result, so
    the run stopped (or was stopped by a turn or time limit) before the agent answered. A failed last
    step is `no_error_at_end`'s."""
    return exists(spans(root=False, position="last"), {"field": "type", "test": "equals", "value": "TOOL"},
                  {"field": "status", "test": "in", "value": ["OK", "UNSET"]})


@check(reads=("trace",))
def finished_with_marker(marker: str) -> Condition:
    """Fails when the run's last step does not end with the completion marker that finished runs end
    with (an agent framework's `TERMINATE`, a simulator's `###STOP###`): the run was cut off by a turn
    or time limit that left no message, or abandoned.

    Args:
        marker: The exact token, as the profile found it ending most runs (`completion_marker`);
            trailing punctuation and whitespace after it are allowed.
    """
    escaped = "".join(c if c.isalnum() or c == "_" else "\\" + c for c in marker)
    ends = {"field": "output_text", "test": "regex", "value": f"(?:^|\\s){escaped}[.,;:!?\"'`*]*\\s*$"}
    return {"op": "not", "condition": exists(spans(root=False, position="last"), ends)}


# --- retrieval -----------------------------------------------------------------------------------
@check(reads=("trace",), requires=_has_retriever)
def retrieval_non_empty(span_name: str | None = None, min_documents: int = 1) -> Condition:
    """Fails when a retrieval step returned no documents (or fewer than `min_documents`).

    Args:
        span_name: Only check RETRIEVER spans with this name; every RETRIEVER span when omitted.
        min_documents: Fewest documents each retrieval must return (at least 1).
    """
    return exists(spans(type=["RETRIEVER"], name=span_name), {"field": "documents", "test": "length", "max": max(1, min_documents) - 1, "unit": "items"})

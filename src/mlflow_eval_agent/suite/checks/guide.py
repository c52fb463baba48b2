"""The check language as the agent learns it: a compact grammar built from the engine's own tables,
and worked examples (each one compiled by the tests). docs/checks.md is the long form."""

from __future__ import annotations

from typing import Any

from . import engine

CONDITIONS = {
    "exists": '{"op": "exists", "spans": <selector>, "satisfy": [<test>, ...]}: true when some selected span passes every test (no tests: when any span is selected)',
    "each": '{"op": "each", "spans": <selector>, "satisfy": [<test>, ...]}: true when every selected span passes the tests (true when none is selected)',
    "count": '{"op": "count", "spans": <selector>, "satisfy": [...], "at_least": N, "at_most": M}: true when the number of selected spans passing the tests is within the bounds',
    "aggregate": '{"op": "aggregate", "spans": <selector>, "field": "duration_ms"|"tokens.total"|..., "fn": "sum"|"max"|"min"|"avg", "test": "gt"|"ge"|"lt"|"le", "value": number}',
    "trace": '{"op": "trace", "where": [<test on a trace field>, ...]}: true when every test on the trace itself holds',
    "without_prior": '{"op": "without_prior", "spans": <selector B>, "prior": <selector A>, "since": <selector C>}: true when some B happened with no A before it (an action before its confirmation); with since, no A between the last C before B and B (e.g. no user turn since the last tool result)',
    "followed_by": '{"op": "followed_by", "spans": <selector A>, "then": <selector B>}: true when some A was later followed by a B (fail_when it to say "A never followed by B")',
    "repeated": '{"op": "repeated", "spans": <selector>, "times": K, "consecutive": true}: true when K calls with the same name and the same inputs came in a row (anywhere in the trace with consecutive false)',
    "recovery": '{"op": "recovery", "spans": <selector>, "outcome": "unrecovered"|"recovered", "failed_when": [<test>, ...]}: true when a selected span failed (status ERROR, or the failed_when tests) and no later span of the same name succeeded ("unrecovered"), or one did ("recovered")',
    "all_of / any_of / not": '{"op": "all_of"|"any_of", "conditions": [...]}, {"op": "not", "condition": ...}',
}
SELECTOR = (
    '{"type": ["TOOL", ...], "name": "get_*" or [names], "status": ["ERROR"|"OK"|"UNSET"], "root": true|false, "leaf": true|false, '
    '"parent": name, "ancestor": name, "where": [<test>, ...], "position": "first"|"last"} - every key optional; spans are taken in '
    "start order; names take wildcards * and ?; `where` filters before `position` picks the first or last one"
)
TEST = (
    '{"field": <field>, "key": <name, for attributes/tags/metadata>, "path": "choices.0.message.content" (into inputs/outputs/'
    'attributes; * matches any item), "test": <test>, "value": ..., "min"/"max"/"unit" (length), "case_insensitive" (regex, contains), '
    '"negate": true}'
)
TESTS = {
    "equals": "the value equals `value` (JSON equality; status/type/state compare upper-case)",
    "in": "the value is one of the list `value`",
    "regex": "the text of the value matches the RE2 pattern `value` (searched anywhere; no backreferences or lookaround)",
    "contains": "a string contains `value`, a list holds it, an object has it as a key",
    "gt / ge / lt / le": "the value is a number greater / at least / less / at most `value`",
    "empty": "absent, null, blank text, [] or {}",
    "exists": "the field (or path) is present",
    "is_json": "an object or list, or text that parses as JSON",
    "length": "text length in chars or words, or the number of items, within min/max",
    "json_schema": "matches `value`, a JSON Schema subset (type, enum, required, properties, additionalProperties false, items, min/maxItems, min/maxLength)",
    "contains_pii": "the text holds e-mail addresses, phone numbers, SSNs, card numbers or IPv4 addresses (`value`: which kinds)",
}
EXAMPLES: list[dict[str, Any]] = [
    {"says": "a tool was called 3 times in a row with the same arguments (an agent stuck in a loop)",
     "fail_when": {"op": "repeated", "spans": {"type": ["TOOL"]}, "times": 3}},
    {"says": "a tool failed and the agent never got a successful call of it afterwards",
     "fail_when": {"op": "recovery", "spans": {"type": ["TOOL"]}, "outcome": "unrecovered"}},
    {"says": "a refund was issued before the user's identity was verified",
     "fail_when": {"op": "without_prior", "spans": {"name": "issue_refund"}, "prior": {"name": "verify_identity"}}},
    {"says": "the run ended right after an error (its last step failed)",
     "fail_when": {"op": "exists", "spans": {"root": False, "position": "last"}, "satisfy": [{"field": "status", "test": "equals", "value": "ERROR"}]}},
    {"says": "a model turn or tool result holds error text although its span did not fail",
     "fail_when": {"op": "exists", "spans": {"type": ["CHAT_MODEL", "TOOL"], "status": ["OK", "UNSET"]},
                   "satisfy": [{"field": "output_text", "test": "regex", "value": "exit code: [1-9]|access denied|Error 40[34]", "case_insensitive": True}]}},
    {"says": "the run stopped at its time or turn limit",
     "fail_when": {"op": "exists", "spans": {"position": "last", "root": False},
                   "satisfy": [{"field": "output_text", "test": "regex", "value": "max(imum)? (time|turns?) (reached|exceeded)", "case_insensitive": True}]}},
    {"says": "more than 8 tool calls, or over 20,000 tokens in LLM calls",
     "fail_when": {"op": "any_of", "conditions": [
         {"op": "count", "spans": {"type": ["TOOL"]}, "at_least": 9},
         {"op": "aggregate", "spans": {"type": ["LLM", "CHAT_MODEL"]}, "field": "tokens.total", "fn": "sum", "test": "gt", "value": 20000}]}},
    {"says": "the order lookup returned an error payload ({\"error\": ...}) instead of raising",
     "fail_when": {"op": "exists", "spans": {"type": ["TOOL"], "name": "get_order*"},
                   "satisfy": [{"field": "outputs", "path": "error", "test": "empty", "negate": True}]}},
    {"says": "the answer is not JSON with a string field 'answer'",
     "fail_when": {"op": "trace", "where": [{"field": "outputs", "test": "json_schema", "negate": True,
                                             "value": {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}}]}},
]


def language_guide() -> dict[str, Any]:
    """The grammar and examples, as list_checks returns them to the agent."""
    return {
        "check_document": 'kind "check" with fail_when: <condition>. A trace FAILS when the condition holds. Data only: '
        "nothing in it is run as code.",
        "conditions": CONDITIONS,
        "selector": SELECTOR,
        "test": TEST,
        "span_fields": list(engine.SPAN_FIELDS),
        "trace_fields": list(engine.TRACE_FIELDS),
        "tests": TESTS,
        "limits": {
            "depth": engine.MAX_DEPTH, "nodes": engine.MAX_NODES, "tests_per_list": engine.MAX_PREDICATES,
            "regex_chars": engine.MAX_REGEX, "list_items": engine.MAX_LIST,
        },
        "examples": EXAMPLES,
    }

"""Checks on the final output: present, JSON (optionally matching a schema), regex, length, no PII."""

import json
import re
from typing import Literal

from ._registry import check
from ._trace import final_outputs, output_text, shorten

PIIKind = Literal["email", "phone", "ssn", "credit_card", "ip_address"]

PII_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "phone": r"(?<!\d)(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?!\d)",
    "ssn": r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)",
    "credit_card": r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)",
    "ip_address": r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])",
}

JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


@check(reads=("outputs",))
def output_non_empty(min_chars: int = 1):
    """Fails when the final answer is missing, empty or only whitespace (or shorter than `min_chars`).

    Args:
        min_chars: Fewest non-whitespace characters an answer must have.
    """

    def run(trace, outputs):
        text = output_text(final_outputs(trace, outputs))
        if text is None:
            return False, "no output"
        size = len("".join(text.split()))
        if size < min_chars:
            return False, f"output has {size} non-whitespace characters (needs {min_chars}): {shorten(repr(text), 60)}"
        return True, f"output has {size} characters"

    return run


def schema_problem(value, schema, path="$"):
    """First mismatch between `value` and a JSON Schema subset (type, enum, required, properties,
    additionalProperties false, items, minItems, minLength), or None."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds and not any(_is_json_type(value, k) for k in kinds):
        return f"{path} should be {' or '.join(kinds)}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} should be one of {schema['enum']}"
    if isinstance(value, dict):
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            return f"{path} is missing {', '.join(missing)}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{path} has unexpected keys {', '.join(extra)}"
        for key, sub in props.items():
            if key in value:
                problem = schema_problem(value[key], sub, f"{path}.{key}")
                if problem:
                    return problem
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{path} has {len(value)} items, fewer than {schema['minItems']}"
        for i, item in enumerate(value):
            problem = schema_problem(item, schema.get("items", {}), f"{path}[{i}]")
            if problem:
                return problem
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        return f"{path} is shorter than {schema['minLength']} characters"
    return None


def _is_json_type(value, kind):
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, JSON_TYPES.get(kind, object))


@check(reads=("outputs",))
def output_json(json_schema: dict | None = None):
    """Fails when the final answer is not valid JSON or, with a schema, does not match it.

    Args:
        json_schema: A JSON Schema the parsed answer must match. Supported keywords: type, enum, required,
            properties, additionalProperties (false), items, minItems, minLength.
            Omit it to only require valid JSON.
    """

    def run(trace, outputs):
        value = final_outputs(trace, outputs)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                return False, f"output is not valid JSON ({exc.msg} at position {exc.pos}): {shorten(value, 60)}"
        if value is None:
            return False, "no output"
        problem = schema_problem(value, json_schema) if json_schema else None
        if problem:
            return False, f"output does not match the schema: {problem}"
        return True, "output is valid JSON" + (" matching the schema" if json_schema else "")

    return run


@check(reads=("outputs",))
def output_regex(pattern: str, mode: Literal["must_match", "must_not_match"] = "must_match", case_insensitive: bool = False):
    """Fails when the final answer does not match the pattern (or, with mode "must_not_match", when it
    does, e.g. leaked stack traces or "as an AI language model").

    Args:
        pattern: Python regular expression, searched anywhere in the answer text.
        mode: "must_match": the answer must contain a match; "must_not_match": it must not.
        case_insensitive: Ignore case when matching.
    """
    compiled = re.compile(pattern, re.IGNORECASE if case_insensitive else 0)

    def run(trace, outputs):
        text = output_text(final_outputs(trace, outputs)) or ""
        found = compiled.search(text)
        if mode == "must_match":
            return (True, f"matches {pattern!r}") if found else (False, f"no match for {pattern!r}")
        if found:
            return False, f"contains {shorten(found.group(0), 60)!r} (forbidden pattern {pattern!r})"
        return True, f"no match for forbidden pattern {pattern!r}"

    return run


@check(reads=("outputs",))
def output_length(min_length: int | None = None, max_length: int | None = None, unit: Literal["chars", "words"] = "chars"):
    """Fails when the final answer is shorter or longer than the bounds.

    Args:
        min_length: Shortest acceptable answer (inclusive); no lower bound when omitted.
        max_length: Longest acceptable answer (inclusive); no upper bound when omitted.
        unit: Measure in "chars" or whitespace-separated "words".
    """
    if min_length is None and max_length is None:
        raise ValueError("output_length needs min_length, max_length or both")

    def run(trace, outputs):
        text = output_text(final_outputs(trace, outputs)) or ""
        size = len(text.split()) if unit == "words" else len(text)
        if min_length is not None and size < min_length:
            return False, f"{size} {unit}, fewer than {min_length}"
        if max_length is not None and size > max_length:
            return False, f"{size} {unit}, more than {max_length}"
        return True, f"{size} {unit}"

    return run


@check(reads=("outputs",))
def no_pii(kinds: list[PIIKind] | None = None):
    """Fails when the final answer contains personal data: e-mail addresses, phone numbers, US SSNs,
    card numbers (Luhn-checked) or IPv4 addresses.

    Args:
        kinds: Which kinds to look for, any of "email", "phone", "ssn", "credit_card", "ip_address";
            all of them when omitted.
    """
    wanted = list(kinds or PII_PATTERNS)

    def luhn_ok(number):
        digits = [int(d) for d in number if d.isdigit()][::-1]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits))
        return total % 10 == 0

    def run(trace, outputs):
        text = output_text(final_outputs(trace, outputs)) or ""
        found = []
        for kind in wanted:
            hits = re.findall(PII_PATTERNS[kind], text)
            if kind == "credit_card":
                hits = [h for h in hits if luhn_ok(h)]
            if hits:
                found.append(kind)
        if found:
            return False, "contains " + ", ".join(found)
        return True, "no personal data found"

    return run

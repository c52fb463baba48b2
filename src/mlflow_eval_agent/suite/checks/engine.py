"""The check engine: evaluates a check (a JSON document) on an MLflow trace. Reviewed once; rules are data.

A check says when a trace FAILS: `{"version": 1, "fail_when": <condition>}`. Conditions select spans
and test fields; nothing in a check is ever executed as code: field names, operators and paths are
looked up in fixed tables here, values are compared as JSON data, regular expressions run on RE2
(linear time, no backtracking), and every structure is bounded. The grammar, with examples, is in
docs/checks.md; `language.py` holds the same grammar as pydantic models for precise errors.

This file is copied verbatim into every generated suite (`evaluation/_engine.py`), so it imports only
the standard library (and `re2`, from the google-re2 package, when a check uses a regex).

    check = compile_check(rule)          # validates the whole document, compiles regexes once
    passed, rationale = check(trace, outputs)
    passed, rationale, spans = check.verdict(trace, outputs)   # and the spans a failure points at
    check.missing(trace)                 # the spans it needs (by type/name) that the trace has none of
"""

from __future__ import annotations

import bisect
import json
import math
import re

LANGUAGE_VERSION = 1
MAX_DEPTH = 8  # nesting of conditions
MAX_NODES = 64  # conditions, selectors and predicates in one check
MAX_PREDICATES = 16  # in one `where` or `satisfy` list
MAX_PATH = 16  # segments of a JSON path
MAX_REGEX = 1000  # characters of a pattern
MAX_STRING = 2000  # characters of any other string value
MAX_LIST = 100  # items of an `in` list or a name list
MAX_TEXT = 1_000_000  # characters of a field's text that a regex or `contains` reads
MAX_REPEAT = 100  # `times` of a repeated-call condition
REGEX_MEMORY = 8 << 20  # bytes RE2 may use for one compiled pattern

SPAN_FIELDS = (
    "name", "type", "status", "duration_ms", "inputs", "outputs", "output_text", "attributes",
    "exception.type", "exception.short_type", "exception.message", "tokens.input", "tokens.output", "tokens.total", "documents",
)
TRACE_FIELDS = (
    "state", "duration_ms", "inputs", "outputs", "output_text", "tags", "metadata",
    "tokens.input", "tokens.output", "tokens.total", "span_count",
)
KEYED_FIELDS = ("attributes", "tags", "metadata")  # take a `key`
PATH_FIELDS = ("inputs", "outputs", "attributes", "tags", "metadata")  # take a JSON `path`
UPPER_FIELDS = ("type", "status", "state")  # compared upper-case
TESTS = (
    "equals", "in", "regex", "contains", "gt", "ge", "lt", "le", "empty", "exists",
    "is_json", "length", "json_schema", "contains_pii",
)
VALUE_TESTS = ("equals", "in", "regex", "contains", "gt", "ge", "lt", "le", "json_schema")
NUMBER_TESTS = {"gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}
NUMBER_WORDS = {"gt": "more than", "ge": "at least", "lt": "less than", "le": "at most"}
AGGREGATES = ("sum", "max", "min", "avg")
STATUSES = ("OK", "ERROR", "UNSET")
POSITIONS = ("first", "last")
CONDITIONS = (
    "exists", "each", "count", "aggregate", "trace", "without_prior", "followed_by", "repeated", "recovery",
    "all_of", "any_of", "not",
)
JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
SCHEMA_KEYS = ("type", "enum", "required", "properties", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength")
PII_PATTERNS = {  # fixed, reviewed patterns (Python `re`, bounded repetition only)
    "email": r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}",
    "phone": r"(?<!\d)(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]\d{3}[ .-]\d{4}(?!\d)",
    "ssn": r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)",
    "credit_card": r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)",
    "ip_address": r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])",
}
_PII = {kind: re.compile(pattern) for kind, pattern in PII_PATTERNS.items()}
_MISSING = object()


class RuleError(ValueError):
    """The check document is not valid; the message names the place (e.g. fail_when.conditions[1].op)."""


# --- compiling --------------------------------------------------------------------------------------
def compile_check(rule):
    """Validate a check document and return `run(trace, outputs) -> (passed, rationale)`."""
    budget = _Budget()
    if not isinstance(rule, dict):
        raise RuleError("a check must be a JSON object with 'fail_when'")
    _keys(rule, ("version", "fail_when"), "check", required=("fail_when",))
    if rule.get("version", LANGUAGE_VERSION) != LANGUAGE_VERSION:
        raise RuleError(f"check.version: this engine reads version {LANGUAGE_VERSION}, got {rule.get('version')!r}")
    condition = _condition(rule["fail_when"], "fail_when", 1, budget)

    return Check(condition, budget.needs)


class Check:
    """A compiled check. `check(trace, outputs)` -> (passed, rationale); `check.verdict(...)` also
    says which spans the verdict points at (the evidence of a failure, earliest first)."""

    def __init__(self, condition, needs=None):
        self._condition = condition
        self._needs = dict(needs or {})

    @property
    def needs(self):
        """What the check looks at, by span type and name (e.g. "TOOL span(s) named 'lookup'"): the
        `spans` selectors of its conditions. A trace with none of them gives the check nothing to judge."""
        return list(self._needs)

    def missing(self, trace):
        """The needs (labels) of which this trace has no span at all: a pass on it would be vacuous."""
        view = TraceView(trace)
        return [label for label, present in self._needs.items() if not present(view)]

    def __call__(self, trace, outputs=None):
        passed, rationale, _ = self.verdict(trace, outputs)
        return passed, rationale

    def verdict(self, trace, outputs=None):
        """(passed, rationale, spans): the spans are those that made the trace fail (none when it passed)."""
        view = TraceView(trace, outputs)
        failed, why, spans = self._condition(view)
        if not failed:
            return True, why, []
        unique = {id(s): s for s in spans if s is not None} or ({id(view.root): view.root} if view.root is not None else {})
        return False, why, sorted(unique.values(), key=lambda s: view.order.get(id(s), 0))


class _Budget:
    def __init__(self):
        self.nodes = 0
        self.needs = {}  # label -> present(view): the span types/names the check's `spans` selectors need

    def take(self, where):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise RuleError(f"{where}: the check has more than {MAX_NODES} conditions, selectors and tests; split it into several checks")


def _keys(node, allowed, where, required=()):
    if not isinstance(node, dict):
        raise RuleError(f"{where}: expected a JSON object, got {type(node).__name__}")
    extra = [k for k in node if k not in allowed]
    if extra:
        raise RuleError(f"{where}: unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}")
    missing = [k for k in required if k not in node]
    if missing:
        raise RuleError(f"{where}: missing {', '.join(missing)}")


def _int(node, key, where, low=0, high=10**9, default=None):
    value = node.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RuleError(f"{where}.{key}: expected a whole number from {low} to {high}, got {value!r}")
    return value


def _string(value, where, limit=MAX_STRING):
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RuleError(f"{where}: expected a non-empty string of at most {limit} characters")
    return value


def _condition(node, where, depth, budget):
    budget.take(where)
    if depth > MAX_DEPTH:
        raise RuleError(f"{where}: conditions are nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or node.get("op") not in CONDITIONS:
        op = node.get("op") if isinstance(node, dict) else node
        raise RuleError(f"{where}.op: unknown condition {op!r}; one of: {', '.join(CONDITIONS)}")
    op = node["op"]
    if op in ("all_of", "any_of"):
        _keys(node, ("op", "conditions"), where, required=("conditions",))
        items = node["conditions"]
        if not isinstance(items, list) or not 1 <= len(items) <= 16:
            raise RuleError(f"{where}.conditions: expected a list of 1 to 16 conditions")
        parts = [_condition(c, f"{where}.conditions[{i}]", depth + 1, budget) for i, c in enumerate(items)]
        return _all_of(parts) if op == "all_of" else _any_of(parts)
    if op == "not":
        _keys(node, ("op", "condition"), where, required=("condition",))
        return _not(_condition(node["condition"], f"{where}.condition", depth + 1, budget))
    if op == "trace":
        _keys(node, ("op", "where"), where, required=("where",))
        return _trace_condition(_predicates(node["where"], f"{where}.where", budget, TRACE_FIELDS))
    if op in ("exists", "each", "count"):
        _keys(node, ("op", "spans", "satisfy", "at_least", "at_most"), where, required=("spans",))
        select = _selector(node["spans"], f"{where}.spans", budget)
        satisfy = _predicates(node.get("satisfy", []), f"{where}.satisfy", budget, SPAN_FIELDS)
        if op == "count":
            low, high = _int(node, "at_least", where, default=0), _int(node, "at_most", where)
            if node.get("at_least") is None and high is None:
                raise RuleError(f"{where}: count needs at_least, at_most or both")
            return _count(select, satisfy, low, high)
        if "at_least" in node or "at_most" in node:
            raise RuleError(f"{where}: at_least/at_most belong to op 'count'")
        return _exists(select, satisfy) if op == "exists" else _each(select, satisfy)
    if op == "aggregate":
        _keys(node, ("op", "spans", "field", "fn", "test", "value"), where, required=("spans", "field", "fn", "test", "value"))
        select = _selector(node["spans"], f"{where}.spans", budget)
        field = node["field"]
        if field not in ("duration_ms", "tokens.input", "tokens.output", "tokens.total"):
            raise RuleError(f"{where}.field: aggregate reads duration_ms or tokens.input/output/total, got {field!r}")
        if node["fn"] not in AGGREGATES:
            raise RuleError(f"{where}.fn: one of {', '.join(AGGREGATES)}, got {node['fn']!r}")
        if node["test"] not in NUMBER_TESTS:
            raise RuleError(f"{where}.test: one of {', '.join(NUMBER_TESTS)}, got {node['test']!r}")
        return _aggregate(select, field, node["fn"], node["test"], _number(node["value"], f"{where}.value"))
    if op == "without_prior":
        _keys(node, ("op", "spans", "prior", "since"), where, required=("spans", "prior"))
        select = _selector(node["spans"], f"{where}.spans", budget)
        prior = _selector(node["prior"], f"{where}.prior", budget)
        since = _selector(node["since"], f"{where}.since", budget) if "since" in node else None
        return _without_prior(select, prior, since)
    if op == "followed_by":
        _keys(node, ("op", "spans", "then"), where, required=("spans", "then"))
        return _followed_by(_selector(node["spans"], f"{where}.spans", budget), _selector(node["then"], f"{where}.then", budget))
    if op == "repeated":
        _keys(node, ("op", "spans", "times", "consecutive"), where, required=("spans", "times"))
        select = _selector(node["spans"], f"{where}.spans", budget)
        times = _int(node, "times", where, low=2, high=MAX_REPEAT)
        consecutive = node.get("consecutive", True)
        if not isinstance(consecutive, bool):
            raise RuleError(f"{where}.consecutive: expected true or false")
        return _repeated(select, times, consecutive)
    # recovery
    _keys(node, ("op", "spans", "outcome", "failed_when"), where, required=("spans", "outcome"))
    select = _selector(node["spans"], f"{where}.spans", budget)
    if node["outcome"] not in ("recovered", "unrecovered"):
        raise RuleError(f"{where}.outcome: 'recovered' or 'unrecovered', got {node['outcome']!r}")
    failed_when = node.get("failed_when")
    failed = _predicates(failed_when, f"{where}.failed_when", budget, SPAN_FIELDS) if failed_when else [_status_error]
    return _recovery(select, failed, node["outcome"] == "recovered")


def _selector(node, where, budget):
    budget.take(where)
    _keys(node, ("type", "name", "status", "root", "leaf", "parent", "ancestor", "where", "position"), where)
    types = _upper_list(node.get("type"), f"{where}.type")
    statuses = _upper_list(node.get("status"), f"{where}.status")
    bad = [s for s in statuses or () if s not in STATUSES]
    if bad:
        raise RuleError(f"{where}.status: one of {', '.join(STATUSES)}, got {', '.join(bad)}")
    names = _globs(node.get("name"), f"{where}.name")
    parent = _globs(node.get("parent"), f"{where}.parent")
    ancestor = _globs(node.get("ancestor"), f"{where}.ancestor")
    root, leaf = node.get("root"), node.get("leaf")
    for key, value in (("root", root), ("leaf", leaf)):
        if value is not None and not isinstance(value, bool):
            raise RuleError(f"{where}.{key}: expected true or false")
    position = node.get("position")
    if position is not None and position not in POSITIONS:
        raise RuleError(f"{where}.position: 'first' or 'last', got {position!r}")
    filters = _predicates(node.get("where", []), f"{where}.where", budget, SPAN_FIELDS)
    label = _describe_selector(types, names, statuses, root, leaf, parent, ancestor, filters, position)
    if where.endswith(".spans") and (types or names):
        budget.needs.setdefault(_describe_selector(types, names, None, None, None, None, None, [], None), _present(types, names))

    def select(view):
        chosen = []
        for span in view.spans:
            if types and view.type_of(span) not in types:
                continue
            if statuses and view.status_of(span) not in statuses:
                continue
            if names and not _any_glob(names, _name(span)):
                continue
            if root is not None and (span is view.root) != root:
                continue
            if leaf is not None and view.is_leaf(span) != leaf:
                continue
            if parent and not _any_glob(parent, _name(view.parent_of(span))):
                continue
            if ancestor and not any(_any_glob(ancestor, _name(a)) for a in view.ancestors_of(span)):
                continue
            if filters and not all(p(view, span)[0] for p in filters):
                continue
            chosen.append(span)
        if position == "first":
            return chosen[:1]
        if position == "last":
            return chosen[-1:]
        return chosen

    select.label = label
    return select


def _present(types, names):
    def present(view):
        return any((not types or view.type_of(s) in types) and (not names or _any_glob(names, _name(s))) for s in view.spans)

    return present


def _strings(value, where, limit, what):
    """One string or a list of 1 to MAX_LIST of them, as a tuple; None when absent."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_LIST:
        raise RuleError(f"{where}: expected {what} or a list of 1 to {MAX_LIST} of them")
    return tuple(_string(v, where, limit) for v in items)


def _upper_list(value, where):
    found = _strings(value, where, 100, "a string")
    return None if found is None else tuple(v.upper() for v in found)


def _globs(value, where):
    return _strings(value, where, 300, "a name (wildcards * and ?)")


def _predicates(items, where, budget, fields):
    if not isinstance(items, list) or len(items) > MAX_PREDICATES:
        raise RuleError(f"{where}: expected a list of at most {MAX_PREDICATES} tests")
    return [_predicate(p, f"{where}[{i}]", budget, fields) for i, p in enumerate(items)]


def _predicate(node, where, budget, fields):
    budget.take(where)
    _keys(node, ("field", "key", "path", "test", "value", "min", "max", "unit", "case_insensitive", "negate"), where, required=("field", "test"))
    field, test = node["field"], node["test"]
    if field not in fields:
        raise RuleError(f"{where}.field: unknown field {field!r}; one of: {', '.join(fields)}")
    if test not in TESTS:
        raise RuleError(f"{where}.test: unknown test {test!r}; one of: {', '.join(TESTS)}")
    key = node.get("key")
    if (key is not None) != (field in KEYED_FIELDS):
        raise RuleError(f"{where}.key: " + (f"field {field!r} needs a key" if key is None else f"only {', '.join(KEYED_FIELDS)} take a key"))
    if key is not None:
        _string(key, f"{where}.key", 300)
    path = _path(node.get("path"), f"{where}.path")
    if path and field not in PATH_FIELDS:
        raise RuleError(f"{where}.path: only {', '.join(PATH_FIELDS)} take a path")
    if test in VALUE_TESTS and "value" not in node:
        raise RuleError(f"{where}.value: test {test!r} needs a value")
    if test not in VALUE_TESTS and test != "contains_pii" and "value" in node:
        raise RuleError(f"{where}.value: test {test!r} takes no value")
    stray = [k for k in ("min", "max", "unit") if k in node and test != "length"]
    stray += ["case_insensitive"] if "case_insensitive" in node and test not in ("regex", "contains") else []
    if stray:
        raise RuleError(f"{where}: {', '.join(stray)} do(es) not apply to test {test!r}")
    negate = node.get("negate", False)
    for flag in ("negate", "case_insensitive"):
        if not isinstance(node.get(flag, False), bool):
            raise RuleError(f"{where}.{flag}: expected true or false")
    matcher, words = _matcher(node, test, field, where)
    read = _reader(field, key, path)
    label = _field_label(field, key, path)

    def predicate(view, span):
        value = read(view, span)
        hit = matcher(value)
        if negate:
            hit = not hit
        return hit, f"{label} {'not ' if negate else ''}{words}" + _shown(field, value)

    return predicate


def _path(value, where):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [int(p) if p.isdigit() else p for p in value.split(".")] if value else []
    if not isinstance(value, list) or len(value) > MAX_PATH:
        raise RuleError(f"{where}: expected a dotted path like 'choices.0.message.content' or a list of at most {MAX_PATH} keys")
    for part in value:
        if isinstance(part, bool) or not isinstance(part, (str, int)) or (isinstance(part, str) and not 0 < len(part) <= 200):
            raise RuleError(f"{where}: each part is a key (string), an index (number) or '*'")
    return tuple(value)


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RuleError(f"{where}: expected a finite number, got {value!r}")
    return value


def _matcher(node, test, field, where):
    """(value -> bool, words describing the test) for one predicate."""
    value = node.get("value")
    folded = bool(node.get("case_insensitive", False))
    if field in UPPER_FIELDS and test in ("equals", "in", "contains"):
        value = [v.upper() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value.upper() if isinstance(value, str) else value
    if test == "equals":
        _json_value(value, f"{where}.value")
        return (lambda v: _same(v, value)), f"equals {_short(json.dumps(value, ensure_ascii=False))}"
    if test == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
            raise RuleError(f"{where}.value: 'in' needs a list of 1 to {MAX_LIST} values")
        _json_value(value, f"{where}.value")
        return (lambda v: any(_same(v, item) for item in value)), f"is one of {_short(json.dumps(value, ensure_ascii=False))}"
    if test == "regex":
        pattern = compile_regex(_string(value, f"{where}.value", MAX_REGEX), folded, f"{where}.value")
        return (lambda v: v is not _MISSING and v is not None and pattern.search(_text(v)) is not None), f"matches /{_short(value, 60)}/"
    if test == "contains":
        _json_value(value, f"{where}.value")
        return (lambda v: _contains(v, value, folded)), f"contains {_short(json.dumps(value, ensure_ascii=False))}"
    if test in NUMBER_TESTS:
        limit = _number(value, f"{where}.value")
        compare = NUMBER_TESTS[test]
        unit = " ms" if field == "duration_ms" else ""
        return (lambda v: _is_number(v) and compare(v, limit)), f"{NUMBER_WORDS[test]} {_num(limit)}{unit}"
    if test == "empty":
        return _is_empty, "is empty"
    if test == "exists":
        return (lambda v: v is not _MISSING), "exists"
    if test == "is_json":
        return _is_json, "is JSON"
    if test == "length":
        low, high = _int(node, "min", where), _int(node, "max", where)
        unit = node.get("unit", "chars")
        if low is None and high is None:
            raise RuleError(f"{where}: length needs min, max or both")
        if unit not in ("chars", "words", "items"):
            raise RuleError(f"{where}.unit: 'chars', 'words' or 'items', got {unit!r}")
        bounds = " and ".join(x for x in (low is not None and f"at least {low}", high is not None and f"at most {high}") if x)
        return (lambda v: _length_between(v, low, high, unit)), f"has {bounds} {unit}"
    if test == "json_schema":
        _schema(value, f"{where}.value", 1)
        return (lambda v: _schema_problem(_parsed(v), value) is None), "matches the JSON schema"
    # contains_pii
    kinds = value if value is not None else list(PII_PATTERNS)
    if not isinstance(kinds, list) or not kinds or any(k not in PII_PATTERNS for k in kinds):
        raise RuleError(f"{where}.value: contains_pii takes a list of kinds from {', '.join(PII_PATTERNS)}")
    return (lambda v: bool(_pii_found(v, kinds))), "contains personal data (" + ", ".join(kinds) + ")"


def _json_value(value, where, depth=0):
    if depth > 6:
        raise RuleError(f"{where}: values are nested too deeply")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        _number(value, where)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise RuleError(f"{where}: strings are limited to {MAX_STRING} characters")
    elif isinstance(value, list):
        if len(value) > MAX_LIST:
            raise RuleError(f"{where}: lists are limited to {MAX_LIST} items")
        for item in value:
            _json_value(item, where, depth + 1)
    elif isinstance(value, dict):
        if len(value) > MAX_LIST:
            raise RuleError(f"{where}: objects are limited to {MAX_LIST} keys")
        for k, item in value.items():
            _string(k, where, 300)
            _json_value(item, where, depth + 1)
    else:
        raise RuleError(f"{where}: expected JSON data, got {type(value).__name__}")


def _schema(schema, where, depth):
    if depth > 6:
        raise RuleError(f"{where}: the schema is nested too deeply")
    _keys(schema, SCHEMA_KEYS, where)
    kinds = schema.get("type")
    for kind in ([kinds] if isinstance(kinds, str) else kinds or []):
        if kind not in JSON_TYPES:
            raise RuleError(f"{where}.type: one of {', '.join(JSON_TYPES)}, got {kind!r}")
    _json_value(schema.get("enum"), f"{where}.enum")
    for key, sub in (schema.get("properties") or {}).items():
        _schema(sub, f"{where}.properties.{key}", depth + 1)
    if "items" in schema:
        _schema(schema["items"], f"{where}.items", depth + 1)
    if schema.get("additionalProperties", False) is not False:
        raise RuleError(f"{where}.additionalProperties: only false is supported")


def compile_regex(pattern, case_insensitive=False, where="regex"):
    """An RE2 pattern (linear-time matching); RuleError when RE2 rejects it or is not installed."""
    try:
        import re2
    except ImportError:
        raise RuleError("regex tests need the google-re2 package: pip install google-re2") from None
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    options.case_sensitive = not case_insensitive
    try:
        return re2.compile(pattern, options)
    except Exception as exc:
        message = str(exc.args[0] if exc.args else exc)
        message = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        raise RuleError(f"{where}: not a valid RE2 regular expression ({_short(message, 120)}); "
                        "RE2 has no backreferences or lookaround") from None


# --- conditions -------------------------------------------------------------------------------------
def _all_of(parts):
    def run(view):
        whys, found = [], []
        for part in parts:
            hit, why, spans = part(view)
            if not hit:
                return False, why, []
            whys.append(why)
            found += spans
        return True, "; ".join(whys), found

    return run


def _any_of(parts):
    def run(view):
        whys = []
        for part in parts:
            hit, why, spans = part(view)
            if hit:
                return True, why, spans
            whys.append(why)
        return False, "; ".join(whys), []

    return run


def _not(part):
    def run(view):
        hit, why, _ = part(view)
        return (not hit), why, []

    return run


def _trace_condition(predicates):
    def run(view):
        whys = []
        for predicate in predicates:
            hit, why = predicate(view, None)
            if not hit:
                return False, why, []
            whys.append(why)
        return True, "; ".join(whys) or "the trace", [view.root]

    return run


def _matching(view, select, satisfy):
    spans = select(view)
    if not satisfy:
        return spans, spans, ""
    good, first_why = [], ""
    for span in spans:
        results = [p(view, span) for p in satisfy]
        if all(hit for hit, _ in results):
            good.append(span)
            first_why = first_why or "; ".join(why for _, why in results)
    return spans, good, first_why


def _exists(select, satisfy):
    def run(view):
        _, good, why = _matching(view, select, satisfy)
        if good:
            return True, f"{_found(view, good, select.label)}" + (f" ({why})" if why else ""), good
        return False, f"no {select.label}" + (" satisfying the test" if satisfy else ""), []

    return run


def _each(select, satisfy):
    def run(view):
        spans, good, _ = _matching(view, select, satisfy)
        bad = [s for s in spans if not any(s is g for g in good)]
        if bad:
            failing = "; ".join(why for hit, why in (p(view, bad[0]) for p in satisfy) if not hit)
            return False, f"{view.describe(bad[0])}: {failing}", []
        return True, f"all {len(spans)} {select.label} pass the test", spans

    return run


def _count(select, satisfy, low, high):
    def run(view):
        _, good, _ = _matching(view, select, satisfy)
        n = len(good)
        inside = n >= (low or 0) and (high is None or n <= high)
        bounds = " and ".join(x for x in (low and f"at least {low}", high is not None and f"at most {high}") if x)
        return inside, f"{n} {select.label} ({'' if inside else 'not '}{bounds})", good if inside else []

    return run


def _aggregate(select, field, fn, test, limit):
    reader = _reader(field, None, ())
    unit = " ms" if field == "duration_ms" else ""

    def run(view):
        values = [v for v in (reader(view, s) for s in select(view)) if _is_number(v)]
        if not values:
            return False, f"no {field} on {select.label}", []
        total = {"sum": sum, "max": max, "min": min, "avg": lambda xs: sum(xs) / len(xs)}[fn](values)
        hit = NUMBER_TESTS[test](total, limit)
        why = f"{fn} of {field} over {len(values)} {select.label} is {_num(total)}{unit} ({'' if hit else 'not '}{NUMBER_WORDS[test]} {_num(limit)}{unit})"
        return hit, why, [view.root] if hit else []

    return run


def _without_prior(select, prior, since=None):
    def run(view):
        order = view.order
        priors = sorted(order[id(s)] for s in prior(view))
        marks = sorted(order[id(s)] for s in since(view)) if since else []
        for span in select(view):
            at = order[id(span)]
            cut = bisect.bisect_left(marks, at)
            start = marks[cut - 1] if cut else -1  # the last `since` span before it
            if bisect.bisect_left(priors, at) == bisect.bisect_right(priors, start):  # no prior strictly between
                window = f" since the last {since.label}" if since and start >= 0 else " before it"
                return True, f"{view.describe(span)} happened with no {prior.label}{window}", [span]
        return False, f"every {select.label} came after a {prior.label}" + (f" (since the last {since.label})" if since else ""), []

    return run


def _followed_by(select, then):
    def run(view):
        later = then(view)
        last_then = max((view.order[id(s)] for s in later), default=None)
        for span in select(view):
            if last_then is not None and view.order[id(span)] < last_then:
                follower = next(s for s in later if view.order[id(s)] > view.order[id(span)])
                return True, f"{view.describe(span)} was followed by {view.describe(follower)}", [follower]
        return False, f"no {select.label} followed by a {then.label}", []

    return run


def _repeated(select, times, consecutive):
    def run(view):
        run_key, run_length, counts = None, 0, {}
        for span in select(view):
            key = (_name(span), _canonical(getattr(span, "inputs", None)))
            if consecutive:
                run_length = run_length + 1 if key == run_key else 1
                run_key = key
                hit = run_length >= times
            else:
                counts[key] = counts.get(key, 0) + 1
                hit = counts[key] >= times
            if hit:
                how = "in a row" if consecutive else "in the trace"
                return True, f"{_name(span)} was called {times} times {how} with the same arguments {_short(key[1], 120)}", [span]
        return False, f"no {select.label} repeated {times} times{' in a row' if consecutive else ''} with the same arguments", []

    return run


def _status_error(view, span):
    hit = view.status_of(span) == "ERROR"
    return hit, "status ERROR"


def _recovery(select, failed_when, want_recovered):
    def run(view):
        spans = select(view)
        failed = [all(p(view, s)[0] for p in failed_when) for s in spans]
        last_success = {_name(s): i for i, s in enumerate(spans) if not failed[i]}  # one pass, not one per failure
        for i, span in enumerate(spans):
            if not failed[i]:
                continue
            recovered = last_success.get(_name(span), -1) > i
            if recovered == want_recovered:
                what = "later succeeded" if recovered else "never succeeded afterwards"
                return True, f"{view.describe(span)} failed and {what}", [span]
        word = "recovered" if want_recovered else "unrecovered"
        return False, f"no {word} failure of {select.label}", []

    return run


# --- reading traces ---------------------------------------------------------------------------------
class TraceView:
    """Read-only access to one trace: spans in start order, root, parents, statuses, fields."""

    def __init__(self, trace, outputs=None):
        self.trace, self.outputs = trace, outputs
        data = getattr(trace, "data", None)
        raw = list(getattr(data, "spans", None) or [])
        starts = [getattr(s, "start_time_ns", None) for s in raw]
        if None in starts or any(a > b for a, b in zip(starts, starts[1:])):
            order = sorted(range(len(raw)), key=lambda i: (starts[i] is None, starts[i] or 0, i))
            raw = [raw[i] for i in order]
        self.spans = raw
        self.root = next((s for s in raw if not getattr(s, "parent_id", None)), raw[0] if raw else None)
        self._order = self._by_id = self._parents = None

    @property
    def order(self):
        if self._order is None:
            self._order = {id(s): i for i, s in enumerate(self.spans)}
        return self._order

    @property
    def by_id(self):
        if self._by_id is None:
            self._by_id = {getattr(s, "span_id", None): s for s in self.spans if getattr(s, "span_id", None)}
        return self._by_id

    @property
    def parents(self):
        if self._parents is None:
            self._parents = {getattr(s, "parent_id", None) for s in self.spans}
        return self._parents

    def status_of(self, span):
        status = getattr(span, "status", None)
        code = getattr(status, "status_code", None)
        return str(getattr(code, "value", code) or "UNSET").upper().replace("STATUS_CODE_", "")

    def type_of(self, span):
        return str(getattr(span, "span_type", None) or "UNKNOWN").upper()

    def parent_of(self, span):
        return self.by_id.get(getattr(span, "parent_id", None))

    def ancestors_of(self, span):
        seen, current = [], self.parent_of(span)
        while current is not None and len(seen) < 1000 and not any(current is s for s in seen):
            seen.append(current)
            current = self.parent_of(current)
        return seen

    def is_leaf(self, span):
        span_id = getattr(span, "span_id", None)
        return span_id is None or span_id not in self.parents

    def describe(self, span):
        where = f"{_name(span)} ({self.type_of(span)})"
        error = exception_of(span) if self.status_of(span) == "ERROR" else None
        return f"{where}: {error[0]}: {_short(error[1], 120)}" if error else where


def _name(span):
    return str(getattr(span, "name", "") or "") if span is not None else ""


def exception_of(span):
    """(type, message) of a failed span, from its last exception event or its status description."""
    for event in reversed(getattr(span, "events", None) or []):
        if getattr(event, "name", "") == "exception":
            attrs = getattr(event, "attributes", None) or {}
            return _unquote(attrs.get("exception.type")) or "Exception", _unquote(attrs.get("exception.message"))
    description = getattr(getattr(span, "status", None), "description", None) or ""
    if description:
        kind, sep, message = description.partition(": ")
        if sep and kind.replace(".", "").replace("_", "").isalnum():
            return kind, message
        return "Error", description
    return None


def _unquote(value):
    text = "" if value is None else str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _reader(field, key, path):
    """value reader (view, span-or-None) -> JSON value or _MISSING, for one field."""
    base = _SPAN_READERS.get(field) if field in SPAN_FIELDS else None
    trace_base = _TRACE_READERS.get(field)

    def read(view, span):
        if span is None:
            value = trace_base(view) if trace_base else _MISSING
        else:
            value = base(view, span) if base else _MISSING
        if key is not None:
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
            if isinstance(value, str) and value[:1] in "[{\"":
                value = _loads(value, value)  # OTLP attributes arrive JSON-encoded
        return _walk(value, path)

    return read


def _walk(value, path):
    for i, part in enumerate(path):
        if value is _MISSING:
            return _MISSING
        if part == "*":
            items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
            found = [v for v in (_walk(item, path[i + 1:]) for item in items) if v is not _MISSING]
            return found if found else _MISSING
        if isinstance(value, dict):
            value = value.get(str(part), _MISSING)
        elif isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
            value = value[part]
        else:
            return _MISSING
    return value


def _span_duration(view, span):
    start, end = getattr(span, "start_time_ns", None), getattr(span, "end_time_ns", None)
    return _MISSING if start is None or end is None else (end - start) / 1e6


def _span_tokens(part):
    def read(view, span):
        attrs = getattr(span, "attributes", None) or {}
        usage = attrs.get("mlflow.chat.tokenUsage") if isinstance(attrs, dict) else None
        usage = _loads(usage, usage) if isinstance(usage, str) else usage
        value = usage.get(part) if isinstance(usage, dict) else None
        return value if _is_number(value) else _MISSING

    return read


def _exception_part(index, short=False):
    def read(view, span):
        error = exception_of(span) if view.status_of(span) == "ERROR" else None
        if error is None:
            return _MISSING
        value = error[index]
        return value.rsplit(".", 1)[-1] if short else value

    return read


_SPAN_READERS = {
    "name": lambda view, span: _name(span),
    "type": lambda view, span: view.type_of(span),
    "status": lambda view, span: view.status_of(span),
    "duration_ms": _span_duration,
    "inputs": lambda view, span: getattr(span, "inputs", None),
    "outputs": lambda view, span: getattr(span, "outputs", None),
    "output_text": lambda view, span: output_text(getattr(span, "outputs", None)),
    "attributes": lambda view, span: dict(getattr(span, "attributes", None) or {}),
    "exception.type": _exception_part(0),
    "exception.short_type": _exception_part(0, short=True),
    "exception.message": _exception_part(1),
    "tokens.input": _span_tokens("input_tokens"),
    "tokens.output": _span_tokens("output_tokens"),
    "tokens.total": _span_tokens("total_tokens"),
    "documents": lambda view, span: documents_of(span),
}


def _trace_state(view):
    info = getattr(view.trace, "info", None)
    state = getattr(info, "state", None)
    return str(getattr(state, "value", state) or "").upper() or _MISSING


def _trace_duration(view):
    value = getattr(getattr(view.trace, "info", None), "execution_time_ms", None)
    if value is not None:
        return float(value)
    return _span_duration(view, view.root) if view.root is not None else _MISSING


def _trace_tokens(part):
    def read(view):
        usage = getattr(getattr(view.trace, "info", None), "token_usage", None) or {}
        value = usage.get(part) if isinstance(usage, dict) else None
        return value if _is_number(value) else _MISSING

    return read


def _final_outputs(view):
    if view.outputs is not None:
        return view.outputs
    return getattr(view.root, "outputs", None) if view.root is not None else None


_TRACE_READERS = {
    "state": _trace_state,
    "duration_ms": _trace_duration,
    "inputs": lambda view: getattr(view.root, "inputs", None) if view.root is not None else _MISSING,
    "outputs": _final_outputs,
    "output_text": lambda view: output_text(_final_outputs(view)),
    "tags": lambda view: dict(getattr(getattr(view.trace, "info", None), "tags", None) or {}),
    "metadata": lambda view: dict(getattr(getattr(view.trace, "info", None), "trace_metadata", None) or {}),
    "tokens.input": _trace_tokens("input_tokens"),
    "tokens.output": _trace_tokens("output_tokens"),
    "tokens.total": _trace_tokens("total_tokens"),
    "span_count": lambda view: len(view.spans),
}


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
            return "".join(str(p["text"]) for p in outputs)
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


# --- values -----------------------------------------------------------------------------------------
def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _text(value):
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return text[:MAX_TEXT]


def _contains(value, wanted, folded):
    if value is _MISSING or value is None:
        return False
    if isinstance(value, list):
        return any(_same(item, wanted) for item in value) or (isinstance(wanted, str) and any(isinstance(i, str) and _has(i, wanted, folded) for i in value))
    if isinstance(value, dict) and isinstance(wanted, str) and wanted in value:
        return True
    return isinstance(wanted, str) and _has(_text(value), wanted, folded)


def _has(text, wanted, folded):
    return wanted.lower() in text.lower() if folded else wanted in text


def _is_empty(value):
    if value is _MISSING or value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, dict)) and not value


def _loads(text, default=_MISSING):
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _is_json(value):
    if value is _MISSING or value is None:
        return False
    if isinstance(value, str):
        return _loads(value) is not _MISSING
    return True


def _parsed(value):
    if isinstance(value, str):
        return _loads(value)
    return _MISSING if value is None else value


def _length_between(value, low, high, unit):
    if value is _MISSING or value is None:
        size = 0
    elif isinstance(value, str):
        size = len(value.split()) if unit == "words" else len(value)
    elif isinstance(value, (list, dict)):
        size = len(value)
    else:
        return False
    return (low is None or size >= low) and (high is None or size <= high)


def _canonical(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)[:10_000]


def _pii_found(value, kinds):
    if value is _MISSING or value is None:
        return []
    text = _text(value)
    found = []
    for kind in kinds:
        hits = _PII[kind].findall(text)
        if kind == "credit_card":
            hits = [h for h in hits if _luhn_ok(h)]
        if hits:
            found.append(kind)
    return found


def _luhn_ok(number):
    digits = [int(d) for d in number if d.isdigit()][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def _is_json_type(value, kind):
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int)
    types = {"object": dict, "array": list, "string": str, "number": (int, float), "boolean": bool, "null": type(None)}
    return isinstance(value, types[kind])


def _schema_problem(value, schema, path="$"):
    """First mismatch between `value` and the supported JSON Schema subset, or None."""
    if value is _MISSING:
        return f"{path} is not JSON"
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds and not any(_is_json_type(value, k) for k in kinds):
        return f"{path} should be {' or '.join(kinds)}, got {type(value).__name__}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
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
                problem = _schema_problem(value[key], sub, f"{path}.{key}")
                if problem:
                    return problem
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            return f"{path} has {len(value)} items, outside the allowed range"
        for i, item in enumerate(value):
            problem = _schema_problem(item, schema.get("items", {}), f"{path}[{i}]")
            if problem:
                return problem
    if isinstance(value, str) and not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
        return f"{path} has {len(value)} characters, outside the allowed range"
    return None


# --- text -------------------------------------------------------------------------------------------
def _any_glob(patterns, name):
    return any(glob_match(p, name) for p in patterns)


def glob_match(pattern, text):
    """`*` any run of characters, `?` one character, anything else literal; linear-time matching."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or (pattern[p] == text[t] and pattern[p] != "*")):
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _short(text, limit=80):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(value):
    return f"{value:.0f}" if isinstance(value, float) and abs(value) >= 100 else f"{value:g}" if isinstance(value, float) else str(value)


def _shown(field, value):
    if value is _MISSING:
        return " (absent)"
    if field in ("duration_ms",) and _is_number(value):
        return f" (took {_num(float(value))} ms)"
    if _is_number(value):
        return f" (is {_num(value)})"
    if isinstance(value, (list, dict)) and field == "documents":
        return f" ({len(value)} document(s))"
    if value is None:
        return " (null)"
    return f" ({_short(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str), 100)!r})" if field != "status" else f" ({value})"


def _field_label(field, key, path):
    label = field if key is None else f"{field}[{key!r}]"
    return label + ("." + ".".join(map(str, path)) if path else "")


def _found(view, spans, label):
    shown = "; ".join(view.describe(s) for s in spans[:3])
    more = f" (+{len(spans) - 3} more)" if len(spans) > 3 else ""
    return f"{len(spans)} {label}: {shown}{more}"


def _describe_selector(types, names, statuses, root, leaf, parent, ancestor, filters, position):
    words = []
    if position:
        words.append(position)
    if root:
        words.append("root")
    if leaf:
        words.append("leaf")
    words.append(("/".join(types) + " " if types else "") + "span(s)")
    if root is False:
        words.append("below the root")
    if names:
        words.append("named " + " or ".join(repr(n) for n in names[:3]))
    if statuses:
        words.append("with status " + "/".join(statuses))
    if parent:
        words.append("under parent " + " or ".join(repr(n) for n in parent[:3]))
    if ancestor:
        words.append("inside " + " or ".join(repr(n) for n in ancestor[:3]))
    if filters:
        words.append(f"matching {len(filters)} test(s)")
    return " ".join(words)

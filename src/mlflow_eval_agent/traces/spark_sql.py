"""The builder's per-value definitions written as Spark SQL expressions, so the spark engine runs no Python
per row: error text and its signature normalisation (signatures.py), JSON-looking text, payload
presence, shape and emptiness (spans.py) and assessment value labels (accumulators._value_label).

Each function takes SQL expressions (column names, or expressions built here) and returns SQL text,
so the same statements run on a SparkSession and on a Databricks SQL warehouse (sql_runner.py,
warehouse.py); nothing here imports pyspark. Regular expressions reach the engine through `lit`,
which escapes them for the SQL parser (backslashes doubled), so the engine sees exactly signatures.py's
patterns as translated. The regular expressions are signatures.py's own patterns, carried
over to Java's engine by `java_regex`: Python's Unicode classes become explicit ones (`\\w` ->
[\\p{L}\\p{N}_], `\\d` -> \\p{Nd}, `\\s` -> the characters str.isspace() accepts, `\\b` -> look-arounds on
that word class), so the same text gives the same signature. tests/test_spark_profile.py checks every
function here against the Python one on tricky values.

Where an exact equivalent is not possible (each is rare in traces; the test lists them):
- JSON parsing is Spark's (`try_parse_json`, duplicate keys allowed, the last wins as in Python), with
  looks_like_json required on top (Spark stops after the first complete value; Python refuses text
  after it). Text Python's json accepts and Spark does not (NaN/Infinity literals, lone surrogate
  escapes) counts as non-JSON here; two JSON values in a row with matching outer brackets count as JSON.
- Value labels: -0.0 is stored by VARIANT as a decimal 0 and labelled "0.0" (Python: "-0.0"); a
  number with more than 15 significant digits is labelled from Java's Double.toString (shortest on
  Java 19+, almost always on 17) where Python uses its shortest repr.
- Non-string exception attributes (a number or object as exception.message) are read as their JSON
  text, where Python uses str() of the parsed value.
- Word and digit classes follow Java's Unicode tables (Java 17: Unicode 13; Python 3.11: 14).
"""

from __future__ import annotations

from typing import Any

from .signatures import _NUMBER, _RULES, _SPACES, _STATUS_BEFORE, _TYPE_PREFIX, MAX_SIGNATURE_CHARS, NO_MESSAGE
from .spans import HUGE_PAYLOAD_CHARS

# str.isspace() / Python's `\s` on text, as a Java character-class body.
WS = "\\t\\n\\x0B\\f\\r\\x1C-\\x1F \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000"
# The line breaks str.splitlines() splits on.
LINE_BREAKS = "\\n\\r\\x0B\\f\\x1C-\\x1E\\x85\\u2028\\u2029"
WORD = "\\p{L}\\p{N}_"  # Python's Unicode \w: str.isalnum() or "_"
_WORD_BOUNDARY = f"(?:(?<=[{WORD}])(?![{WORD}])|(?<![{WORD}])(?=[{WORD}]))"
_KEEP_MARK = "\ufdd0<"  # a noncharacter then "<": numbers behind it are not replaced (see normalized)
EMPTY_DEPTH = 3  # spans.is_empty_value's depth limit


def java_regex(pattern: str) -> str:
    """A Python `re` pattern (str, Unicode) in Java's syntax with the same meaning, for the constructs
    signatures.py uses: \\w \\d \\s \\b are rewritten, inside and outside character classes."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            i += 2
            if nxt in "WDSB":
                raise ValueError(f"java_regex does not translate \\{nxt}")
            if nxt == "w":
                out.append(WORD if in_class else f"[{WORD}]")
            elif nxt == "d":
                out.append("\\p{Nd}")
            elif nxt == "s":
                out.append(WS if in_class else f"[{WS}]")
            elif nxt == "b":
                if in_class:
                    raise ValueError("\\b inside a character class")
                out.append(_WORD_BOUNDARY)
            else:
                out.append(ch + nxt)
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            if pattern[i + 1: i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1: i + 2] == "]":  # a literal ] first in a class
                out.append("\\]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _flags(pattern: Any) -> str:
    import re

    flags = "(?d)"  # only \n ends a line, as in Python
    if pattern.flags & re.IGNORECASE:
        flags += "(?iu)"
    if pattern.flags & re.DOTALL:
        flags += "(?s)"
    return flags


def _j(pattern: Any) -> str:
    return _flags(pattern) + java_regex(pattern.pattern)


RULES = [(_j(p), placeholder) for p, placeholder in _RULES]
NUMBER = _j(_NUMBER)
SPACES = f"[{WS}]+"
assert _SPACES.pattern == r"\s+" and _STATUS_BEFORE.pattern == r"(?:status|code|HTTP)[:= ]{1,3}$"
# signatures._number keeps a 3-digit number starting 1-5 right after "status"/"code"/"HTTP" and 1-3 of
# ":= ": exactly the _NUMBER matches of that form (the look-aheads: the match ends after 3 digits).
STATUS_KEEP = "(?d)(?iu)((?:status|code|HTTP)[:= ]{1,3})([1-5]\\p{Nd}\\p{Nd})(?!\\p{Nd})(?![.,]\\p{Nd})(?![eE][-+]?\\p{Nd})"
TYPE_PREFIX = _j(_TYPE_PREFIX)
assert _TYPE_PREFIX.pattern == r"^\s*([A-Za-z_][\w.]*)\s*:\s*(.*)$"


def lit(text: str) -> str:
    """A SQL string literal holding exactly `text` (Spark's and Databricks SQL's parser unescape `\\\\`
    and `\\'`, so every backslash of a regular expression is doubled and quotes are escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def strip_ws(e: str) -> str:
    """str.strip()."""
    return f"regexp_replace({e}, {lit(f'^[{WS}]+|[{WS}]+$')}, '')"


def blank(e: str) -> str:
    """`not text or text.isspace()` for a non-null string."""
    return f"(NOT ({e}) RLIKE {lit(f'[^{WS}]')})"


def first_line(e: str) -> str:
    """signatures._first_line: the first line with a non-space character, stripped."""
    return strip_ws(f"regexp_extract({e}, {lit(f'^[{WS}]*([^{LINE_BREAKS}]*)')}, 1)")


def normalized(message: str) -> str:
    """signatures.normalize_error_message."""
    line = first_line(f"coalesce({message}, '')")
    out = line
    for pattern, placeholder in RULES:
        out = f"regexp_replace({out}, {lit(pattern)}, {lit(placeholder)})"
    out = f"regexp_replace({out}, {lit(STATUS_KEEP)}, {lit('$1' + _KEEP_MARK + '$2')})"
    out = f"regexp_replace({out}, {lit(NUMBER)}, '<N>')"
    out = f"regexp_replace({out}, {lit(_KEEP_MARK)}, '')"
    out = strip_ws(f"regexp_replace({out}, {lit(SPACES)}, ' ')")
    return f"(CASE WHEN {line} = '' THEN {lit(NO_MESSAGE)} ELSE substring({out}, 1, {MAX_SIGNATURE_CHARS}) END)"


_UPPER_FIRST = lit("^\\p{IsUppercase}")


def _looks_like_type(name: str) -> str:
    last = f"substring_index({name}, '.', -1)"
    return f"({last} RLIKE {_UPPER_FIRST} OR {last} RLIKE '(?:Error|Exception)$')"


def split_type_prefix(description: str) -> tuple[str, str]:
    """signatures.split_type_prefix: (type or NULL, message)."""
    text = f"coalesce({description}, '')"
    name = f"regexp_extract({text}, {lit(TYPE_PREFIX)}, 1)"
    typed = f"({name} != '' AND {_looks_like_type(name)})"
    return f"(CASE WHEN {typed} THEN {name} END)", f"(CASE WHEN {typed} THEN regexp_extract({text}, {lit(TYPE_PREFIX)}, 2) ELSE {text} END)"


def plain(e: str) -> str:
    """signatures._plain: NULL -> '', a double-quoted value loses its quotes."""
    text = f"coalesce({e}, '')"
    quoted = f"(length({text}) >= 2 AND startswith({text}, '\"') AND endswith({text}, '\"'))"
    return f"(CASE WHEN {quoted} THEN substr({text}, 2, length({text}) - 2) ELSE {text} END)"


def error_parts(exc_type_raw: str, exc_message_raw: str, status_message: str, has_event: str) -> tuple[str, str]:
    """signatures.error_from_span over columns: (exception type or NULL, message). `has_event` says the
    span has an exception event with a non-empty plain type or message (its last such event's attributes
    are exc_type_raw / exc_message_raw)."""
    etype, emsg = plain(exc_type_raw), plain(exc_message_raw)
    s_type, s_msg = split_type_prefix(status_message)
    status = f"coalesce({status_message}, '')"
    event_msg = f"(CASE WHEN {emsg} = '' AND {status} != '' THEN {s_msg} ELSE {emsg} END)"
    exc_type = f"(CASE WHEN {has_event} THEN (CASE WHEN {etype} != '' THEN {etype} END) ELSE {s_type} END)"
    message = f"(CASE WHEN {has_event} THEN {event_msg} ELSE {s_msg} END)"
    return exc_type, message


def event_is_error(type_raw: str, message_raw: str) -> str:
    return f"({plain(type_raw)} != '' OR {plain(message_raw)} != '')"


# --- payloads ------------------------------------------------------------------------------------

_JSON_LITERAL = "^(?:-?\\p{Nd}+(?:\\.\\p{Nd}+)?(?:[eE][-+]?\\p{Nd}+)?|true|false|null)$"


def json_edges(raw: str) -> tuple[str, str]:
    """The first and the last non-space character of a string ('' when it is blank): anchored
    matches (the last one on the reversed text), not a strip of the whole payload."""
    edge = lit(f"(?s)^[{WS}]*+(.)")
    return f"regexp_extract({raw}, {edge}, 1)", f"regexp_extract(reverse({raw}), {edge}, 1)"


_SINGLE = lit(f"^[{WS}]*+[^{WS}][{WS}]*+$")  # the stripped text is one character


def looks_like_json_from(raw: str, first: str, last: str) -> str:
    """spans.looks_like_json for a non-null string, from its json_edges."""
    closing = f"(CASE WHEN {first} = '{{' THEN '}}' WHEN {first} = '[' THEN ']' WHEN {first} = '\"' THEN '\"' END)"
    single = f"({raw} RLIKE {_SINGLE})"
    return (f"(CASE WHEN {first} = '' THEN false WHEN {closing} IS NOT NULL THEN ({last} = {closing} AND NOT {single}) "
            f"ELSE {strip_ws(raw)} RLIKE {lit(_JSON_LITERAL)} END)")


def looks_like_json(raw: str) -> str:
    """spans.looks_like_json for a non-null string."""
    return looks_like_json_from(raw, *json_edges(raw))


def _has(x: str, key: str) -> str:
    return f"(try_variant_get({x}, '$[\"{key}\"]', 'variant') IS NOT NULL)"


def _null(x: str) -> str:
    return f"({x} IS NULL OR is_variant_null({x}))"


def _obj(x: str) -> str:
    return f"try_variant_get({x}, '$', 'map<string,variant>')"


def _arr(x: str) -> str:
    return f"try_variant_get({x}, '$', 'array<variant>')"


def _string(x: str) -> str:
    return f"(schema_of_variant({x}) = 'STRING')"


def _blank_sql(s: str) -> str:
    return f"(NOT ({s}) RLIKE '[^{WS.replace(chr(92), chr(92) * 2)}]')"


def _truthy(x: str) -> str:
    """Python truthiness of a JSON value (NULL: absent)."""
    return (f"(CASE WHEN {_null(x)} THEN false WHEN {_obj(x)} IS NOT NULL THEN size({_obj(x)}) > 0 "
            f"WHEN {_arr(x)} IS NOT NULL THEN size({_arr(x)}) > 0 "
            f"WHEN {_string(x)} THEN length(variant_get({x}, '$', 'string')) > 0 "
            f"WHEN schema_of_variant({x}) = 'BOOLEAN' THEN variant_get({x}, '$', 'boolean') "
            f"ELSE coalesce(try_variant_get({x}, '$', 'double') != 0, false) END)")


def _get(x: str, path: str) -> str:
    return f"try_variant_get({x}, '{path}', 'variant')"


def _chat_mode(x: str) -> str:
    """spans._chat_reply_content of an object: 0 MISSING (judge every value), 1 the content (judge it),
    2 no choices (empty)."""
    choices = f"try_variant_get({x}, '$[\"choices\"]', 'array<variant>')"
    allowed = "array('role', 'content', 'name', 'tool_calls')"
    first_calls = _truthy(_get(x, '$["choices"][0]["message"]["tool_calls"]'))
    calls = _truthy(_get(x, '$["tool_calls"]'))
    return (f"(CASE WHEN NOT {_has(x, 'choices')} AND NOT {_has(x, 'role')} THEN 0 "
            f"WHEN {choices} IS NOT NULL THEN (CASE WHEN size({choices}) = 0 THEN 2 WHEN {first_calls} THEN 0 ELSE 1 END) "
            f"WHEN size(array_except(map_keys({_obj(x)}), {allowed})) = 0 AND {_has(x, 'content')} AND {_has(x, 'role')} THEN "
            f"(CASE WHEN {calls} THEN 0 ELSE 1 END) "
            f"ELSE 0 END)")


def _chat_content(x: str) -> str:
    choices = f"try_variant_get({x}, '$[\"choices\"]', 'array<variant>')"
    return (f"(CASE WHEN {choices} IS NOT NULL THEN try_variant_get({x}, '$[\"choices\"][0][\"message\"][\"content\"]', 'variant') "
            f"ELSE try_variant_get({x}, '$[\"content\"]', 'variant') END)")


def empty_value_sql(x: str, depth: int = 0) -> str:
    """spans.is_empty_value of a VARIANT (SQL text; `x` a column or lambda variable). One recursive
    call per level (a dict's content or its values, a list's items: one `forall`)."""
    null_case = f"WHEN {_null(x)} THEN true"
    text = f"variant_get({x}, '$', 'string')"
    string_case = f"WHEN {_string(x)} THEN {_blank_sql(text)}"
    elems = f"coalesce(map_values({_obj(x)}), {_arr(x)})"
    if depth >= EMPTY_DEPTH:
        inner = "false"
    else:
        y = f"v{depth + 1}"
        items = (f"(CASE WHEN {_obj(x)} IS NULL THEN {_arr(x)} ELSE (CASE {_chat_mode(x)} WHEN 2 THEN CAST(array() AS ARRAY<VARIANT>) "
                 f"WHEN 1 THEN array({_chat_content(x)}) ELSE map_values({_obj(x)}) END) END)")
        inner = f"forall({items}, {y} -> {empty_value_sql(y, depth + 1)})"
    return (f"(CASE {null_case} WHEN {elems} IS NOT NULL THEN (CASE WHEN size({elems}) = 0 THEN true ELSE {inner} END) "
            f"{string_case} ELSE false END)")


def payload_facts(raw: str, parsed: str, first: str | None = None, lj: str | None = None, huge: str | None = None) -> dict[str, str]:
    """What the builder reads of one stored payload (spans.Payload.of, shape_of, is_empty_value),
    `raw` the stored text (NULL: the attribute is absent), `parsed` the name of a column holding
    try_parse_json(raw) (NULL when raw is huge); `first`, `lj` and `huge` (its first non-space
    character, looks_like_json, its size test) when an earlier projection computed them once.
    Returns SQL expressions: present, has_value, huge, is_json, kind, keys, empty."""
    if huge is None:
        huge = f"coalesce(length({raw}) > {HUGE_PAYLOAD_CHARS}, false)"
    if first is None or lj is None:
        first, last = json_edges(raw)
        lj = looks_like_json_from(raw, first, last)
    is_json = f"({parsed} IS NOT NULL AND {lj})"
    messages = f"try_variant_get({parsed}, '$[\"messages\"]', 'array<variant>')"
    chat_messages = f"coalesce(size({messages}) > 0 AND forall(slice({messages}, 1, 5), m -> {_has('m', 'role')}), false)"
    list_of_messages = f"coalesce(size({_arr(parsed)}) > 0 AND forall(slice({_arr(parsed)}, 1, 5), m -> {_has('m', 'role')}), false)"
    object_kind = (f"(CASE WHEN {chat_messages} THEN 'chat_messages' "
                   f"WHEN try_variant_get({parsed}, '$[\"choices\"]', 'array<variant>') IS NOT NULL THEN 'chat_completion' "
                   f"WHEN {_has(parsed, 'role')} AND {_has(parsed, 'content')} THEN 'message' ELSE 'object' END)")
    kind = (f"(CASE WHEN {raw} IS NULL THEN 'null' WHEN {huge} THEN 'huge' WHEN NOT {is_json} THEN 'non_json' "
            f"WHEN {first} = '{{' THEN {object_kind} "
            f"WHEN {first} = '[' THEN (CASE WHEN {list_of_messages} THEN 'chat_messages' ELSE 'list' END) "
            f"WHEN {first} = '\"' THEN 'text' WHEN {first} IN ('t', 'f') THEN 'boolean' WHEN {first} = 'n' THEN 'null' ELSE 'number' END)")
    keys = (f"(CASE WHEN NOT {huge} AND {is_json} AND {first} = '{{' THEN slice(array_sort(map_keys({_obj(parsed)})), 1, 12) "
            f"ELSE CAST(array() AS ARRAY<STRING>) END)")
    has_value = f"({raw} IS NOT NULL AND ({huge} OR NOT {is_json} OR {first} != 'n'))"
    empty = (f"(CASE WHEN {raw} IS NULL THEN true WHEN {huge} THEN false WHEN {is_json} THEN {empty_value_sql(parsed)} "
             f"ELSE {blank(raw)} END)")
    return {"present": f"({raw} IS NOT NULL)", "has_value": has_value, "huge": huge, "is_json": is_json, "kind": kind, "keys": keys, "empty": empty}


# --- assessment values ----------------------------------------------------------------------------

_INT_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")
_INTS = ", ".join(f"'{t}'" for t in _INT_TYPES)


def _stage(source: str, expr: str, name: str) -> str:
    return f"SELECT *, {expr} AS {name} FROM ({source})"


def with_py_float_repr(source: str, text: str, out: str, keep: list[str]) -> str:
    """A SELECT of `keep` and `out` = repr(float(x)) from column `text` of the relation `source` (SQL),
    `text` the decimal text of a number with at most 15 significant digits (or Java's Double.toString
    of a double): Python's fixed notation for exponents -4..15, else d.ddde+XX. Built in stages (one
    nested projection each), so no step is inlined twice."""
    q = _stage(source, f"regexp_replace({text}, '^[-+]', '')", "_body")
    q = _stage(q, "regexp_extract(_body, '^([0-9.]*)', 1)", "_mant")
    q = _stage(q, "coalesce(try_cast(regexp_extract(_body, '[eE]([-+]?[0-9]+)$', 1) AS INT), 0)", "_exp0")
    q = _stage(q, f"regexp_replace(_mant, {lit(chr(92) + '.')}, '')", "_all")
    q = _stage(q, "regexp_replace(_all, '^0+', '')", "_nolead")
    q = _stage(q, "regexp_replace(_nolead, '0+$', '')", "_digits")
    # value = 0.<digits> x 10^point
    q = _stage(q, f"length(split(_mant, {lit(chr(92) + '.')})[0]) + _exp0 - (length(_all) - length(_nolead))", "_point")
    digits, point, n, x = "_digits", "_point", "length(_digits)", "(_point - 1)"
    fixed = (f"(CASE WHEN {point} <= 0 THEN concat('0.', repeat('0', -{point}), {digits}) "
             f"WHEN {point} >= {n} THEN concat({digits}, repeat('0', {point} - {n}), '.0') "
             f"ELSE concat(substr({digits}, 1, {point}), '.', substr({digits}, {point} + 1, {n})) END)")
    sci = (f"concat(substr({digits}, 1, 1), (CASE WHEN {n} > 1 THEN concat('.', substr({digits}, 2, {n})) ELSE '' END), "
           f"'e', (CASE WHEN {x} < 0 THEN '-' ELSE '+' END), lpad(CAST(abs({x}) AS STRING), 2, '0'))")
    body = f"(CASE WHEN {digits} = '' THEN '0.0' WHEN {x} >= -4 AND {x} < 16 THEN {fixed} ELSE {sci} END)"
    return f"SELECT {', '.join(keep)}, (CASE WHEN startswith({text}, '-') THEN concat('-', {body}) ELSE {body} END) AS {out} FROM ({q})"


VALUE_KEYS = ["_vk", "_vt", "_vj", "_vs", "_vd"]


def value_keys(v: str) -> list[str]:
    """What an assessment value's label is made from, as plain columns of the VARIANT column `v`
    (select-list items): _vk (one key per distinct value: its type and JSON), _vt, _vj, _vs (a string
    value) and _vd (a number printed as a double). Label the distinct _vk with with_value_label and join back."""
    return [f"coalesce(concat(schema_of_variant({v}), '|', to_json({v})), '') AS _vk",
            f"schema_of_variant({v}) AS _vt", f"to_json({v}) AS _vj",
            f"(CASE WHEN schema_of_variant({v}) = 'STRING' THEN variant_get({v}, '$', 'string') END) AS _vs",
            f"CAST(try_variant_get({v}, '$', 'double') AS STRING) AS _vd"]


def with_value_label(source: str, keep: list[str], out: str = "label") -> str:
    """A SELECT of `keep` and `out` = accumulators._value_label of the value, over the relation `source`
    (SQL) that has value_keys' columns."""
    j, t = "_vj", "_vt"
    significant = f"length(regexp_replace(regexp_replace(regexp_replace({j}, '[eE].*$|[-.]', ''), '^0+', ''), '0+$', ''))"
    numeric = f"(startswith({t}, 'DECIMAL') OR {t} IN ('DOUBLE', 'FLOAT'))"
    staged = _stage(source, f"(CASE WHEN {numeric} AND {significant} > 15 THEN _vd WHEN {numeric} THEN {j} END)", "_nt")
    staged = with_py_float_repr(staged, "_nt", "_repr", ["*"])
    label = (f"(CASE WHEN {j} IS NULL OR {j} = 'null' THEN 'null' "
             f"WHEN {t} = 'BOOLEAN' THEN {j} "
             f"WHEN {t} IN ({_INTS}) THEN {j} "
             f"WHEN {j} = '\"Infinity\"' THEN 'inf' WHEN {j} = '\"-Infinity\"' THEN '-inf' WHEN {j} = '\"NaN\"' THEN 'nan' "
             f"WHEN {numeric} THEN _repr "
             f"WHEN {t} = 'STRING' THEN substring(_vs, 1, 60) "
             f"WHEN startswith({t}, 'OBJECT') THEN 'dict' WHEN startswith({t}, 'ARRAY') THEN 'list' "
             f"ELSE lower({t}) END)")
    return f"SELECT {', '.join(keep)}, {label} AS {out} FROM ({staged})"


def value_number(v: str) -> str:
    """The assessment value as a number when it is one (not a boolean), else NULL."""
    t = f"schema_of_variant({v})"
    return f"(CASE WHEN {t} IN ({_INTS}) OR startswith({t}, 'DECIMAL') OR {t} IN ('DOUBLE', 'FLOAT') THEN try_variant_get({v}, '$', 'double') END)"

"""The builder's per-value definitions written as Spark SQL expressions, so the spark engine runs no Python
per row: error text and its signature normalisation (signatures.py), JSON-looking text, payload
presence, shape and emptiness (spans.py) and assessment value labels (accumulators._value_label).

Each function takes and returns pyspark Columns (regular expressions are passed as Python strings,
never through SQL string literals). The regular expressions are signatures.py's own patterns, carried
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


def _F():
    from pyspark.sql import functions as F

    return F


def strip_ws(col: Any) -> Any:
    """str.strip()."""
    return _F().regexp_replace(col, f"^[{WS}]+|[{WS}]+$", "")


def blank(col: Any) -> Any:
    """`not text or text.isspace()` for a non-null string."""
    return ~col.rlike(f"[^{WS}]")


def first_line(col: Any) -> Any:
    """signatures._first_line: the first line with a non-space character, stripped."""
    F = _F()
    return strip_ws(F.regexp_extract(col, f"^[{WS}]*([^{LINE_BREAKS}]*)", 1))


def normalized(message: Any) -> Any:
    """signatures.normalize_error_message."""
    F = _F()
    line = first_line(F.coalesce(message, F.lit("")))
    out = line
    for pattern, placeholder in RULES:
        out = F.regexp_replace(out, pattern, placeholder)
    out = F.regexp_replace(out, STATUS_KEEP, "$1" + _KEEP_MARK + "$2")
    out = F.regexp_replace(out, NUMBER, "<N>")
    out = F.regexp_replace(out, _KEEP_MARK, "")
    out = strip_ws(F.regexp_replace(out, SPACES, " "))
    return F.when(line == "", F.lit(NO_MESSAGE)).otherwise(F.substring(out, 1, MAX_SIGNATURE_CHARS))


def _looks_like_type(name: Any) -> Any:
    F = _F()
    last = F.substring_index(name, ".", -1)
    return last.rlike("^\\p{IsUppercase}") | last.rlike("(?:Error|Exception)$")


def split_type_prefix(description: Any) -> tuple[Any, Any]:
    """signatures.split_type_prefix: (type or NULL, message)."""
    F = _F()
    text = F.coalesce(description, F.lit(""))
    name = F.regexp_extract(text, TYPE_PREFIX, 1)
    typed = (name != "") & _looks_like_type(name)
    return F.when(typed, name), F.when(typed, F.regexp_extract(text, TYPE_PREFIX, 2)).otherwise(text)


def plain(col: Any) -> Any:
    """signatures._plain: NULL -> '', a double-quoted value loses its quotes."""
    F = _F()
    text = F.coalesce(col, F.lit(""))
    quoted = (F.length(text) >= 2) & text.startswith('"') & text.endswith('"')
    return F.when(quoted, text.substr(F.lit(2), F.length(text) - 2)).otherwise(text)


def error_parts(exc_type_raw: Any, exc_message_raw: Any, status_message: Any, has_event: Any) -> tuple[Any, Any]:
    """signatures.error_from_span over columns: (exception type or NULL, message). `has_event` says the
    span has an exception event with a non-empty plain type or message (its last such event's attributes
    are exc_type_raw / exc_message_raw)."""
    F = _F()
    etype, emsg = plain(exc_type_raw), plain(exc_message_raw)
    s_type, s_msg = split_type_prefix(status_message)
    status = F.coalesce(status_message, F.lit(""))
    event_msg = F.when((emsg == "") & (status != ""), s_msg).otherwise(emsg)
    exc_type = F.when(has_event, F.when(etype != "", etype)).otherwise(s_type)
    message = F.when(has_event, event_msg).otherwise(s_msg)
    return exc_type, message


def event_is_error(type_raw: Any, message_raw: Any) -> Any:
    return (plain(type_raw) != "") | (plain(message_raw) != "")


# --- payloads ------------------------------------------------------------------------------------

_JSON_LITERAL = "^(?:-?\\p{Nd}+(?:\\.\\p{Nd}+)?(?:[eE][-+]?\\p{Nd}+)?|true|false|null)$"


def json_edges(raw: Any) -> tuple[Any, Any]:
    """The first and the last non-space character of a string ('' when it is blank): anchored
    matches (the last one on the reversed text), not a strip of the whole payload."""
    F = _F()
    edge = f"(?s)^[{WS}]*+(.)"
    return F.regexp_extract(raw, edge, 1), F.regexp_extract(F.reverse(raw), edge, 1)


def looks_like_json_from(raw: Any, first: Any, last: Any) -> Any:
    """spans.looks_like_json for a non-null string, from its json_edges."""
    F = _F()
    closing = F.when(first == "{", "}").when(first == "[", "]").when(first == '"', '"')
    single = raw.rlike(f"^[{WS}]*+[^{WS}][{WS}]*+$")  # the stripped text is one character
    return (F.when(first == "", False)
            .when(closing.isNotNull(), (last == closing) & ~single)
            .otherwise(strip_ws(raw).rlike(_JSON_LITERAL)))


def looks_like_json(raw: Any) -> Any:
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


def payload_facts(raw: Any, parsed: str, first: Any = None, lj: Any = None, huge: Any = None) -> dict[str, Any]:
    """What the builder reads of one stored payload (spans.Payload.of, shape_of, is_empty_value),
    `raw` the stored text column (NULL: the attribute is absent), `parsed` the SQL name of a column
    holding try_parse_json(raw) (NULL when raw is huge); `first`, `lj` and `huge` (its first non-space
    character, looks_like_json, its size test) when an earlier projection computed them once.
    Returns Columns: present, has_value, huge, is_json, kind, keys, empty."""
    F = _F()
    if huge is None:
        huge = F.coalesce(F.length(raw) > HUGE_PAYLOAD_CHARS, F.lit(False))
    if first is None or lj is None:
        first, last = json_edges(raw)
        lj = looks_like_json_from(raw, first, last)
    v = F.col(parsed)
    is_json = v.isNotNull() & lj
    messages = f"try_variant_get({parsed}, '$[\"messages\"]', 'array<variant>')"
    chat_messages = F.expr(f"coalesce(size({messages}) > 0 AND forall(slice({messages}, 1, 5), m -> {_has('m', 'role')}), false)")
    list_of_messages = F.expr(f"coalesce(size({_arr(parsed)}) > 0 AND forall(slice({_arr(parsed)}, 1, 5), m -> {_has('m', 'role')}), false)")
    object_kind = (F.when(chat_messages, "chat_messages")
                   .when(F.expr(f"try_variant_get({parsed}, '$[\"choices\"]', 'array<variant>') IS NOT NULL"), "chat_completion")
                   .when(F.expr(f"{_has(parsed, 'role')} AND {_has(parsed, 'content')}"), "message").otherwise("object"))
    kind = (F.when(raw.isNull(), "null").when(huge, "huge").when(~is_json, "non_json")
            .when(first == "{", object_kind)
            .when(first == "[", F.when(list_of_messages, "chat_messages").otherwise("list"))
            .when(first == '"', "text").when(first.isin("t", "f"), "boolean").when(first == "n", "null").otherwise("number"))
    keys = F.when(~huge & is_json & (first == "{"), F.expr(f"slice(array_sort(map_keys({_obj(parsed)})), 1, 12)")) \
        .otherwise(F.expr("CAST(array() AS ARRAY<STRING>)"))
    has_value = raw.isNotNull() & (huge | ~is_json | (first != "n"))
    empty = F.when(raw.isNull(), True).when(huge, False).when(is_json, F.expr(empty_value_sql(parsed))).otherwise(blank(raw))
    return {"present": raw.isNotNull(), "has_value": has_value, "huge": huge, "is_json": is_json, "kind": kind, "keys": keys, "empty": empty}


# --- assessment values ----------------------------------------------------------------------------

_INT_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")


def with_py_float_repr(df: Any, text: str, out: str) -> Any:
    """`df` with column `out` = repr(float(x)) from column `text`, the decimal text of a number with at
    most 15 significant digits (or Java's Double.toString of a double): Python's fixed notation for
    exponents -4..15, else d.ddde+XX. Built in stages (one column each), so no step is inlined twice."""
    F = _F()
    c = F.col
    df = df.withColumn("_body", F.regexp_replace(c(text), "^[-+]", ""))
    df = df.withColumn("_mant", F.regexp_extract(c("_body"), "^([0-9.]*)", 1))
    df = df.withColumn("_exp0", F.coalesce(F.regexp_extract(c("_body"), "[eE]([-+]?[0-9]+)$", 1).try_cast("int"), F.lit(0)))
    df = df.withColumn("_all", F.regexp_replace(c("_mant"), "\\.", ""))
    df = df.withColumn("_nolead", F.regexp_replace(c("_all"), "^0+", ""))
    df = df.withColumn("_digits", F.regexp_replace(c("_nolead"), "0+$", ""))
    # value = 0.<digits> x 10^point
    df = df.withColumn("_point", F.length(F.split(c("_mant"), "\\.").getItem(0)) + c("_exp0") - (F.length(c("_all")) - F.length(c("_nolead"))))
    digits, point, n, x = c("_digits"), c("_point"), F.length(c("_digits")), c("_point") - 1
    fixed = (F.when(point <= 0, F.concat(F.lit("0."), F.repeat(F.lit("0"), -point), digits))
             .when(point >= n, F.concat(digits, F.repeat(F.lit("0"), point - n), F.lit(".0")))
             .otherwise(F.concat(digits.substr(F.lit(1), point), F.lit("."), digits.substr(point + 1, n))))
    sci = F.concat(digits.substr(1, 1), F.when(n > 1, F.concat(F.lit("."), digits.substr(F.lit(2), n))).otherwise(F.lit("")),
                   F.lit("e"), F.when(x < 0, "-").otherwise("+"), F.lpad(F.abs(x).cast("string"), 2, "0"))
    body = F.when(digits == "", "0.0").when((x >= -4) & (x < 16), fixed).otherwise(sci)
    df = df.withColumn(out, F.when(c(text).startswith("-"), F.concat(F.lit("-"), body)).otherwise(body))
    return df.drop("_body", "_mant", "_exp0", "_all", "_nolead", "_digits", "_point")


def value_keys(v: str) -> list[Any]:
    """What an assessment value's label is made from, as plain columns of the VARIANT column `v`:
    _vk (one key per distinct value: its type and JSON), _vt, _vj, _vs (a string value) and _vd (a
    number printed as a double). Label the distinct _vk with with_value_label and join back."""
    F = _F()
    return [F.coalesce(F.expr(f"concat(schema_of_variant({v}), '|', to_json({v}))"), F.lit("")).alias("_vk"),
            F.expr(f"schema_of_variant({v})").alias("_vt"), F.expr(f"to_json({v})").alias("_vj"),
            F.expr(f"CASE WHEN schema_of_variant({v}) = 'STRING' THEN variant_get({v}, '$', 'string') END").alias("_vs"),
            F.expr(f"CAST(try_variant_get({v}, '$', 'double') AS STRING)").alias("_vd")]


def with_value_label(df: Any, out: str = "label") -> Any:
    """`df` (with value_keys' columns) with column `out` = accumulators._value_label of the value."""
    F = _F()
    c = F.col
    j, t = c("_vj"), c("_vt")
    significant = F.length(F.regexp_replace(F.regexp_replace(F.regexp_replace(j, "[eE].*$|[-.]", ""), "^0+", ""), "0+$", ""))
    numeric = t.startswith("DECIMAL") | t.isin("DOUBLE", "FLOAT")
    df = df.withColumn("_nt", F.when(numeric & (significant > 15), c("_vd")).when(numeric, j))
    df = with_py_float_repr(df, "_nt", "_repr")
    label = (F.when(j.isNull() | (j == "null"), "null")
             .when(t == "BOOLEAN", j)
             .when(t.isin(*_INT_TYPES), j)
             .when(j == '"Infinity"', "inf").when(j == '"-Infinity"', "-inf").when(j == '"NaN"', "nan")
             .when(numeric, c("_repr"))
             .when(t == "STRING", F.substring(c("_vs"), 1, 60))
             .when(t.startswith("OBJECT"), "dict").when(t.startswith("ARRAY"), "list")
             .otherwise(F.lower(t)))
    return df.withColumn(out, label).drop("_nt", "_repr")


def value_number(v: str) -> Any:
    """The assessment value as a number when it is one (not a boolean), else NULL."""
    F = _F()
    t = F.expr(f"schema_of_variant({v})")
    return F.when(t.isin(*_INT_TYPES) | t.startswith("DECIMAL") | t.isin("DOUBLE", "FLOAT"), F.expr(f"try_variant_get({v}, '$', 'double')"))

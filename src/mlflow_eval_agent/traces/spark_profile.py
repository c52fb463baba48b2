"""The third profile engine: the same `TraceProfile` as Spark SQL aggregates over Unity Catalog tables.

The sql and api engines stream `TraceRecord`s through `ProfileBuilder` in one Python process; this one
leaves the spans where they are (Delta tables in UC, `uc_schema.py`) and asks Spark for aggregates:
per-name counts, exact nearest-rank percentiles (a window rank per group, so the picked value is
one of the observed ones, as in percentiles.py), capped example lists (the k most recent traces per
group, by the builder's own order), top-k and hash samples. Only those rows come to the driver.

Everything runs in the JVM: no Python function is applied to a row. The builder's per-value
definitions (the error of a span and its signature normalisation, payload presence, shapes and
emptiness, JSON-looking text, assessment value labels) are Spark SQL expressions in spark_sql.py,
written from the Python ones (signatures.py's own regular expressions, carried to Java's syntax) and
tested against them value by value; the few rare values where Spark's JSON parser or number printing
cannot match Python's are listed there and asserted in the test. One projection reads the spans table
once and keeps a narrow row per span (ids, name, type, status, times, model, error, payload facts; no
payload text), persisted (memory, spilling to disk) for the aggregates; traces without a real root
take their orphan root's facts from a second pass over those traces only. Error propagation and "a
model call with no model call below it" are ancestor walks done as iterated self-joins on
(trace_id, span_id) -> parent_span_id, each level persisted. The trajectory section reads the spans of
the `trajectory_scan` most recent traces whole, as the other engines do (a bounded fetch).

Where the engines differ, by construction (see also uc_schema.py's open points):
- Trace ids are the v4 ids MLflow shows for UC traces: `trace:/<catalog.schema.prefix>/<otel id>`.
- Traces exist only through their spans here, so `traces_without_spans` is always 0; rows without a
  span id count as `unparseable_spans`; names beyond the caps are not folded into "(other)" (the
  builder folds by arrival order, which no aggregate has) and `folded_*` stay 0.
- MLflow's load-time type inference for spans stored without a type (mlflow.tracing.otel.translation)
  is not applied: such spans stay UNKNOWN.
- A filter string is MLflow search syntax, which Spark does not speak: `--since` and `--max-traces`
  work, `--filter` is refused with the reason.
pyspark is imported only inside functions: the base package never needs it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import numpy as np

from .accumulators import EXAMPLES, MANY_EXAMPLES, MAX_VALUES, MESSAGE_CHARS, ODD_KEYS, OTHER, SAMPLE_SIZE, SLOWEST
from .percentiles import QUANTILES, CountDistribution, rank_index
from .profile_model import (
    AssessmentSummary,
    CountStats,
    ErrorSignature,
    HiddenFailures,
    HistogramBin,
    LatencyStats,
    LlmUsage,
    NamedCount,
    NumericStats,
    OddCount,
    Outputs,
    ProfileSource,
    Retrieval,
    RetrieverStats,
    Sessions,
    Shape,
    Shapes,
    SlowTrace,
    SpanCount,
    SpanStats,
    TimeBucket,
    TimeRange,
    TokenTotals,
    ToolStats,
    TraceProfile,
)
from .signatures import signature_id
from .spans import HUGE_PAYLOAD_CHARS, LLM_TYPES, SpanRow
from .uc_schema import (
    ASSESSMENT_TYPES,
    INPUTS_KEY,
    INVOCATION_PARAMS_KEY,
    MODEL_KEYS,
    OUTPUTS_KEY,
    SESSION_METADATA_KEY,
    SPAN_TYPE_KEY,
    TOKEN_USAGE_METADATA_KEY,
    UcLocation,
)

MAX_DEPTH = 64  # ancestor walks stop here (a span tree deeper than this is not an agent's)
TIMELINE_BUCKETS = 30
HISTOGRAM_BINS = 24


class SparkEngineError(Exception):
    """The Spark engine cannot run here; the message says what to do instead."""


def active_spark() -> Any:
    """The active SparkSession (a Databricks job's own, or Databricks Connect's), else None; None also
    when pyspark is not installed."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    session = SparkSession.getActiveSession()
    if session is not None:
        return session
    try:  # Databricks Connect off-cluster: a session from the SDK's configuration, when installed
        from databricks.connect import DatabricksSession  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return DatabricksSession.builder.getOrCreate()
    except Exception:  # no workspace configured: there is no Spark here
        return None


# --- SQL building blocks -----------------------------------------------------------------------


def _attr(key: str, column: str = "attributes") -> str:
    """An attribute of `attributes` (VARIANT) as text: the stored JSON-encoded string, or the JSON of a
    value stored parsed (uc_schema.py: which of the two Databricks writes is not documented)."""
    return f"variant_get({column}, '$[\"{key}\"]', 'string')"


def plain_string_sql(expr: str) -> str:
    """A JSON-encoded string value ('"TOOL"') decoded; other text unchanged (spans._plain_string)."""
    return f"coalesce(get_json_object(concat('[', {expr}, ']'), '$[0]'), {expr})"


def _status_sql(code: str) -> str:
    """spans.status_code in SQL: STATUS_CODE_ERROR/ERROR -> ERROR, .._OK -> OK, anything else UNSET."""
    norm = f"upper(regexp_replace(coalesce({code}, ''), '^(?i)STATUS_CODE_', ''))"
    return f"CASE WHEN {norm} IN ('OK', 'ERROR') THEN {norm} ELSE 'UNSET' END"


def _ex_attr(key: str) -> str:
    return _attr(key, "e.attributes")


def _plain_sql(expr: str) -> str:
    """signatures._plain in SQL: NULL -> '', a double-quoted value loses its quotes."""
    return (f"(CASE WHEN length({expr}) >= 2 AND startswith({expr}, '\"') AND endswith({expr}, '\"') "
            f"THEN substr({expr}, 2, length({expr}) - 2) ELSE coalesce({expr}, '') END)")


def _model_sql() -> str:
    """spans.model_name over columns: MLflow's and other conventions' attributes, invocation params,
    then a `model` field of the inputs."""
    parts = [f"nullif({plain_string_sql(_attr(k))}, '')" for k in MODEL_KEYS]
    params = _attr(INVOCATION_PARAMS_KEY)
    parts += [f"nullif(get_json_object({plain_string_sql(params)}, '$.model'), '')",
              f"nullif(get_json_object({plain_string_sql(params)}, '$.model_name'), '')",
              f"CASE WHEN length(inputs_raw) <= {HUGE_PAYLOAD_CHARS} AND ltrim(inputs_raw) LIKE '{{%' "
              f"AND left(get_json_object(inputs_raw, '$.model'), 1) NOT IN ('[', '{{') "
              f"THEN nullif(get_json_object(inputs_raw, '$.model'), '') END"]
    return f"coalesce({', '.join(parts)})"


def _table(name: str) -> str:
    """A table name as SQL: each dotted part in backticks (a temp view's single name too)."""
    return ".".join(f"`{part.replace('`', '``')}`" for part in name.split("."))


def _list(values: Any) -> str:
    return ", ".join(values)


def _in(values: Any) -> str:
    from .spark_sql import lit

    return ", ".join(lit(v) for v in values)


LLM_IN = _in(sorted(LLM_TYPES))
DURATION = "CASE WHEN start_ns IS NOT NULL AND end_ns IS NOT NULL AND end_ns >= start_ns THEN end_ns - start_ns END"
ERRORS = "sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END)"
# The narrow row per span (_narrow), and the span rows the aggregates read (with their trace's ts and state).
NARROW_COLUMNS = ["trace_id", "span_id", "parent_id", "name", "span_type", "status", "start_ns", "end_ns", "model", "in_huge", "out_huge",
                  "exc_type", "message", "in_nonjson", "out_nonjson", "in_has_value", "in_kind", "in_keys", "out_has_value", "out_kind",
                  "out_keys", "out_empty", "normalized"]
SPAN_COLUMNS = [*NARROW_COLUMNS, "ts", "state"]


# --- the engine --------------------------------------------------------------------------------


class SparkProfile:
    """One profile of one UC location, as SQL statements run by `runner` (sql_runner.py: a SparkSession,
    or a SQL warehouse). `tables` names the spans and annotations tables when they are not at the
    location's own names (tests: temp views over parquet)."""

    def __init__(self, runner: Any, location: UcLocation, *, since_ms: int | None = None, max_traces: int | None = None,
                 tables: dict[str, str | None] | None = None):
        self.runner = runner
        self.location = location
        self.since_ms = since_ms
        self.max_traces = max_traces
        tables = tables or {}
        self.spans_table = _table(tables.get("spans") or location.spans_table)
        annotations = tables["annotations"] if "annotations" in tables else location.annotations_table
        self.annotations_table = _table(annotations) if annotations else None
        self.truncated = False
        self.live_annotations: str | None = None

    def _rows(self, statement: str) -> list[Any]:
        return self.runner.rows(statement)

    def _one(self, statement: str) -> Any:
        return self._rows(statement)[0]

    def _any(self, relation: str, where: str) -> bool:
        return bool(self._rows(f"SELECT 1 AS x FROM {relation} WHERE {where} LIMIT 1"))

    def _count(self, relation: str) -> int:
        return int(self._one(f"SELECT count(1) AS n FROM {relation}")["n"])

    @property
    def _loc(self) -> str:
        return self.location.name.replace("'", "")

    # --- the spans and traces, as SQL relations ---------------------------------------------------
    def _raw(self, source: str) -> str:
        """The columns read from the spans table (payload text stays engine-side and is dropped by _narrow)."""
        exc_type, exc_msg = _ex_attr("exception.type"), _ex_attr("exception.message")
        return ("SELECT "
                f"concat('trace:/{self._loc}/', trace_id) AS trace_id, "
                "nullif(span_id, '') AS span_id, "
                "nullif(parent_span_id, '') AS parent_id, "
                "coalesce(name, '(unnamed)') AS name, "
                f"coalesce(nullif({plain_string_sql(_attr(SPAN_TYPE_KEY))}, ''), 'UNKNOWN') AS span_type, "
                f"{_status_sql('status.code')} AS status, "
                "coalesce(status.message, '') AS status_message, "
                "start_time_unix_nano AS start_ns, "
                "nullif(end_time_unix_nano, 0) AS end_ns, "
                f"{_attr(INPUTS_KEY)} AS inputs_raw, "
                f"{_attr(OUTPUTS_KEY)} AS outputs_raw, "
                # signatures.error_from_span: the last exception event with a non-empty (unquoted) type or message
                f"try_element_at(filter(events, e -> e.name = 'exception' AND ({_plain_sql(exc_type)} != '' OR {_plain_sql(exc_msg)} != '')), -1) AS exc, "
                f"attributes FROM {source}")

    def _narrow(self, raw: str, all_roots: bool = False) -> str:
        """One row per span with only what the aggregates read: ids, name, type, status, times, model
        (model calls), the error (failed spans: type, message, normalised message), payload sizes and
        JSON-looking flags, and the payload facts of roots (every span when `all_roots`: the orphan
        pass) and retriever outputs. Every fact is a SQL expression (spark_sql.py)."""
        from . import spark_sql as S

        root = "true" if all_roots else "parent_id IS NULL"
        failed = "status = 'ERROR'"
        inspected = "(parent_id IS NULL OR span_type = 'RETRIEVER' OR status = 'ERROR')"
        exc_type_raw = "CASE WHEN exc IS NOT NULL THEN variant_get(exc.attributes, '$[\"exception.type\"]', 'string') END"
        exc_msg_raw = "CASE WHEN exc IS NOT NULL THEN variant_get(exc.attributes, '$[\"exception.message\"]', 'string') END"
        staged = ("SELECT trace_id, span_id, parent_id, name, span_type, status, start_ns, end_ns, inputs_raw, outputs_raw, "
                  f"CASE WHEN span_type IN ({LLM_IN}) THEN {_model_sql()} END AS model, "
                  f"CASE WHEN {failed} THEN {exc_type_raw} END AS exc_type_raw, CASE WHEN {failed} THEN {exc_msg_raw} END AS exc_message_raw, "
                  f"CASE WHEN {failed} THEN status_message END AS status_message, exc IS NOT NULL AS has_event, "
                  f"coalesce(length(inputs_raw) > {HUGE_PAYLOAD_CHARS}, false) AS in_huge, "
                  f"coalesce(length(outputs_raw) > {HUGE_PAYLOAD_CHARS}, false) AS out_huge, "
                  f"{inspected} AS inspected, {root} AS is_root, span_type = 'RETRIEVER' AS is_retriever FROM ({raw})")
        # Each payload's edges, JSON test and parse once, in their own projections (columns read by
        # several facts below are not re-evaluated per fact).
        read = "(inspected OR is_root)"
        edges = []
        for side in ("in", "out"):
            first, last = S.json_edges(f"{side}puts_raw")
            edges += [f"CASE WHEN {read} THEN {first} END AS {side}_first", f"CASE WHEN {read} THEN {last} END AS {side}_last"]
        staged = f"SELECT *, {_list(edges)} FROM ({staged})"
        lj = [f"CASE WHEN {read} AND {side}puts_raw IS NOT NULL AND NOT {side}_huge THEN "
              f"{S.looks_like_json_from(f'{side}puts_raw', f'{side}_first', f'{side}_last')} END AS {side}_lj" for side in ("in", "out")]
        staged = f"SELECT *, {_list(lj)} FROM ({staged})"
        staged = ("SELECT *, CASE WHEN is_root AND NOT in_huge THEN try_parse_json(inputs_raw) END AS pin, "
                  f"CASE WHEN (is_root OR is_retriever) AND NOT out_huge THEN try_parse_json(outputs_raw) END AS pout FROM ({staged})")
        exc_type, message = S.error_parts("exc_type_raw", "exc_message_raw", "status_message", "has_event")
        fin = S.payload_facts("inputs_raw", "pin", "in_first", "coalesce(in_lj, false)", "in_huge")
        fout = S.payload_facts("outputs_raw", "pout", "out_first", "coalesce(out_lj, false)", "out_huge")
        staged = ("SELECT trace_id, span_id, parent_id, name, span_type, status, start_ns, end_ns, model, in_huge, out_huge, "
                  f"CASE WHEN status = 'ERROR' THEN {exc_type} END AS exc_type, CASE WHEN status = 'ERROR' THEN {message} END AS message, "
                  "(inspected AND inputs_raw IS NOT NULL AND NOT in_huge AND NOT in_lj) AS in_nonjson, "
                  "(inspected AND outputs_raw IS NOT NULL AND NOT out_huge AND NOT out_lj) AS out_nonjson, "
                  f"CASE WHEN is_root THEN {fin['has_value']} END AS in_has_value, CASE WHEN is_root THEN {fin['kind']} END AS in_kind, "
                  f"CASE WHEN is_root THEN {fin['keys']} END AS in_keys, "
                  f"CASE WHEN is_root THEN {fout['has_value']} END AS out_has_value, CASE WHEN is_root THEN {fout['kind']} END AS out_kind, "
                  f"CASE WHEN is_root THEN {fout['keys']} END AS out_keys, "
                  f"CASE WHEN is_root OR is_retriever THEN {fout['empty']} END AS out_empty FROM ({staged})")
        return f"SELECT *, CASE WHEN status = 'ERROR' THEN {S.normalized('message')} END AS normalized FROM ({staged})"

    def _frames(self) -> None:
        narrow = self.runner.stage("narrow", self._narrow(self._raw(self.spans_table)))
        traces = ("SELECT trace_id, "
                  "min_start div 1000000 AS ts, "  # integer division: a double cannot hold nanoseconds since 1970
                  "CASE WHEN max_end IS NULL THEN NULL ELSE max_end div 1000000 - min_start div 1000000 END AS execution_ms, "
                  "span_count, roots, "
                  "CASE WHEN roots = 0 THEN 'IN_PROGRESS' WHEN root_error = 1 THEN 'ERROR' ELSE 'OK' END AS state "
                  "FROM (SELECT trace_id, min(start_ns) AS min_start, max(end_ns) AS max_end, count(*) AS span_count, "
                  "sum(CASE WHEN parent_id IS NULL THEN 1 ELSE 0 END) AS roots, "
                  "max(CASE WHEN parent_id IS NULL AND status = 'ERROR' THEN 1 ELSE 0 END) AS root_error "
                  f"FROM {narrow} WHERE span_id IS NOT NULL GROUP BY trace_id)")
        columns = "trace_id, ts, execution_ms, span_count, roots, state"
        if self.since_ms is not None:
            traces = f"SELECT * FROM ({traces}) WHERE ts >= {int(self.since_ms)}"
        if self.max_traces is not None:
            ranked = f"SELECT *, row_number() OVER (ORDER BY ts DESC, trace_id ASC) AS recency FROM ({traces})"
            self.truncated = self._any(f"({ranked})", f"recency > {int(self.max_traces)}")
            traces = f"SELECT {columns} FROM ({ranked}) WHERE recency <= {int(self.max_traces)}"
        meta = self._metadata()
        if meta is not None:
            traces = (f"SELECT t.*, m.session_id, m.token_usage, m.synthetic_timing FROM ({traces}) t "
                      f"LEFT JOIN ({meta}) m ON t.trace_id = m.trace_id")
        else:
            traces = (f"SELECT *, CAST(NULL AS STRING) AS session_id, CAST(NULL AS STRING) AS token_usage, "
                      f"CAST(NULL AS STRING) AS synthetic_timing FROM ({traces})")
        # One row per trace and one narrow row per span (no payload text), kept for the ~40 aggregates below.
        self.traces = self.runner.stage("traces", traces)
        span_list = _list(f"s.{c}" for c in NARROW_COLUMNS)
        self.spans = self.runner.stage("spans", f"SELECT {span_list}, k.ts, k.state FROM {narrow} s JOIN {self.traces} k "
                                                f"ON s.trace_id = k.trace_id WHERE s.span_id IS NOT NULL")
        self.unparseable = self.runner.stage("unparseable", f"SELECT s.trace_id, k.ts, k.state FROM {narrow} s JOIN {self.traces} k "
                                                            f"ON s.trace_id = k.trace_id WHERE s.span_id IS NULL")
        for name in (self.spans, self.unparseable):  # materialised; then the first narrow copy is released
            self.runner.materialise(name)
        self.runner.release(narrow)

    def _annotations(self) -> str | None:
        """The live annotation rows: the latest per annotation_id, soft-deleted ones dropped."""
        if not self.annotations_table:
            return None
        return (f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY annotation_id ORDER BY updated_at DESC NULLS LAST) AS _rn "
                f"FROM {self.annotations_table}) WHERE _rn = 1 AND deleted_at IS NULL")

    def _metadata(self) -> str | None:
        live = self._annotations()
        if live is None:
            return None
        self.live_annotations = self.runner.stage("annotations", live, persist=False)
        return ("SELECT trace_id, first(session_id) AS session_id, first(token_usage) AS token_usage, "
                "first(synthetic_timing) AS synthetic_timing FROM (SELECT "
                f"concat('trace:/{self._loc}/', target_id) AS trace_id, "
                f"variant_get(value, '$.trace_metadata[\"{SESSION_METADATA_KEY}\"]', 'string') AS session_id, "
                f"variant_get(value, '$.trace_metadata[\"{TOKEN_USAGE_METADATA_KEY}\"]', 'string') AS token_usage, "
                "variant_get(value, '$.trace_metadata[\"eval_agent.import.timing\"]', 'string') AS synthetic_timing "
                f"FROM {self.live_annotations} WHERE annotation_type = 'METADATA') GROUP BY trace_id")  # dropDuplicates: the first row per trace

    # --- helpers that return small results -------------------------------------------------------
    def _percentiles(self, relation: str, keys: list[str], value: str) -> dict[tuple, dict[int | str, int]]:
        """Exact nearest-rank p50/p90/p99 and max of `value` (an expression over `relation`) per group:
        {key: {50: v, 90: v, 99: v, "max": v}}."""
        ks = "".join(f"{k}, " for k in keys)
        part = f"PARTITION BY {_list(keys)} " if keys else ""
        ranks = {q: f"greatest(1, (n * {q} + 99) div 100)" for q in QUANTILES}  # rank_index + 1, in integers
        ranked = (f"SELECT {ks}v, row_number() OVER ({part}ORDER BY v) AS rn, count(1) OVER ({part.strip()}) AS n "
                  f"FROM (SELECT {ks}{value} AS v FROM {relation}) WHERE v IS NOT NULL")
        picked = " OR ".join([f"rn = {r}" for r in ranks.values()] + ["rn = n"])
        aggs = [f"max(CASE WHEN rn = {r} THEN v END) AS p{q}" for q, r in ranks.items()] + ["max(v) AS vmax"]
        group = f" GROUP BY {_list(keys)}" if keys else ""
        out = {}
        for row in self._rows(f"SELECT {ks}{_list(aggs)} FROM ({ranked}) WHERE {picked}{group}"):
            if row["vmax"] is None:  # no values at all (a global aggregate still answers one row)
                continue
            key = tuple(row[k] for k in keys)
            out[key] = {**{q: int(row[f"p{q}"]) for q in QUANTILES}, "max": int(row["vmax"])}
        return out

    @staticmethod
    def _latency(found: dict[int | str, int] | None, scale: float = 1.0) -> LatencyStats:
        if not found:
            return LatencyStats()
        conv = (lambda v: round(v / scale, 3)) if scale != 1.0 else float
        return LatencyStats(**{f"p{q}": conv(found[q]) for q in QUANTILES}, max=conv(found["max"]))

    def _examples(self, relation: str, keys: list[str], k: int) -> dict[tuple, list[str]]:
        """The k most recent distinct traces per group (timestamp desc, then id desc: accumulators.Examples)."""
        ks = "".join(f"{c}, " for c in keys)
        part = f"PARTITION BY {_list(keys)} " if keys else ""
        distinct = f"SELECT DISTINCT {ks}trace_id, coalesce(ts, 0) AS ets FROM {relation}"
        top = f"SELECT {ks}trace_id, row_number() OVER ({part}ORDER BY ets DESC, trace_id DESC) AS _rn FROM ({distinct})"
        out: dict[tuple, list[str]] = {}
        for row in self._rows(f"SELECT * FROM ({top}) WHERE _rn <= {int(k)} ORDER BY _rn"):
            out.setdefault(tuple(row[c] for c in keys), []).append(row["trace_id"])
        return out

    @staticmethod
    def _distribution(pairs: list[tuple[int, int]]) -> CountStats:
        """percentiles.CountDistribution from (value, how many) pairs counted by the engine."""
        dist = CountDistribution()
        for value, count in pairs:
            dist._counts[int(value)] += int(count)
            dist._n += int(count)
            dist._total += int(value) * int(count)
        return CountStats(**dist.summary())

    def _ancestors(self, start: str, cols: list[str], name: str) -> str:
        """A relation of (trace_id, *cols, ancestor_id) for every ancestor of each row of `start`
        (whose parent is `parent_id`): one self-join on the spans per level, each level staged."""
        cs = "".join(f"{c}, " for c in cols)
        fcs = "".join(f"f.{c}, " for c in cols)
        frontier = f"SELECT trace_id, {cs}parent_id AS ancestor_id FROM {start} WHERE parent_id IS NOT NULL"
        found: list[str] = []
        for level in range(MAX_DEPTH):
            level_name = self.runner.stage(f"{name}{level}", frontier)
            if self._count(level_name) == 0:  # one job per level: it also materialises the level
                break
            found.append(level_name)
            frontier = (f"SELECT f.trace_id, {fcs}p.parent_id AS ancestor_id FROM {level_name} f JOIN {self.spans} p "
                        f"ON f.trace_id = p.trace_id AND f.ancestor_id = p.span_id WHERE p.parent_id IS NOT NULL")
        if not found:
            return f"(SELECT trace_id, {cs}parent_id AS ancestor_id FROM {start} LIMIT 0)"
        return self.runner.stage(name, " UNION ALL ".join(f"SELECT trace_id, {cs}ancestor_id FROM {f}" for f in found))

    # --- the profile -------------------------------------------------------------------------------
    def build(self, experiment_id: str, experiment_name: str | None = None, trajectory_scan: int = 0) -> TraceProfile:
        started = time.perf_counter()
        try:
            return self._build(experiment_id, experiment_name, trajectory_scan, started)
        finally:
            self.runner.close()

    def _build(self, experiment_id: str, experiment_name: str | None, trajectory_scan: int, started: float) -> TraceProfile:
        self._frames()
        spans, traces = self.spans, self.traces
        summary = self._one(f"SELECT count(1) AS n, sum(span_count) AS spans, min(ts) AS first, max(ts) AS last FROM {traces}")
        trace_count = int(summary["n"] or 0)
        status = {r["state"]: int(r["n"]) for r in self._rows(f"SELECT state, count(1) AS n FROM {traces} GROUP BY state")}
        latency = self._percentiles(traces, [], "execution_ms").get((), None)
        slowest = self._rows(f"SELECT trace_id, execution_ms, state FROM {traces} WHERE execution_ms IS NOT NULL "
                             f"ORDER BY execution_ms DESC, trace_id DESC, state DESC LIMIT {SLOWEST}")

        span_rows = self._rows(f"SELECT name, span_type, count(1) AS n, {ERRORS} AS errors FROM {spans} GROUP BY name, span_type")
        span_pcts = self._percentiles(spans, ["name", "span_type"], DURATION)
        tools = f"(SELECT * FROM {spans} WHERE span_type = 'TOOL')"
        tool_rows = self._rows(f"SELECT name, count(1) AS calls, {ERRORS} AS errors, count(DISTINCT trace_id) AS traces FROM {tools} GROUP BY name")
        tool_pcts = self._percentiles(tools, ["name"], DURATION)

        roots = self._roots()
        errors = self._errors()
        llm = self._llm(trace_count)
        retrieval = self._retrieval()
        outputs, shapes = self._root_payloads(roots)
        odd = self._odd()
        profile = TraceProfile(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source=ProfileSource(tracking_uri=None, path=self.runner.engine, since_ms=self.since_ms, max_traces=self.max_traces,
                                 truncated=self.truncated),
            trace_count=trace_count,
            span_count=int(summary["spans"] or 0),
            time_range=TimeRange(first_ms=_int(summary["first"]), last_ms=_int(summary["last"]), first=_iso(summary["first"]), last=_iso(summary["last"])),
            status_counts=dict(sorted(status.items(), key=lambda kv: (-kv[1], kv[0]))),
            latency_ms=self._latency(latency),
            latency_histogram=self._histogram(traces),
            timeline=self._timeline(traces, summary["first"], summary["last"]),
            spans_per_trace=self._distribution([(r["span_count"], r["n"]) for r in self._rows(
                f"SELECT span_count, count(1) AS n FROM {traces} GROUP BY span_count")]),
            trace_names=_named(Counter({r["name"]: int(r["n"]) for r in self._rows(f"SELECT name, count(1) AS n FROM {roots} GROUP BY name")})),
            spans=sorted(
                (SpanStats(name=r["name"], span_type=r["span_type"], count=int(r["n"]), error_count=int(r["errors"]),
                           latency_ms=self._latency(span_pcts.get((r["name"], r["span_type"])), 1e6)) for r in span_rows),
                key=lambda s: (-s.count, s.name, s.span_type),
            ),
            traces_with_error_spans=errors["traces_with_error_spans"],
            error_signatures=errors["signatures"],
            hidden_failures=errors["hidden"],
            tools=sorted(
                (ToolStats(name=r["name"], calls=int(r["calls"]), errors=int(r["errors"]), trace_count=int(r["traces"]),
                           latency_ms=self._latency(tool_pcts.get((r["name"],)), 1e6)) for r in tool_rows),
                key=lambda t: (-t.calls, t.name),
            ),
            tokens=self._tokens(traces),
            llm=llm,
            retrieval=retrieval,
            outputs=outputs,
            shapes=shapes,
            sessions=self._sessions(traces),
            assessments=self._assessments(),
            slowest_traces=[SlowTrace(trace_id=r["trace_id"], latency_ms=float(r["execution_ms"]), state=r["state"]) for r in slowest],
            sample_trace_ids=self._sample(errors["error_traces"]),
            odd_data=odd,
        )
        limit = min(trajectory_scan, self.max_traces or trajectory_scan, trace_count)
        if limit > 0:
            profile.trajectory = self._trajectory(limit)
        profile.source.seconds = round(time.perf_counter() - started, 3)
        return profile

    def _roots(self) -> str:
        """One root per trace: the real root (earliest start, then name, then end), else an orphan
        whose parent never arrived (the builder's `_root`)."""
        columns = _list(SPAN_COLUMNS)
        candidates = f"SELECT {columns} FROM {self.spans} WHERE parent_id IS NULL"
        if self._any(self.traces, "roots = 0"):
            # Traces without a real root take an orphan (a span whose parent never arrived): its payload
            # facts come from a second pass over the spans of those traces only.
            loc_prefix = len(f"trace:/{self.location.name}/") + 1
            hex_ids = f"SELECT substring(trace_id, {loc_prefix}) AS _hex FROM {self.traces} WHERE roots = 0"
            raw = f"(SELECT /*+ BROADCAST(h) */ r.* FROM {self.spans_table} r LEFT SEMI JOIN ({hex_ids}) h ON r.trace_id = h._hex)"
            theirs = f"(SELECT * FROM ({self._narrow(self._raw(raw), all_roots=True)}) WHERE span_id IS NOT NULL)"
            ids = f"(SELECT DISTINCT trace_id, span_id AS parent_id FROM {theirs})"
            orphans = (f"SELECT {_list(f'o.{c}' for c in NARROW_COLUMNS)}, k.ts, k.state FROM {theirs} o "
                       f"LEFT ANTI JOIN {ids} i ON o.trace_id = i.trace_id AND o.parent_id = i.parent_id "
                       f"JOIN {self.traces} k ON o.trace_id = k.trace_id WHERE o.parent_id IS NOT NULL")
            candidates = f"{candidates} UNION ALL SELECT {columns} FROM ({orphans})"
        order = "PARTITION BY trace_id ORDER BY coalesce(start_ns, 0), name, coalesce(end_ns, 0)"
        return self.runner.stage("roots", f"SELECT {columns} FROM (SELECT *, row_number() OVER ({order}) AS _rn FROM ({candidates})) WHERE _rn = 1")

    def _errors(self) -> dict[str, Any]:
        keyed = self.runner.stage("keyed", f"SELECT trace_id, span_id, parent_id, name, ts, state, exc_type, message, normalized "
                                           f"FROM {self.spans} WHERE status = 'ERROR'")
        # An error re-raised by a parent is counted once, where it began: drop each failed span that
        # has a failed descendant with the same (type, normalised message).
        ups = self._ancestors(keyed, ["exc_type", "normalized"], "error_ancestors")
        propagated = f"(SELECT DISTINCT trace_id AS _tid, ancestor_id AS _sid, exc_type AS _et, normalized AS _nm FROM {ups})"
        origins = self.runner.stage("origins", f"SELECT k.* FROM {keyed} k LEFT ANTI JOIN {propagated} p ON k.trace_id = p._tid "
                                               f"AND k.span_id = p._sid AND k.exc_type <=> p._et AND k.normalized = p._nm")
        sig_keys = ["exc_type", "name", "normalized"]
        sig_rows = self._rows(
            f"SELECT exc_type, name, normalized, n, traces, latest.m AS example_message FROM (SELECT exc_type, name, normalized, count(1) AS n, "
            f"count(DISTINCT trace_id) AS traces, max(named_struct('t', coalesce(ts, 0), 'id', trace_id, 'm', substring(message, 1, {MESSAGE_CHARS}))) "
            f"AS latest FROM {origins} GROUP BY exc_type, name, normalized)")
        examples = self._examples(origins, sig_keys, EXAMPLES)
        signatures = sorted(
            (ErrorSignature(
                id=signature_id(r["exc_type"], r["name"], r["normalized"]),
                signature=f"{r['exc_type']}: {r['normalized']}" if r["exc_type"] else r["normalized"],
                exception_type=r["exc_type"], span_name=r["name"], count=int(r["n"]), trace_count=int(r["traces"]),
                trace_ids=examples.get((r["exc_type"], r["name"], r["normalized"]), []), example_message=r["example_message"],
            ) for r in sig_rows),
            key=lambda s: (-s.count, s.signature, s.span_name),
        )
        error_traces = self.runner.stage("error_traces", f"SELECT DISTINCT trace_id, ts, state FROM {keyed}")
        totals = self._one(f"SELECT count(1) AS n, sum(CASE WHEN state = 'OK' THEN 1 ELSE 0 END) AS ok FROM {error_traces}")
        by_span = [SpanCount(span_name=r["name"], count=int(r["n"])) for r in self._rows(
            f"SELECT name, count(1) AS n FROM (SELECT DISTINCT trace_id, name FROM {origins} WHERE state = 'OK') GROUP BY name")]
        return {
            "traces_with_error_spans": int(totals["n"] or 0),
            "signatures": signatures,
            "hidden": HiddenFailures(count=int(totals["ok"] or 0),
                                     trace_ids=self._examples(f"(SELECT * FROM {error_traces} WHERE state = 'OK')", [], MANY_EXAMPLES).get((), []),
                                     by_span=sorted(by_span, key=lambda b: (-b.count, b.span_name))),
            "error_traces": error_traces,
        }

    def _llm(self, trace_count: int) -> LlmUsage:
        calls_all = f"(SELECT * FROM {self.spans} WHERE span_type IN ({LLM_IN}))"
        ups = self._ancestors(f"(SELECT trace_id, span_id, parent_id FROM {calls_all})", [], "llm_ancestors")
        wrappers = (f"(SELECT DISTINCT u.trace_id, u.ancestor_id AS span_id FROM {ups} u JOIN {calls_all} c "
                    f"ON u.trace_id = c.trace_id AND u.ancestor_id = c.span_id)")
        calls = self.runner.stage("calls", f"SELECT a.* FROM {calls_all} a LEFT ANTI JOIN {wrappers} w ON a.trace_id = w.trace_id AND a.span_id = w.span_id")
        hist = Counter({int(r["calls_n"]): int(r["n"]) for r in self._rows(
            f"SELECT calls_n, count(1) AS n FROM (SELECT trace_id, count(1) AS calls_n FROM {calls} GROUP BY trace_id) GROUP BY calls_n")})
        with_calls = sum(hist.values())
        hist[0] += trace_count - with_calls
        models = Counter({r["model"]: int(r["n"]) for r in self._rows(
            f"SELECT model, count(1) AS n FROM {calls} WHERE model IS NOT NULL GROUP BY model")})
        total = sum(v * c for v, c in hist.items())
        return LlmUsage(
            calls=total, traces_with_calls=with_calls,
            calls_per_trace=self._distribution([(v, c) for v, c in hist.items() if c]),
            models=_named(models), calls_without_model=total - sum(models.values()),
        )

    def _retrieval(self) -> Retrieval:
        marked = f"(SELECT trace_id, ts, name, out_empty AS is_empty FROM {self.spans} WHERE span_type = 'RETRIEVER')"
        by_name = self._rows(f"SELECT name, count(1) AS n, sum(CASE WHEN is_empty THEN 1 ELSE 0 END) AS n_empty FROM {marked} GROUP BY name")
        per_trace = f"(SELECT trace_id, ts, max(CASE WHEN is_empty THEN 1 ELSE 0 END) AS any_empty FROM {marked} GROUP BY trace_id, ts)"
        counts = self._one(f"SELECT count(1) AS traces, sum(any_empty) AS n_empty FROM {per_trace}")
        n_spans = sum(int(r["n"]) for r in by_name)
        n_empty = sum(int(r["n_empty"]) for r in by_name)
        return Retrieval(
            spans=n_spans, empty=n_empty, empty_share=round(n_empty / n_spans, 4) if n_spans else None,
            traces_with_retrieval=int(counts["traces"] or 0), traces_with_empty_retrieval=int(counts["n_empty"] or 0),
            empty_trace_ids=self._examples(f"(SELECT * FROM {per_trace} WHERE any_empty = 1)", [], MANY_EXAMPLES).get((), []),
            by_name=sorted((RetrieverStats(name=r["name"], spans=int(r["n"]), empty=int(r["n_empty"])) for r in by_name), key=lambda r: (-r.spans, r.name)),
        )

    def _root_payloads(self, roots: str) -> tuple[Outputs, Shapes]:
        facts = ["in_has_value", "in_kind", "in_keys", "out_has_value", "out_empty", "out_kind", "out_keys"]
        base = f"SELECT t.trace_id, t.ts, t.state, {_list(f'r.{f}' for f in facts)} FROM {self.traces} t LEFT JOIN {roots} r ON t.trace_id = r.trace_id"
        cases = self.runner.stage("cases", (
            "SELECT trace_id, ts, state, NOT coalesce(in_has_value, false) AS inputs_missing, NOT coalesce(out_has_value, false) AS missing, "
            f"coalesce(out_has_value AND out_empty, false) AS is_empty, in_kind, in_keys, out_kind, out_keys FROM ({base})"))
        sums = [f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END) AS {name}" for name, cond in (
            ("missing", "missing"), ("n_empty", "is_empty"), ("missing_ok", "missing AND state = 'OK'"), ("empty_ok", "is_empty AND state = 'OK'"),
            ("inputs_missing", "inputs_missing"))]
        c = self._one(f"SELECT {_list(sums)} FROM {cases}")
        ex_missing = self._examples(f"(SELECT * FROM {cases} WHERE missing AND state = 'OK')", [], MANY_EXAMPLES).get((), [])
        ex_empty = self._examples(f"(SELECT * FROM {cases} WHERE is_empty AND state = 'OK')", [], MANY_EXAMPLES).get((), [])
        outputs = Outputs(missing=int(c["missing"] or 0), empty=int(c["n_empty"] or 0), missing_ok=int(c["missing_ok"] or 0),
                          empty_ok=int(c["empty_ok"] or 0), missing_ok_trace_ids=ex_missing, empty_ok_trace_ids=ex_empty,
                          inputs_missing=int(c["inputs_missing"] or 0))

        def shapes(side: str, present: str) -> list[Shape]:
            rows = self._rows(f"SELECT kind, keys, n, ex.id AS example FROM (SELECT {side}_kind AS kind, {side}_keys AS keys, count(1) AS n, "
                              f"max(named_struct('t', coalesce(ts, 0), 'id', trace_id)) AS ex FROM {cases} WHERE {present} "
                              f"GROUP BY {side}_kind, {side}_keys)")
            out = [Shape(kind=r["kind"], keys=list(r["keys"] or []), count=int(r["n"]), example_trace_id=r["example"]) for r in rows]
            return sorted(out, key=lambda s: (-s.count, s.kind, s.keys))

        return outputs, Shapes(inputs=shapes("in", "NOT inputs_missing"), outputs=shapes("out", "NOT missing"))

    def _odd(self) -> dict[str, OddCount]:
        spans, traces = self.spans, self.traces
        sources = {
            "traces_without_root": f"SELECT trace_id, ts FROM {traces} WHERE roots = 0",
            "traces_with_multiple_roots": f"SELECT trace_id, ts FROM {traces} WHERE roots > 1",
            "traces_without_duration": f"SELECT trace_id, ts FROM {traces} WHERE execution_ms IS NULL",
            "spans_missing_end_time": f"SELECT trace_id, ts FROM {spans} WHERE end_ns IS NULL",
            "spans_negative_duration": f"SELECT trace_id, ts FROM {spans} WHERE end_ns IS NOT NULL AND start_ns IS NOT NULL AND end_ns < start_ns",
            "spans_unset_status": f"SELECT trace_id, ts FROM {spans} WHERE status = 'UNSET'",
            "unparseable_spans": f"SELECT trace_id, ts FROM {self.unparseable}",
            "non_json_payloads": f"SELECT trace_id, ts FROM {spans} WHERE in_nonjson UNION ALL SELECT trace_id, ts FROM {spans} WHERE out_nonjson",
            "huge_payloads": f"SELECT trace_id, ts FROM {spans} WHERE in_huge UNION ALL SELECT trace_id, ts FROM {spans} WHERE out_huge",
        }
        union = self.runner.stage("odd", " UNION ALL ".join(f"SELECT '{key}' AS odd, trace_id, ts FROM ({sql})" for key, sql in sources.items()))
        counts = {r["odd"]: int(r["n"]) for r in self._rows(f"SELECT odd, count(1) AS n FROM {union} GROUP BY odd")}
        examples = self._examples(union, ["odd"], EXAMPLES)
        return {key: OddCount(count=counts.get(key, 0), trace_ids=examples.get((key,), [])) for key in ODD_KEYS}

    def _tokens(self, traces: str) -> TokenTotals:
        usage = ("SELECT " + _list(f"CAST(get_json_object(token_usage, '$.{k}') AS BIGINT) AS {k}" for k in ("input_tokens", "output_tokens", "total_tokens"))
                 + f" FROM {traces} WHERE token_usage IS NOT NULL")
        r = self._one(f"SELECT sum(input_tokens) AS i, sum(output_tokens) AS o, sum(total_tokens) AS t, count(1) AS n FROM ({usage}) "
                      "WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR total_tokens IS NOT NULL")
        return TokenTotals(input=int(r["i"] or 0), output=int(r["o"] or 0), total=int(r["t"] or 0), traces_with_usage=int(r["n"] or 0))

    def _sessions(self, traces: str) -> Sessions:
        per = self.runner.stage("sessions", f"SELECT session_id, count(1) AS n FROM {traces} WHERE session_id IS NOT NULL AND session_id != '' GROUP BY session_id")
        dist = [(int(r["n"]), int(r["c"])) for r in self._rows(f"SELECT n, count(1) AS c FROM {per} GROUP BY n")]
        examples = [r["session_id"] for r in self._rows(f"SELECT session_id FROM {per} ORDER BY session_id LIMIT {EXAMPLES}")]
        return Sessions(traces_with_session=sum(v * c for v, c in dist), distinct_sessions=sum(c for _, c in dist),
                        traces_per_session=self._distribution(dist), example_session_ids=examples)

    def _assessments(self) -> list[AssessmentSummary]:
        from . import spark_sql as S

        if self.live_annotations is None:
            return []
        kinds = "CASE annotation_type " + " ".join(f"WHEN '{t}' THEN '{k}'" for t, k in ASSESSMENT_TYPES.items()) + " END"
        picked = (f"SELECT a.* FROM (SELECT concat('trace:/{self._loc}/', target_id) AS trace_id, name, {kinds} AS kind, "
                  "coalesce(source.source_type, 'UNKNOWN') AS source_type, CASE WHEN annotation_type = 'ISSUE' THEN NULL ELSE value END AS v "
                  f"FROM {self.live_annotations} WHERE annotation_type IN ({_in(ASSESSMENT_TYPES)}) AND (valid IS NULL OR valid)) a "
                  f"JOIN {self.traces} t ON a.trace_id = t.trace_id")
        rows = f"(SELECT trace_id, name, kind, source_type, {S.value_number('v')} AS number, {_list(S.value_keys('v'))} FROM ({picked}))"
        labels = S.with_value_label(f"SELECT DISTINCT {_list(S.VALUE_KEYS)} FROM {rows}", ["_vk"])
        rows = self.runner.stage("assessments", f"SELECT r.trace_id, r.name, r.kind, r.source_type, named_struct('label', l.label, 'number', r.number) AS f "
                                                f"FROM {rows} r JOIN ({labels}) l ON r._vk = l._vk")
        base = {(r["name"], r["kind"]): r for r in self._rows(
            f"SELECT name, kind, count(1) AS n, count(DISTINCT trace_id) AS traces, count(f.number) AS nn, min(f.number) AS lo, "
            f"max(f.number) AS hi, sum(f.number) AS total FROM {rows} GROUP BY name, kind")}
        sources: dict[tuple, dict[str, int]] = {}
        for r in self._rows(f"SELECT name, kind, source_type, count(1) AS n FROM {rows} GROUP BY name, kind, source_type"):
            sources.setdefault((r["name"], r["kind"]), {})[r["source_type"]] = int(r["n"])
        counted_labels: dict[tuple, Counter[str]] = {}
        for r in self._rows(f"SELECT name, kind, f.label AS label, count(1) AS n FROM {rows} GROUP BY name, kind, f.label"):
            counted_labels.setdefault((r["name"], r["kind"]), Counter())[r["label"]] = int(r["n"])
        out = []
        for key, r in base.items():
            counted = counted_labels.get(key, Counter())
            if len(counted) > MAX_VALUES:  # the builder folds by arrival order; here the most frequent are kept
                kept = dict(counted.most_common(MAX_VALUES))
                kept[OTHER] = kept.get(OTHER, 0) + sum(counted.values()) - sum(kept.values())
                counted = Counter(kept)
            n = int(r["nn"] or 0)
            numeric = NumericStats(count=n, min=r["lo"], max=r["hi"], mean=round(r["total"] / n, 6)) if n else None
            out.append(AssessmentSummary(name=key[0], kind=key[1], count=int(r["n"]), trace_count=int(r["traces"]), sources=sources.get(key, {}),
                                         values=dict(counted.most_common()), numeric=numeric, errors=0))
        return sorted(out, key=lambda a: (-a.count, a.name, a.kind))

    def _sample(self, error_traces: str) -> list[str]:
        clean = f"SELECT c.trace_id FROM (SELECT trace_id FROM {self.traces} WHERE state = 'OK') c LEFT ANTI JOIN {error_traces} e ON c.trace_id = e.trace_id"
        picked = self._rows(f"SELECT trace_id, crc32(encode(trace_id, 'utf-8')) AS h FROM ({clean}) ORDER BY h, trace_id LIMIT {SAMPLE_SIZE}")
        return [r["trace_id"] for r in sorted(picked, key=lambda r: (r["h"], r["trace_id"]))]

    def _histogram(self, traces: str) -> list[HistogramBin]:
        """percentiles.histogram: the same edges (numpy, from the exact min and max), bins counted by the engine."""
        timed = f"(SELECT CAST(execution_ms AS DOUBLE) AS v FROM {traces} WHERE execution_ms IS NOT NULL)"
        r = self._one(f"SELECT count(1) AS n, min(v) AS lo, max(v) AS hi FROM {timed}")
        n = int(r["n"] or 0)
        if n == 0:
            return []
        low, high = float(r["lo"]), float(r["hi"])
        if high <= low:
            return [HistogramBin(lower_ms=low, upper_ms=high, count=n)]
        edges = np.geomspace(low, high, HISTOGRAM_BINS + 1) if (low > 0 and high / low > 20) else np.linspace(low, high, HISTOGRAM_BINS + 1)
        inner = "array(" + _list(f"CAST('{float(e)!r}' AS DOUBLE)" for e in edges[1:-1]) + ")"
        binned = self._rows(f"SELECT b, count(1) AS n FROM (SELECT size(filter({inner}, e -> e <= v)) AS b FROM {timed}) GROUP BY b")
        counts = [0] * HISTOGRAM_BINS
        for row in binned:
            counts[min(int(row["b"]), HISTOGRAM_BINS - 1)] += int(row["n"])
        return [HistogramBin(lower_ms=round(float(edges[i]), 3), upper_ms=round(float(edges[i + 1]), 3), count=c) for i, c in enumerate(counts)]

    def _timeline(self, traces: str, first: Any, last: Any) -> list[TimeBucket]:
        if first is None or last is None:
            return []
        first, last = int(first), int(last)
        span = max(1, last - first + 1)
        width = -(-span // TIMELINE_BUCKETS)
        rows = self._rows(f"SELECT b, state, count(1) AS n FROM (SELECT (ts - {first}) div {width} AS b, state FROM {traces} WHERE ts IS NOT NULL) "
                          "GROUP BY b, state")
        counts: list[Counter[str]] = [Counter() for _ in range(-(-span // width))]
        for r in rows:
            counts[int(r["b"])][r["state"]] += int(r["n"])
        return [TimeBucket(start_ms=first + i * width, end_ms=first + (i + 1) * width, states=dict(sorted(c.items()))) for i, c in enumerate(counts)]

    def _trajectory(self, limit: int) -> Any:
        """trajectory.py's facts over the `limit` most recent traces, read whole (a bounded fetch, in
        batches of `trajectory_batch` traces when the runner asks for it: a warehouse's inline results are capped)."""
        from . import trajectory

        recent = self._rows(f"SELECT trace_id, ts, synthetic_timing FROM {self.traces} ORDER BY ts DESC, trace_id ASC LIMIT {int(limit)}")
        ids = [r["trace_id"] for r in recent]
        batch = getattr(self.runner, "trajectory_batch", None) or len(ids) or 1
        by_trace: dict[str, list[SpanRow]] = {}
        for at in range(0, len(ids), batch):
            raw = (f"SELECT concat('trace:/{self._loc}/', trace_id) AS trace_id, span_id, nullif(parent_span_id, '') AS parent_id, "
                   f"coalesce(name, '(unnamed)') AS name, coalesce(nullif({plain_string_sql(_attr(SPAN_TYPE_KEY))}, ''), 'UNKNOWN') AS span_type, "
                   f"{_status_sql('status.code')} AS status, start_time_unix_nano AS start_ns, nullif(end_time_unix_nano, 0) AS end_ns, "
                   f"to_json(attributes) AS attrs FROM {self.spans_table}")
            for r in self._rows(f"SELECT * FROM ({raw}) WHERE trace_id IN ({_in(ids[at:at + batch])}) AND nullif(span_id, '') IS NOT NULL"):
                attrs = json.loads(r["attrs"]) if r["attrs"] else {}
                attrs = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in attrs.items()}
                by_trace.setdefault(r["trace_id"], []).append(
                    SpanRow(r["span_id"], r["parent_id"], r["name"], r["span_type"], r["status"], r["start_ns"], r["end_ns"], raw={"attributes": attrs}))
        counts = trajectory.TrajectoryCounts()
        for r in recent:
            meta = {trajectory.SYNTHETIC_TIMING_KEY: r["synthetic_timing"]} if r["synthetic_timing"] else {}
            view = trajectory.record_view(SimpleNamespace(trace_id=r["trace_id"], metadata=meta, rows=by_trace.get(r["trace_id"], [])))
            counts.add(r["trace_id"], trajectory.trajectory_facts(view))
        return trajectory.as_model(counts)


def spark_profile(spark: Any, location: UcLocation | str, experiment_id: str | None = None, *, experiment_name: str | None = None,
                  filter_string: str | None = None, since_ms: int | None = None, max_traces: int | None = None,
                  trajectory_scan: int = 0, tables: dict[str, str | None] | None = None) -> TraceProfile:
    """The profile of the traces at a UC location, computed by Spark."""
    from .sql_runner import SparkRunner

    _check(filter_string, max_traces)
    return sql_profile(SparkRunner(spark), location, experiment_id, experiment_name=experiment_name, since_ms=since_ms,
                       max_traces=max_traces, trajectory_scan=trajectory_scan, tables=tables)


def sql_profile(runner: Any, location: UcLocation | str, experiment_id: str | None = None, *, experiment_name: str | None = None,
                filter_string: str | None = None, since_ms: int | None = None, max_traces: int | None = None,
                trajectory_scan: int = 0, tables: dict[str, str | None] | None = None) -> TraceProfile:
    """The profile of the traces at a UC location by any SqlRunner (sql_runner.py: Spark; warehouse.py:
    a SQL warehouse). Raises InvalidQuery for what this engine cannot do (a filter string); the runner
    is closed when the profile is built."""
    try:
        _check(filter_string, max_traces)
        location = UcLocation.parse(location) if isinstance(location, str) else location
        engine = SparkProfile(runner, location, since_ms=since_ms, max_traces=max_traces, tables=tables)
    except Exception:
        runner.close()
        raise
    return engine.build(experiment_id or location.name, experiment_name, trajectory_scan)


def _check(filter_string: str | None, max_traces: int | None) -> None:
    from .source import InvalidQuery

    if filter_string:
        raise InvalidQuery("The spark and warehouse engines do not take --filter (MLflow search syntax): use --since / --max-traces, or --engine sql|api.")
    if max_traces is not None and max_traces < 1:
        raise InvalidQuery("--max-traces must be at least 1.")


def _named(counter: Counter[str]) -> list[NamedCount]:
    return [NamedCount(name=n, count=c) for n, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _iso(ms: Any) -> str | None:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat(timespec="seconds") if ms is not None else None


_ = rank_index  # the nearest-rank definition the SQL above writes out in integers

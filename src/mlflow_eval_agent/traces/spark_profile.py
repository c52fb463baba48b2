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

ENGINE = "spark"
MAX_DEPTH = 64  # ancestor walks stop here (a span tree deeper than this is not an agent's)
TIMELINE_BUCKETS = 30
HISTOGRAM_BINS = 24
DUPLICATE_KEYS_CONF = "spark.sql.variant.allowDuplicateKeys"


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


def _attr(key: str) -> str:
    """An attribute of `attributes` (VARIANT) as text: the stored JSON-encoded string, or the JSON of a
    value stored parsed (uc_schema.py: which of the two Databricks writes is not documented)."""
    return f"variant_get(attributes, '$[\"{key}\"]', 'string')"


def plain_string_sql(expr: str) -> str:
    """A JSON-encoded string value ('"TOOL"') decoded; other text unchanged (spans._plain_string)."""
    return f"coalesce(get_json_object(concat('[', {expr}, ']'), '$[0]'), {expr})"


def _status_sql(code: str) -> str:
    """spans.status_code in SQL: STATUS_CODE_ERROR/ERROR -> ERROR, .._OK -> OK, anything else UNSET."""
    norm = f"upper(regexp_replace(coalesce({code}, ''), '^(?i)STATUS_CODE_', ''))"
    return f"CASE WHEN {norm} IN ('OK', 'ERROR') THEN {norm} ELSE 'UNSET' END"


def _ex_attr(key: str) -> str:
    return f"variant_get(e.attributes, '$[\"{key}\"]', 'string')"


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


# --- the engine --------------------------------------------------------------------------------


class SparkProfile:
    """One profile of one UC location. `tables` names the spans and annotations tables when they are
    not at the location's own names (tests: temp views over parquet)."""

    def __init__(self, spark: Any, location: UcLocation, *, since_ms: int | None = None, max_traces: int | None = None,
                 tables: dict[str, str | None] | None = None):
        self.spark = spark
        self.location = location
        self.since_ms = since_ms
        self.max_traces = max_traces
        tables = tables or {}
        self.spans_table = tables.get("spans") or location.spans_table
        self.annotations_table = tables["annotations"] if "annotations" in tables else location.annotations_table
        self.truncated = False
        self._kept: list[Any] = []

    def _keep(self, df: Any) -> Any:
        """Persist a (narrow) intermediate on the executors (memory, spilling to disk) for the aggregates
        that read it; all are released when the profile is built."""
        from pyspark import StorageLevel

        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._kept.append(df)
        return df

    # --- the spans and traces, as DataFrames (lazy) ----------------------------------------------
    def _raw(self, raw: Any) -> Any:
        """The columns read from the spans table (payload text stays JVM-side and is dropped by _narrow)."""
        loc = self.location.name.replace("'", "")
        exc_type, exc_msg = _ex_attr("exception.type"), _ex_attr("exception.message")
        return raw.selectExpr(
            f"concat('trace:/{loc}/', trace_id) AS trace_id",
            "nullif(span_id, '') AS span_id",
            "nullif(parent_span_id, '') AS parent_id",
            "coalesce(name, '(unnamed)') AS name",
            f"coalesce(nullif({plain_string_sql(_attr(SPAN_TYPE_KEY))}, ''), 'UNKNOWN') AS span_type",
            f"{_status_sql('status.code')} AS status",
            "coalesce(status.message, '') AS status_message",
            "start_time_unix_nano AS start_ns",
            "nullif(end_time_unix_nano, 0) AS end_ns",
            f"{_attr(INPUTS_KEY)} AS inputs_raw",
            f"{_attr(OUTPUTS_KEY)} AS outputs_raw",
            # signatures.error_from_span: the last exception event with a non-empty (unquoted) type or message
            f"try_element_at(filter(events, e -> e.name = 'exception' AND ({_plain_sql(exc_type)} != '' OR {_plain_sql(exc_msg)} != '')), -1) AS exc",
            "attributes",
        )

    def _narrow(self, cols: Any, all_roots: bool = False) -> Any:
        """One row per span with only what the aggregates read: ids, name, type, status, times, model
        (model calls), the error (failed spans: type, message, normalised message), payload sizes and
        JSON-looking flags, and the payload facts of roots (every span when `all_roots`: the orphan
        pass) and retriever outputs. Every fact is a Spark SQL expression (spark_sql.py)."""
        from pyspark.sql import functions as F

        from . import spark_sql as S

        root = F.lit(True) if all_roots else F.col("parent_id").isNull()
        failed = F.col("status") == "ERROR"
        retriever = F.col("span_type") == "RETRIEVER"
        inspected = F.col("parent_id").isNull() | retriever | failed
        huge_in = F.coalesce(F.length("inputs_raw") > HUGE_PAYLOAD_CHARS, F.lit(False))
        huge_out = F.coalesce(F.length("outputs_raw") > HUGE_PAYLOAD_CHARS, F.lit(False))
        has_event = F.col("exc").isNotNull()
        exc_type_raw = F.when(has_event, F.expr("variant_get(exc.attributes, '$[\"exception.type\"]', 'string')"))
        exc_msg_raw = F.when(has_event, F.expr("variant_get(exc.attributes, '$[\"exception.message\"]', 'string')"))
        staged = cols.select(
            "trace_id", "span_id", "parent_id", "name", "span_type", "status", "start_ns", "end_ns", "inputs_raw", "outputs_raw",
            F.when(F.col("span_type").isin(*sorted(LLM_TYPES)), F.expr(_model_sql())).alias("model"),
            F.when(failed, exc_type_raw).alias("exc_type_raw"), F.when(failed, exc_msg_raw).alias("exc_message_raw"),
            F.when(failed, F.col("status_message")).alias("status_message"), has_event.alias("has_event"),
            huge_in.alias("in_huge"), huge_out.alias("out_huge"), inspected.alias("inspected"), root.alias("is_root"), retriever.alias("is_retriever"),
        )
        # Each payload's edges, JSON test and parse once, in their own projections (columns read by
        # several facts below are not re-evaluated per fact).
        read = F.col("inspected") | F.col("is_root")
        edges = []
        for side in ("in", "out"):
            first, last = S.json_edges(F.col(f"{side}puts_raw"))
            edges += [F.when(read, first).alias(f"{side}_first"), F.when(read, last).alias(f"{side}_last")]
        staged = staged.select("*", *edges)
        staged = staged.select("*", *[F.when(read & F.col(f"{side}puts_raw").isNotNull() & ~F.col(f"{side}_huge"), S.looks_like_json_from(
            F.col(f"{side}puts_raw"), F.col(f"{side}_first"), F.col(f"{side}_last"))).alias(f"{side}_lj") for side in ("in", "out")])
        staged = staged.select(
            "*",
            F.expr("CASE WHEN is_root AND NOT in_huge THEN try_parse_json(inputs_raw) END").alias("pin"),
            F.expr("CASE WHEN (is_root OR is_retriever) AND NOT out_huge THEN try_parse_json(outputs_raw) END").alias("pout"),
        )
        exc_type, message = S.error_parts(F.col("exc_type_raw"), F.col("exc_message_raw"), F.col("status_message"), F.col("has_event"))
        fin = S.payload_facts(F.col("inputs_raw"), "pin", F.col("in_first"), F.coalesce(F.col("in_lj"), F.lit(False)), F.col("in_huge"))
        fout = S.payload_facts(F.col("outputs_raw"), "pout", F.col("out_first"), F.coalesce(F.col("out_lj"), F.lit(False)), F.col("out_huge"))
        is_root, wants_out = F.col("is_root"), F.col("is_root") | F.col("is_retriever")
        staged = staged.select(
            "trace_id", "span_id", "parent_id", "name", "span_type", "status", "start_ns", "end_ns", "model", "in_huge", "out_huge",
            F.when(F.col("status") == "ERROR", exc_type).alias("exc_type"), F.when(F.col("status") == "ERROR", message).alias("message"),
            (F.col("inspected") & F.col("inputs_raw").isNotNull() & ~F.col("in_huge") & ~F.col("in_lj")).alias("in_nonjson"),
            (F.col("inspected") & F.col("outputs_raw").isNotNull() & ~F.col("out_huge") & ~F.col("out_lj")).alias("out_nonjson"),
            F.when(is_root, fin["has_value"]).alias("in_has_value"), F.when(is_root, fin["kind"]).alias("in_kind"), F.when(is_root, fin["keys"]).alias("in_keys"),
            F.when(is_root, fout["has_value"]).alias("out_has_value"), F.when(is_root, fout["kind"]).alias("out_kind"),
            F.when(is_root, fout["keys"]).alias("out_keys"), F.when(wants_out, fout["empty"]).alias("out_empty"),
        )
        return staged.withColumn("normalized", F.when(F.col("status") == "ERROR", S.normalized(F.col("message"))))

    def _frames(self) -> None:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        spans = self._keep(self._narrow(self._raw(self.spark.table(self.spans_table))))
        unparseable = spans.where("span_id IS NULL").select("trace_id")
        spans = spans.where("span_id IS NOT NULL")
        traces = spans.groupBy("trace_id").agg(
            F.expr("min(start_ns) AS min_start"),
            F.expr("max(end_ns) AS max_end"),
            F.expr("count(*) AS span_count"),
            F.expr("sum(CASE WHEN parent_id IS NULL THEN 1 ELSE 0 END) AS roots"),
            F.expr("max(CASE WHEN parent_id IS NULL AND status = 'ERROR' THEN 1 ELSE 0 END) AS root_error"),
        ).selectExpr(
            "trace_id",
            "min_start div 1000000 AS ts",  # integer division: a double cannot hold nanoseconds since 1970
            "CASE WHEN max_end IS NULL THEN NULL ELSE max_end div 1000000 - min_start div 1000000 END AS execution_ms",
            "span_count", "roots",
            "CASE WHEN roots = 0 THEN 'IN_PROGRESS' WHEN root_error = 1 THEN 'ERROR' ELSE 'OK' END AS state",
        )
        if self.since_ms is not None:
            traces = traces.where(F.col("ts") >= int(self.since_ms))
        if self.max_traces is not None:
            ranked = traces.withColumn("recency", F.row_number().over(Window.orderBy(F.col("ts").desc(), F.col("trace_id").asc())))
            self.truncated = ranked.where(F.col("recency") > self.max_traces).limit(1).count() > 0
            traces = ranked.where(F.col("recency") <= self.max_traces).drop("recency")
        meta = self._metadata()
        if meta is not None:
            traces = traces.join(meta, "trace_id", "left")
        else:
            traces = traces.selectExpr("*", "CAST(NULL AS STRING) AS session_id", "CAST(NULL AS STRING) AS token_usage",
                                       "CAST(NULL AS STRING) AS synthetic_timing")
        # One row per trace and one narrow row per span (no payload text), kept for the ~40 aggregates below.
        self.traces = self._keep(traces)
        keep = self.traces.select("trace_id", "ts", "state")
        self.spans = self._keep(spans.join(keep, "trace_id"))
        self.unparseable = self._keep(unparseable.join(keep, "trace_id"))
        for df in (self.spans, self.unparseable):  # materialised; then the first narrow copy is released
            df.count()
        narrow = self._kept.pop(0)
        narrow.unpersist()

    def _annotations(self) -> Any:
        """The live annotation rows: the latest per annotation_id, soft-deleted ones dropped."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        if not self.annotations_table:
            return None
        rows = self.spark.table(self.annotations_table)
        latest = Window.partitionBy("annotation_id").orderBy(F.col("updated_at").desc_nulls_last())
        return rows.withColumn("_rn", F.row_number().over(latest)).where("_rn = 1 AND deleted_at IS NULL").drop("_rn")

    def _metadata(self) -> Any:
        live = self._annotations()
        if live is None:
            return None
        loc = self.location.name.replace("'", "")
        self.live_annotations = live
        return live.where("annotation_type = 'METADATA'").selectExpr(
            f"concat('trace:/{loc}/', target_id) AS trace_id",
            f"variant_get(value, '$.trace_metadata[\"{SESSION_METADATA_KEY}\"]', 'string') AS session_id",
            f"variant_get(value, '$.trace_metadata[\"{TOKEN_USAGE_METADATA_KEY}\"]', 'string') AS token_usage",
            "variant_get(value, '$.trace_metadata[\"eval_agent.import.timing\"]', 'string') AS synthetic_timing",
        ).dropDuplicates(["trace_id"])

    # --- helpers that return small results -------------------------------------------------------
    @staticmethod
    def _percentiles(df: Any, keys: list[str], value: str) -> dict[tuple, dict[int | str, int]]:
        """Exact nearest-rank p50/p90/p99 and max of `value` per group: {key: {50: v, 90: v, 99: v, "max": v}}."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        values = df.where(F.col(value).isNotNull()).select(*keys, F.col(value).alias("v"))
        part = Window.partitionBy(*keys) if keys else Window.partitionBy(F.lit(1))
        ranked = values.select(*keys, "v",
                               F.row_number().over(part.orderBy("v")).alias("rn"), F.count(F.lit(1)).over(part).alias("n"))
        ranks = {q: f"greatest(1, (n * {q} + 99) div 100)" for q in QUANTILES}  # rank_index + 1, in integers
        picked = ranked.where(" OR ".join([f"rn = {r}" for r in ranks.values()] + ["rn = n"]))
        aggs = [F.expr(f"max(CASE WHEN rn = {r} THEN v END)").alias(f"p{q}") for q, r in ranks.items()] + [F.expr("max(v)").alias("vmax")]
        grouped = picked.groupBy(*keys).agg(*aggs) if keys else picked.agg(*aggs)
        out = {}
        for row in grouped.collect():
            key = tuple(row[k] for k in keys)
            out[key] = {**{q: int(row[f"p{q}"]) for q in QUANTILES}, "max": int(row["vmax"])}
        return out

    @staticmethod
    def _latency(found: dict[int | str, int] | None, scale: float = 1.0) -> LatencyStats:
        if not found:
            return LatencyStats()
        conv = (lambda v: round(v / scale, 3)) if scale != 1.0 else float
        return LatencyStats(**{f"p{q}": conv(found[q]) for q in QUANTILES}, max=conv(found["max"]))

    @staticmethod
    def _examples(df: Any, keys: list[str], k: int) -> dict[tuple, list[str]]:
        """The k most recent distinct traces per group (timestamp desc, then id desc: accumulators.Examples)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        distinct = df.select(*keys, "trace_id", F.coalesce(F.col("ts"), F.lit(0)).alias("ets")).distinct()
        part = Window.partitionBy(*keys) if keys else Window.partitionBy(F.lit(1))
        top = distinct.withColumn("_rn", F.row_number().over(part.orderBy(F.col("ets").desc(), F.col("trace_id").desc()))).where(f"_rn <= {k}")
        out: dict[tuple, list[str]] = {}
        for row in top.orderBy("_rn").collect():
            out.setdefault(tuple(row[c] for c in keys), []).append(row["trace_id"])
        return out

    @staticmethod
    def _distribution(pairs: list[tuple[int, int]]) -> CountStats:
        """percentiles.CountDistribution from (value, how many) pairs counted by Spark."""
        dist = CountDistribution()
        for value, count in pairs:
            dist._counts[int(value)] += int(count)
            dist._n += int(count)
            dist._total += int(value) * int(count)
        return CountStats(**dist.summary())

    def _ancestors(self, start: Any, cols: list[str]) -> Any:
        """(trace_id, *cols, ancestor_id) for every ancestor of each start row (whose parent is `parent_id`)."""
        from pyspark.sql import functions as F

        parents = self.spans.select(F.col("trace_id").alias("_tid"), F.col("span_id").alias("_sid"), F.col("parent_id").alias("_pid"))
        frontier = start.select("trace_id", *cols, F.col("parent_id").alias("ancestor_id")).where("ancestor_id IS NOT NULL")
        found = None
        for _ in range(MAX_DEPTH):
            frontier = self._keep(frontier)
            if frontier.count() == 0:  # one job per level: it also materialises the level
                break
            found = frontier if found is None else found.unionByName(frontier)
            frontier = (frontier.join(parents, (frontier.trace_id == parents._tid) & (frontier.ancestor_id == parents._sid))
                        .select("trace_id", *cols, F.col("_pid").alias("ancestor_id"))
                        .where("ancestor_id IS NOT NULL"))
        if found is None:
            return start.select("trace_id", *cols, F.col("parent_id").alias("ancestor_id")).limit(0)
        return self._keep(found)

    # --- the profile -------------------------------------------------------------------------------
    def build(self, experiment_id: str, experiment_name: str | None = None, trajectory_scan: int = 0) -> TraceProfile:
        from pyspark.sql import functions as F

        started = time.perf_counter()
        conf = self.spark.conf
        before = conf.get(DUPLICATE_KEYS_CONF, None)
        conf.set(DUPLICATE_KEYS_CONF, "true")  # Python's json keeps the last of duplicate keys; Spark refuses them by default
        try:
            return self._build(experiment_id, experiment_name, trajectory_scan, started)
        finally:
            try:
                if before is None:
                    conf.unset(DUPLICATE_KEYS_CONF)
                else:
                    conf.set(DUPLICATE_KEYS_CONF, before)
                for df in self._kept:
                    df.unpersist()
            except Exception:  # the session died (the error being raised says why): nothing left to release
                pass
            self._kept.clear()

    def _build(self, experiment_id: str, experiment_name: str | None, trajectory_scan: int, started: float) -> TraceProfile:
        from pyspark.sql import functions as F

        self._frames()
        spans, traces = self.spans, self.traces
        summary = traces.agg(
            F.count(F.lit(1)).alias("n"), F.sum("span_count").alias("spans"), F.min("ts").alias("first"), F.max("ts").alias("last"),
        ).collect()[0]
        trace_count = int(summary["n"] or 0)
        status = {r["state"]: int(r["count"]) for r in traces.groupBy("state").count().collect()}
        latency = self._percentiles(traces, [], "execution_ms").get((), None)
        slowest = traces.where("execution_ms IS NOT NULL").orderBy(F.col("execution_ms").desc(), F.col("trace_id").desc(), F.col("state").desc()).limit(SLOWEST).collect()

        durations = spans.withColumn("duration", F.expr("CASE WHEN start_ns IS NOT NULL AND end_ns IS NOT NULL AND end_ns >= start_ns THEN end_ns - start_ns END"))
        span_rows = durations.groupBy("name", "span_type").agg(
            F.count(F.lit(1)).alias("count"), F.expr("sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors")).collect()
        span_pcts = self._percentiles(durations, ["name", "span_type"], "duration")
        tools = durations.where("span_type = 'TOOL'")
        tool_rows = tools.groupBy("name").agg(
            F.count(F.lit(1)).alias("calls"), F.expr("sum(CASE WHEN status = 'ERROR' THEN 1 ELSE 0 END) AS errors"),
            F.countDistinct("trace_id").alias("traces")).collect()
        tool_pcts = self._percentiles(tools, ["name"], "duration")

        roots = self._roots()
        errors = self._errors()
        llm = self._llm(trace_count)
        retrieval = self._retrieval()
        outputs, shapes = self._root_payloads(roots)
        odd = self._odd(roots)
        profile = TraceProfile(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source=ProfileSource(tracking_uri=None, path=ENGINE, since_ms=self.since_ms, max_traces=self.max_traces, truncated=self.truncated),
            trace_count=trace_count,
            span_count=int(summary["spans"] or 0),
            time_range=TimeRange(first_ms=_int(summary["first"]), last_ms=_int(summary["last"]), first=_iso(summary["first"]), last=_iso(summary["last"])),
            status_counts=dict(sorted(status.items(), key=lambda kv: (-kv[1], kv[0]))),
            latency_ms=self._latency(latency),
            latency_histogram=self._histogram(traces),
            timeline=self._timeline(traces, summary["first"], summary["last"]),
            spans_per_trace=self._distribution([(r["span_count"], r["count"]) for r in traces.groupBy("span_count").count().collect()]),
            trace_names=_named(Counter({r["name"]: int(r["count"]) for r in roots.groupBy("name").count().collect()})),
            spans=sorted(
                (SpanStats(name=r["name"], span_type=r["span_type"], count=int(r["count"]), error_count=int(r["errors"]),
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

    def _roots(self) -> Any:
        """One root per trace: the real root (earliest start, then name, then end), else an orphan
        whose parent never arrived (the builder's `_root`)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        candidates = self.spans.where("parent_id IS NULL")
        rootless = self.traces.where("roots = 0").select("trace_id")
        if rootless.limit(1).count():
            # Traces without a real root take an orphan (a span whose parent never arrived): its payload
            # facts come from a second pass over the spans of those traces only.
            loc_prefix = len(f"trace:/{self.location.name}/") + 1
            hex_ids = rootless.select(F.expr(f"substring(trace_id, {loc_prefix})").alias("_hex"))
            raw = self.spark.table(self.spans_table)
            raw = raw.join(F.broadcast(hex_ids), raw.trace_id == hex_ids._hex, "left_semi")
            theirs = self._narrow(self._raw(raw), all_roots=True).where("span_id IS NOT NULL")
            ids = theirs.select("trace_id", F.col("span_id").alias("parent_id")).distinct()
            orphans = theirs.where("parent_id IS NOT NULL").join(ids, ["trace_id", "parent_id"], "left_anti")
            orphans = orphans.join(self.traces.select("trace_id", "ts", "state"), "trace_id")
            candidates = candidates.unionByName(orphans.select(*candidates.columns))
        order = Window.partitionBy("trace_id").orderBy(F.coalesce(F.col("start_ns"), F.lit(0)), F.col("name"), F.coalesce(F.col("end_ns"), F.lit(0)))
        return self._keep(candidates.withColumn("_rn", F.row_number().over(order)).where("_rn = 1").drop("_rn"))

    def _errors(self) -> dict[str, Any]:
        from pyspark.sql import functions as F

        keyed = self._keep(self.spans.where("status = 'ERROR'").select(
            "trace_id", "span_id", "parent_id", "name", "ts", "state", "exc_type", "message", "normalized"))
        # An error re-raised by a parent is counted once, where it began: drop each failed span that
        # has a failed descendant with the same (type, normalised message).
        ups = self._ancestors(keyed, ["exc_type", "normalized"])
        propagated = ups.select(F.col("trace_id").alias("_tid"), F.col("ancestor_id").alias("_sid"), F.col("exc_type").alias("_et"),
                                F.col("normalized").alias("_nm")).distinct()
        origins = keyed.join(propagated, (keyed.trace_id == propagated._tid) & (keyed.span_id == propagated._sid)
                             & keyed.exc_type.eqNullSafe(propagated._et) & (keyed.normalized == propagated._nm), "left_anti")
        origins = self._keep(origins)
        sig_keys = ["exc_type", "name", "normalized"]
        sig_rows = origins.groupBy(*sig_keys).agg(
            F.count(F.lit(1)).alias("count"), F.countDistinct("trace_id").alias("traces"),
            F.max(F.struct(F.coalesce(F.col("ts"), F.lit(0)), F.col("trace_id"), F.substring("message", 1, MESSAGE_CHARS))).alias("latest"),
        ).collect()
        examples = self._examples(origins, sig_keys, EXAMPLES)
        signatures = sorted(
            (ErrorSignature(
                id=signature_id(r["exc_type"], r["name"], r["normalized"]),
                signature=f"{r['exc_type']}: {r['normalized']}" if r["exc_type"] else r["normalized"],
                exception_type=r["exc_type"], span_name=r["name"], count=int(r["count"]), trace_count=int(r["traces"]),
                trace_ids=examples.get((r["exc_type"], r["name"], r["normalized"]), []), example_message=r["latest"][2],
            ) for r in sig_rows),
            key=lambda s: (-s.count, s.signature, s.span_name),
        )
        error_traces = self._keep(keyed.select("trace_id", "ts", "state").distinct())
        totals = error_traces.agg(F.count(F.lit(1)).alias("n"), F.expr("sum(CASE WHEN state = 'OK' THEN 1 ELSE 0 END) AS ok")).collect()[0]
        hidden = origins.where("state = 'OK'")
        hidden_traces = error_traces.where("state = 'OK'")
        by_span = [SpanCount(span_name=r["name"], count=int(r["count"]))
                   for r in hidden.select("trace_id", "name").distinct().groupBy("name").count().collect()]
        return {
            "traces_with_error_spans": int(totals["n"] or 0),
            "signatures": signatures,
            "hidden": HiddenFailures(count=int(totals["ok"] or 0), trace_ids=self._examples(hidden_traces, [], MANY_EXAMPLES).get((), []),
                                     by_span=sorted(by_span, key=lambda b: (-b.count, b.span_name))),
            "error_traces": error_traces,
        }

    def _llm(self, trace_count: int) -> LlmUsage:
        from pyspark.sql import functions as F

        calls_all = self.spans.where(F.col("span_type").isin(*sorted(LLM_TYPES)))
        ups = self._ancestors(calls_all.select("trace_id", "span_id", "parent_id"), [])
        wrappers = ups.join(calls_all.select("trace_id", F.col("span_id").alias("ancestor_id")), ["trace_id", "ancestor_id"]).select(
            "trace_id", F.col("ancestor_id").alias("span_id")).distinct()
        calls = self._keep(calls_all.join(wrappers, ["trace_id", "span_id"], "left_anti"))
        per_trace = calls.groupBy("trace_id").count()
        hist = Counter({int(r["count"]): int(r["n"]) for r in per_trace.groupBy("count").agg(F.count(F.lit(1)).alias("n")).collect()})
        with_calls = sum(hist.values())
        hist[0] += trace_count - with_calls
        models = Counter({r["model"]: int(r["count"]) for r in calls.where("model IS NOT NULL").groupBy("model").count().collect()})
        total = sum(v * c for v, c in hist.items())
        return LlmUsage(
            calls=total, traces_with_calls=with_calls,
            calls_per_trace=self._distribution([(v, c) for v, c in hist.items() if c]),
            models=_named(models), calls_without_model=total - sum(models.values()),
        )

    def _retrieval(self) -> Retrieval:
        from pyspark.sql import functions as F

        marked = self.spans.where("span_type = 'RETRIEVER'").select("trace_id", "ts", "name", F.col("out_empty").alias("empty"))
        by_name = marked.groupBy("name").agg(F.count(F.lit(1)).alias("spans"), F.expr("sum(CASE WHEN empty THEN 1 ELSE 0 END) AS empty")).collect()
        per_trace = marked.groupBy("trace_id", "ts").agg(F.expr("max(CASE WHEN empty THEN 1 ELSE 0 END) AS any_empty"))
        counts = per_trace.agg(F.count(F.lit(1)).alias("traces"), F.sum("any_empty").alias("empty")).collect()[0]
        n_spans = sum(int(r["spans"]) for r in by_name)
        n_empty = sum(int(r["empty"]) for r in by_name)
        return Retrieval(
            spans=n_spans, empty=n_empty, empty_share=round(n_empty / n_spans, 4) if n_spans else None,
            traces_with_retrieval=int(counts["traces"] or 0), traces_with_empty_retrieval=int(counts["empty"] or 0),
            empty_trace_ids=self._examples(per_trace.where("any_empty = 1"), [], MANY_EXAMPLES).get((), []),
            by_name=sorted((RetrieverStats(name=r["name"], spans=int(r["spans"]), empty=int(r["empty"])) for r in by_name), key=lambda r: (-r.spans, r.name)),
        )

    def _root_payloads(self, roots: Any) -> tuple[Outputs, Shapes]:
        from pyspark.sql import functions as F

        facts = ["in_has_value", "in_kind", "in_keys", "out_has_value", "out_empty", "out_kind", "out_keys"]
        base = self.traces.select("trace_id", "ts", "state").join(roots.select("trace_id", *facts), "trace_id", "left")
        cases = self._keep(base.selectExpr(
            "trace_id", "ts", "state",
            "NOT coalesce(in_has_value, false) AS inputs_missing",
            "NOT coalesce(out_has_value, false) AS missing",
            "coalesce(out_has_value AND out_empty, false) AS empty",
            "in_kind", "in_keys", "out_kind", "out_keys",
        ))
        c = cases.agg(*[F.expr(f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)").alias(name) for name, cond in (
            ("missing", "missing"), ("empty", "empty"), ("missing_ok", "missing AND state = 'OK'"), ("empty_ok", "empty AND state = 'OK'"),
            ("inputs_missing", "inputs_missing"))]).collect()[0]
        ex_missing = self._examples(cases.where("missing AND state = 'OK'"), [], MANY_EXAMPLES).get((), [])
        ex_empty = self._examples(cases.where("empty AND state = 'OK'"), [], MANY_EXAMPLES).get((), [])
        outputs = Outputs(missing=int(c["missing"] or 0), empty=int(c["empty"] or 0), missing_ok=int(c["missing_ok"] or 0), empty_ok=int(c["empty_ok"] or 0),
                          missing_ok_trace_ids=ex_missing, empty_ok_trace_ids=ex_empty, inputs_missing=int(c["inputs_missing"] or 0))

        def shapes(side: str, present: str) -> list[Shape]:
            rows = cases.where(present).groupBy(f"{side}_kind", f"{side}_keys").agg(
                F.count(F.lit(1)).alias("count"), F.max(F.struct(F.coalesce(F.col("ts"), F.lit(0)), F.col("trace_id"))).alias("ex")).collect()
            out = [Shape(kind=r[f"{side}_kind"], keys=list(r[f"{side}_keys"] or []), count=int(r["count"]), example_trace_id=r["ex"][1]) for r in rows]
            return sorted(out, key=lambda s: (-s.count, s.kind, s.keys))

        return outputs, Shapes(inputs=shapes("in", "NOT inputs_missing"), outputs=shapes("out", "NOT missing"))

    def _odd(self, roots: Any) -> dict[str, OddCount]:
        from pyspark.sql import functions as F

        spans = self.spans
        non_json = spans.where("in_nonjson").select("trace_id", "ts").unionByName(spans.where("out_nonjson").select("trace_id", "ts"))
        huge = spans.where("in_huge").select("trace_id", "ts").unionByName(spans.where("out_huge").select("trace_id", "ts"))
        traces = self.traces
        rootless = traces.where("roots = 0")
        sources = {
            "traces_without_root": rootless.select("trace_id", "ts"),
            "traces_with_multiple_roots": traces.where("roots > 1").select("trace_id", "ts"),
            "traces_without_duration": traces.where("execution_ms IS NULL").select("trace_id", "ts"),
            "spans_missing_end_time": spans.where("end_ns IS NULL").select("trace_id", "ts"),
            "spans_negative_duration": spans.where("end_ns IS NOT NULL AND start_ns IS NOT NULL AND end_ns < start_ns").select("trace_id", "ts"),
            "spans_unset_status": spans.where("status = 'UNSET'").select("trace_id", "ts"),
            "unparseable_spans": self.unparseable.select("trace_id", "ts"),
            "non_json_payloads": non_json,
            "huge_payloads": huge,
        }
        union = None
        for key, df in sources.items():
            df = df.select(F.lit(key).alias("odd"), "trace_id", "ts")
            union = df if union is None else union.unionByName(df)
        union = self._keep(union)
        counts = {r["odd"]: int(r["count"]) for r in union.groupBy("odd").count().collect()}
        examples = self._examples(union, ["odd"], EXAMPLES)
        return {key: OddCount(count=counts.get(key, 0), trace_ids=examples.get((key,), [])) for key in ODD_KEYS}

    def _tokens(self, traces: Any) -> TokenTotals:
        from pyspark.sql import functions as F

        usage = traces.where("token_usage IS NOT NULL").selectExpr(
            *[f"CAST(get_json_object(token_usage, '$.{k}') AS BIGINT) AS {k}" for k in ("input_tokens", "output_tokens", "total_tokens")])
        usage = usage.where("input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR total_tokens IS NOT NULL")
        r = usage.agg(F.sum("input_tokens").alias("i"), F.sum("output_tokens").alias("o"), F.sum("total_tokens").alias("t"), F.count(F.lit(1)).alias("n")).collect()[0]
        return TokenTotals(input=int(r["i"] or 0), output=int(r["o"] or 0), total=int(r["t"] or 0), traces_with_usage=int(r["n"] or 0))

    def _sessions(self, traces: Any) -> Sessions:
        from pyspark.sql import functions as F

        with_session = traces.where("session_id IS NOT NULL AND session_id != ''")
        per = self._keep(with_session.groupBy("session_id").count())
        dist = [(int(r["count"]), int(r["n"])) for r in per.groupBy("count").agg(F.count(F.lit(1)).alias("n")).collect()]
        examples = [r["session_id"] for r in per.orderBy("session_id").limit(EXAMPLES).collect()]
        return Sessions(traces_with_session=sum(v * c for v, c in dist), distinct_sessions=sum(c for _, c in dist),
                        traces_per_session=self._distribution(dist), example_session_ids=examples)

    def _assessments(self) -> list[AssessmentSummary]:
        from pyspark.sql import functions as F

        from . import spark_sql as S

        if getattr(self, "live_annotations", None) is None:
            return []
        loc = self.location.name.replace("'", "")
        kinds = "CASE annotation_type " + " ".join(f"WHEN '{t}' THEN '{k}'" for t, k in ASSESSMENT_TYPES.items()) + " END"
        rows = self.live_annotations.where(F.col("annotation_type").isin(*ASSESSMENT_TYPES)).where("valid IS NULL OR valid").selectExpr(
            f"concat('trace:/{loc}/', target_id) AS trace_id", "name", f"{kinds} AS kind",
            "coalesce(source.source_type, 'UNKNOWN') AS source_type",
            "CASE WHEN annotation_type = 'ISSUE' THEN NULL ELSE value END AS v",
        ).join(self.traces.select("trace_id"), "trace_id")
        rows = rows.select("trace_id", "name", "kind", "source_type", S.value_number("v").alias("number"), *S.value_keys("v"))
        labels = S.with_value_label(rows.select("_vk", "_vt", "_vj", "_vs", "_vd").distinct()).select("_vk", "label")
        rows = self._keep(rows.join(labels, "_vk").select(
            "trace_id", "name", "kind", "source_type", F.struct("label", "number").alias("f")))
        base = {(r["name"], r["kind"]): r for r in rows.groupBy("name", "kind").agg(
            F.count(F.lit(1)).alias("count"), F.countDistinct("trace_id").alias("traces"),
            F.count("f.number").alias("nn"), F.min("f.number").alias("lo"), F.max("f.number").alias("hi"), F.sum("f.number").alias("total"),
        ).collect()}
        sources: dict[tuple, dict[str, int]] = {}
        for r in rows.groupBy("name", "kind", "source_type").count().collect():
            sources.setdefault((r["name"], r["kind"]), {})[r["source_type"]] = int(r["count"])
        labels: dict[tuple, Counter[str]] = {}
        for r in rows.groupBy("name", "kind", "f.label").count().collect():
            labels.setdefault((r["name"], r["kind"]), Counter())[r["label"]] = int(r["count"])
        out = []
        for key, r in base.items():
            counted = labels.get(key, Counter())
            if len(counted) > MAX_VALUES:  # the builder folds by arrival order; here the most frequent are kept
                kept = dict(counted.most_common(MAX_VALUES))
                kept[OTHER] = kept.get(OTHER, 0) + sum(counted.values()) - sum(kept.values())
                counted = Counter(kept)
            n = int(r["nn"] or 0)
            numeric = NumericStats(count=n, min=r["lo"], max=r["hi"], mean=round(r["total"] / n, 6)) if n else None
            out.append(AssessmentSummary(name=key[0], kind=key[1], count=int(r["count"]), trace_count=int(r["traces"]), sources=sources.get(key, {}),
                                         values=dict(counted.most_common()), numeric=numeric, errors=0))
        return sorted(out, key=lambda a: (-a.count, a.name, a.kind))

    def _sample(self, error_traces: Any) -> list[str]:
        clean = self.traces.where("state = 'OK'").select("trace_id").join(error_traces.select("trace_id"), "trace_id", "left_anti")
        picked = clean.selectExpr("trace_id", "crc32(encode(trace_id, 'utf-8')) AS h").orderBy("h", "trace_id").limit(SAMPLE_SIZE).collect()
        return [r["trace_id"] for r in sorted(picked, key=lambda r: (r["h"], r["trace_id"]))]

    def _histogram(self, traces: Any) -> list[HistogramBin]:
        """percentiles.histogram: the same edges (numpy, from the exact min and max), bins counted by Spark."""
        from pyspark.sql import functions as F

        timed = traces.where("execution_ms IS NOT NULL").select(F.col("execution_ms").cast("double").alias("v"))
        r = timed.agg(F.count(F.lit(1)).alias("n"), F.min("v").alias("lo"), F.max("v").alias("hi")).collect()[0]
        n = int(r["n"] or 0)
        if n == 0:
            return []
        low, high = float(r["lo"]), float(r["hi"])
        if high <= low:
            return [HistogramBin(lower_ms=low, upper_ms=high, count=n)]
        edges = np.geomspace(low, high, HISTOGRAM_BINS + 1) if (low > 0 and high / low > 20) else np.linspace(low, high, HISTOGRAM_BINS + 1)
        inner = F.array(*[F.lit(float(e)) for e in edges[1:-1]])
        binned = timed.select(F.size(F.filter(inner, lambda e: e <= F.col("v"))).alias("b")).groupBy("b").count().collect()
        counts = [0] * HISTOGRAM_BINS
        for row in binned:
            counts[min(int(row["b"]), HISTOGRAM_BINS - 1)] += int(row["count"])
        return [HistogramBin(lower_ms=round(float(edges[i]), 3), upper_ms=round(float(edges[i + 1]), 3), count=c) for i, c in enumerate(counts)]

    def _timeline(self, traces: Any, first: Any, last: Any) -> list[TimeBucket]:
        if first is None or last is None:
            return []
        first, last = int(first), int(last)
        span = max(1, last - first + 1)
        width = -(-span // TIMELINE_BUCKETS)
        rows = traces.where("ts IS NOT NULL").selectExpr(f"(ts - {first}) div {width} AS b", "state").groupBy("b", "state").count().collect()
        counts: list[Counter[str]] = [Counter() for _ in range(-(-span // width))]
        for r in rows:
            counts[int(r["b"])][r["state"]] += int(r["count"])
        return [TimeBucket(start_ms=first + i * width, end_ms=first + (i + 1) * width, states=dict(sorted(c.items()))) for i, c in enumerate(counts)]

    def _trajectory(self, limit: int) -> Any:
        """trajectory.py's facts over the `limit` most recent traces, read whole (a bounded fetch)."""
        from pyspark.sql import functions as F

        from . import trajectory

        recent = self.traces.orderBy(F.col("ts").desc(), F.col("trace_id").asc()).limit(limit).select("trace_id", "ts", "synthetic_timing").collect()
        ids = [r["trace_id"] for r in recent]
        loc = self.location.name.replace("'", "")
        raw = self.spark.table(self.spans_table).selectExpr(
            f"concat('trace:/{loc}/', trace_id) AS trace_id", "span_id", "nullif(parent_span_id, '') AS parent_id", "coalesce(name, '(unnamed)') AS name",
            f"coalesce(nullif({plain_string_sql(_attr(SPAN_TYPE_KEY))}, ''), 'UNKNOWN') AS span_type", f"{_status_sql('status.code')} AS status",
            "start_time_unix_nano AS start_ns", "nullif(end_time_unix_nano, 0) AS end_ns", "to_json(attributes) AS attrs",
        ).where(F.col("trace_id").isin(ids)).where("nullif(span_id, '') IS NOT NULL")
        by_trace: dict[str, list[SpanRow]] = {}
        for r in raw.collect():
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
    """The profile of the traces at a UC location, computed by Spark. Raises SparkEngineError for what
    this engine cannot do (a filter string)."""
    from .source import InvalidQuery

    if filter_string:
        raise InvalidQuery("The spark engine does not take --filter (MLflow search syntax): use --since / --max-traces, or --engine sql|api.")
    if max_traces is not None and max_traces < 1:
        raise InvalidQuery("--max-traces must be at least 1.")
    location = UcLocation.parse(location) if isinstance(location, str) else location
    engine = SparkProfile(spark, location, since_ms=since_ms, max_traces=max_traces, tables=tables)
    return engine.build(experiment_id or location.name, experiment_name, trajectory_scan)


def _named(counter: Counter[str]) -> list[NamedCount]:
    return [NamedCount(name=n, count=c) for n, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _iso(ms: Any) -> str | None:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat(timespec="seconds") if ms is not None else None


_ = rank_index  # the nearest-rank definition the SQL above writes out in integers

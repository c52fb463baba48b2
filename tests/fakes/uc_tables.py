"""Unity Catalog trace tables (the exact schema of traces/uc_schema.py) written from a local MLflow store.

The rows are what the UC spans and annotations tables hold for the same traces: one spans row per
stored span (OTel trace id in hex, attributes as MLflow writes them: JSON-encoded strings in a
VARIANT, events with their attributes, status code/message), one METADATA annotation per trace
(trace_metadata with the session and token usage) and one FEEDBACK/EXPECTATION row per valid
assessment. The traces are read with the sql engine's own reader (`SqlReader(full_content=True)`),
staged as plain-text parquet with pyarrow (no Python rows through Spark), then turned into the
typed tables by Spark (`parse_json` for VARIANT columns) and written as parquet.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mlflow_eval_agent.traces.uc_schema import ANNOTATIONS_COLUMNS, SPANS_COLUMNS, UcLocation

STAGE_BATCH = 50_000


def _hex(trace_id: str) -> str:
    return trace_id[3:] if trace_id.startswith("tr-") else trace_id


def stage_rows(tracking_uri: str, experiment_id: str, out: Path) -> tuple[int, int]:
    """Stage the store's traces as text parquet under `out` (spans/ and annotations/); returns (traces, spans)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlflow_eval_agent.traces.query import TraceQuery
    from mlflow_eval_agent.traces.source import mlflow_client
    from mlflow_eval_agent.traces.sql_reader import SqlReader

    span_dir, ann_dir = out / "spans_stage", out / "annotations_stage"
    for d in (span_dir, ann_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    spans: dict[str, list[Any]] = {k: [] for k in ("trace_id", "span_id", "parent_span_id", "name", "start", "end", "attributes", "events", "code", "message")}
    ann: dict[str, list[Any]] = {k: [] for k in ("annotation_id", "annotation_type", "target_id", "name", "value", "source_type")}
    parts = [0, 0]
    n_traces = n_spans = 0

    def flush(force: bool = False) -> None:
        if spans["trace_id"] and (force or len(spans["trace_id"]) >= STAGE_BATCH):
            pq.write_table(pa.table(spans), span_dir / f"part-{parts[0]:05d}.parquet")
            parts[0] += 1
            for v in spans.values():
                v.clear()
        if ann["target_id"] and (force or len(ann["target_id"]) >= STAGE_BATCH):
            pq.write_table(pa.table(ann), ann_dir / f"part-{parts[1]:05d}.parquet")
            parts[1] += 1
            for v in ann.values():
                v.clear()

    client = mlflow_client(tracking_uri)
    for record in SqlReader(client, TraceQuery(experiment_id), full_content=True).records():
        tid = _hex(record.trace_id)
        n_traces += 1
        for row in record.rows or []:
            raw = row.raw
            status = raw.get("status") if isinstance(raw.get("status"), dict) else {}
            spans["trace_id"].append(tid)
            spans["span_id"].append(row.span_id)
            spans["parent_span_id"].append(row.parent_id)
            spans["name"].append(row.name)
            spans["start"].append(row.start_ns)
            spans["end"].append(row.end_ns)
            spans["attributes"].append(json.dumps(raw.get("attributes") or {}))
            spans["events"].append(json.dumps([
                {"time_unix_nano": e.get("time_unix_nano"), "name": e.get("name"), "attributes": json.dumps(e.get("attributes") or {})}
                for e in raw.get("events") or [] if isinstance(e, dict)]))
            spans["code"].append(f"STATUS_CODE_{row.status}")
            spans["message"].append(str(status.get("message") or ""))
            n_spans += 1
        metadata = dict(record.metadata)
        if record.session_id:
            metadata["mlflow.trace.session"] = record.session_id
        if record.tokens:
            metadata["mlflow.trace.tokenUsage"] = json.dumps(record.tokens)
        ann["annotation_id"].append(f"{tid}-metadata")
        ann["annotation_type"].append("METADATA")
        ann["target_id"].append(tid)
        ann["name"].append(None)
        ann["value"].append(json.dumps({"client_request_id": None, "trace_metadata": metadata}))
        ann["source_type"].append(None)
        for k, a in enumerate(record.assessments):
            ann["annotation_id"].append(f"{tid}-a{k}")
            ann["annotation_type"].append(a.kind.upper())
            ann["target_id"].append(tid)
            ann["name"].append(a.name)
            ann["value"].append(json.dumps(a.value))
            ann["source_type"].append(a.source_type)
        flush()
    flush(force=True)
    return n_traces, n_spans


def typed_tables(spark: Any, out: Path) -> tuple[Any, Any]:
    """The staged text turned into the UC tables' exact types (lazy DataFrames)."""
    spans = spark.read.parquet(str(out / "spans_stage")).selectExpr(
        "uuid() AS record_id", "timestamp_micros(CAST(start / 1000 AS BIGINT)) AS time", "to_date(timestamp_micros(CAST(start / 1000 AS BIGINT))) AS date",
        "'support-agent' AS service_name", "trace_id", "span_id", "CAST(NULL AS STRING) AS trace_state", "parent_span_id",
        "CAST(0 AS INT) AS flags", "name", "'SPAN_KIND_INTERNAL' AS kind",
        "CAST(start AS BIGINT) AS start_time_unix_nano", "CAST(`end` AS BIGINT) AS end_time_unix_nano",
        "parse_json(attributes) AS attributes", "CAST(0 AS INT) AS dropped_attributes_count",
        "transform(from_json(events, 'ARRAY<STRUCT<time_unix_nano: BIGINT, name: STRING, attributes: STRING>>'), "
        "e -> named_struct('time_unix_nano', e.time_unix_nano, 'name', e.name, 'attributes', parse_json(e.attributes), "
        "'dropped_attributes_count', CAST(0 AS INT))) AS events",
        "CAST(0 AS INT) AS dropped_events_count",
        "CAST(array() AS ARRAY<STRUCT<trace_id: STRING, span_id: STRING, trace_state: STRING, attributes: VARIANT, "
        "dropped_attributes_count: INT, flags: INT>>) AS links",
        "CAST(0 AS INT) AS dropped_links_count", "named_struct('message', message, 'code', code) AS status",
        "named_struct('attributes', parse_json('{\"service.name\": \"support-agent\"}'), 'dropped_attributes_count', CAST(0 AS INT)) AS resource",
        "CAST(NULL AS STRING) AS resource_schema_url",
        "named_struct('name', 'mlflow', 'version', '3', 'attributes', parse_json('{}'), 'dropped_attributes_count', CAST(0 AS INT)) AS instrumentation_scope",
        "CAST(NULL AS STRING) AS span_schema_url",
    )
    annotations = spark.read.parquet(str(out / "annotations_stage")).selectExpr(
        "annotation_id", "annotation_type", "'TRACE' AS target_type", "target_id", "name", "parse_json(value) AS value",
        "CAST(NULL AS STRING) AS comment", "parse_json('{}') AS metadata",
        "CASE WHEN source_type IS NULL THEN NULL ELSE named_struct('source_type', source_type, 'source_id', CAST(NULL AS STRING)) END AS source",
        "true AS valid", "current_timestamp() AS created_at", "current_timestamp() AS updated_at", "CAST(NULL AS TIMESTAMP) AS deleted_at",
    )
    return spans, annotations


def column_types(df: Any) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]


def expected_types(spark: Any, ddl: str) -> list[tuple[str, str]]:
    return column_types(spark.createDataFrame([], ddl))


def write_uc_tables(spark: Any, tracking_uri: str, experiment_id: str, out: Path, location: UcLocation) -> dict[str, str]:
    """Write the UC spans and annotations tables for an experiment as parquet under `out`, register them
    as temp views, and return the engine's `tables` mapping. Checks the exact UC column types."""
    stage_rows(tracking_uri, experiment_id, out)
    spans, annotations = typed_tables(spark, out)
    if column_types(spans) != expected_types(spark, SPANS_COLUMNS) or column_types(annotations) != expected_types(spark, ANNOTATIONS_COLUMNS):
        raise AssertionError("the written tables do not have the UC schema of traces/uc_schema.py")
    names = {}
    for kind, df in (("spans", spans), ("annotations", annotations)):
        path = out / kind
        df.write.mode("overwrite").parquet(str(path))
        view = f"{location.prefix or 'legacy'}_{kind}_{abs(hash(str(out))) % 10**8}"
        spark.read.parquet(str(path)).createOrReplaceTempView(view)
        names[kind] = view
    return names

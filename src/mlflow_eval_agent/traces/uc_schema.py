"""The Unity Catalog trace tables: their names and columns, in one place.

What Databricks documents (read late 2026; the feature is Beta/Public Preview, re-check before relying on it):
- "Store OpenTelemetry traces in Unity Catalog"
  https://docs.databricks.com/aws/en/mlflow3/genai/tracing/trace-unity-catalog (also the gcp/ and azure pages):
  an experiment bound to `UnityCatalog(catalog_name, schema_name, table_prefix)` writes OTel-format Delta
  tables `{catalog}.{schema}.{prefix}_otel_spans`, `_otel_logs`, `_otel_metrics`, `_otel_annotations`;
  the older `set_experiment_trace_location(UCSchemaLocation(catalog, schema))` writes
  `mlflow_experiment_trace_otel_spans` / `mlflow_experiment_trace_otel_logs` (MLflow 3.17's
  `mlflow.entities.trace_location` holds the same two default names).
- "Query OpenTelemetry traces stored in Unity Catalog"
  https://docs.databricks.com/aws/en/mlflow3/genai/tracing/observe-with-traces/query-dbsql: the views
  `{prefix}_trace_unified` (one row per trace: trace_id, client_request_id, request_time, state,
  execution_duration_ms, request, response, trace_metadata, tags, spans, assessments) and
  `{prefix}_trace_metadata`; the annotations table is append-only with soft deletes (latest row per
  `annotation_id` by `updated_at`, rows with `deleted_at` set are gone), one row per entity with
  `annotation_type` METADATA (value: client_request_id, trace_metadata, request_preview,
  response_preview), TAG (name = key), FEEDBACK / EXPECTATION (rationale in `comment`, user metadata in
  `metadata`), RUN_LINK; `value` and `metadata` are VARIANT. Databricks recommends the views because
  the tables' schemas "can change over time"; we read the tables because the views assemble whole
  traces per row (the opposite of aggregating where the data is).
- The spans table columns below are the OTel span model as the "unified trace table schema reference"
  (https://docs.databricks.com/aws/en/ai-gateway/unified-trace-table-reference) lists it for the v2
  schema (`otel.schemaVersion` = v2: record_id, time, date, service_name first; attributes VARIANT).
  The v1 tables (`mlflow_experiment_trace_otel_*`) have the same columns without those four and with
  attributes as MAP<STRING, STRING>; this engine reads v2.

Left open by the docs (so stated here and in NOTES.md; each is one line below to change):
- Whether MLflow's JSON-encoded attribute values (`mlflow.spanType` = '"TOOL"') land in the VARIANT as
  that string or as parsed JSON. `plain_string_sql` accepts both.
- The annotations table's columns beyond those named above: the assessment's source (`source` struct
  with `source_type`, `source_id` here), `valid` (an overridden assessment) and whether
  `target_id` holds the v4 trace id or the bare OTel id (`trace_id` here: the bare id, as in the
  spans table). Feedback errors are not documented at all: the engine counts none.
- How the views derive a trace's state and times: here as MLflow's SQL store does on span ingestion
  (state ERROR when the root span is ERROR, else OK; request time the earliest span start; duration
  the latest end minus the earliest start, in ms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEGACY_SPANS = "mlflow_experiment_trace_otel_spans"
LEGACY_LOGS = "mlflow_experiment_trace_otel_logs"
SPANS_SUFFIX = "_otel_spans"
LOGS_SUFFIX = "_otel_logs"
METRICS_SUFFIX = "_otel_metrics"
ANNOTATIONS_SUFFIX = "_otel_annotations"
UNIFIED_VIEW_SUFFIX = "_trace_unified"
METADATA_VIEW_SUFFIX = "_trace_metadata"

# Attribute keys read from `attributes` (MLflow's span attribute names).
SPAN_TYPE_KEY = "mlflow.spanType"
INPUTS_KEY = "mlflow.spanInputs"
OUTPUTS_KEY = "mlflow.spanOutputs"
MODEL_KEYS = ("mlflow.llm.model", "llm.model_name", "gen_ai.response.model", "gen_ai.request.model")
INVOCATION_PARAMS_KEY = "invocation_params"
# Keys of the METADATA annotation's trace_metadata map.
SESSION_METADATA_KEY = "mlflow.trace.session"
TOKEN_USAGE_METADATA_KEY = "mlflow.trace.tokenUsage"

# The v2 spans table, as Spark DDL (VARIANT needs Spark 4 / Databricks).
SPANS_COLUMNS = (
    "record_id STRING, time TIMESTAMP, date DATE, service_name STRING, "
    "trace_id STRING, span_id STRING, trace_state STRING, parent_span_id STRING, flags INT, name STRING, kind STRING, "
    "start_time_unix_nano BIGINT, end_time_unix_nano BIGINT, attributes VARIANT, dropped_attributes_count INT, "
    "events ARRAY<STRUCT<time_unix_nano: BIGINT, name: STRING, attributes: VARIANT, dropped_attributes_count: INT>>, "
    "dropped_events_count INT, "
    "links ARRAY<STRUCT<trace_id: STRING, span_id: STRING, trace_state: STRING, attributes: VARIANT, dropped_attributes_count: INT, flags: INT>>, "
    "dropped_links_count INT, status STRUCT<message: STRING, code: STRING>, "
    "resource STRUCT<attributes: VARIANT, dropped_attributes_count: INT>, resource_schema_url STRING, "
    "instrumentation_scope STRUCT<name: STRING, version: STRING, attributes: VARIANT, dropped_attributes_count: INT>, "
    "span_schema_url STRING"
)
# The annotations table: documented columns first; `source` and `valid` are the open ones (see above).
ANNOTATIONS_COLUMNS = (
    "annotation_id STRING, annotation_type STRING, target_type STRING, target_id STRING, name STRING, "
    "value VARIANT, comment STRING, metadata VARIANT, "
    "source STRUCT<source_type: STRING, source_id: STRING>, valid BOOLEAN, "
    "created_at TIMESTAMP, updated_at TIMESTAMP, deleted_at TIMESTAMP"
)
SPAN_STATUS_ERROR = "STATUS_CODE_ERROR"
SPAN_STATUS_OK = "STATUS_CODE_OK"
ASSESSMENT_TYPES = {"FEEDBACK": "feedback", "EXPECTATION": "expectation", "ISSUE": "issue"}

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class UcLocation:
    """A UC trace location: `catalog.schema.prefix` (tables `<prefix>_otel_*`) or `catalog.schema`
    (the legacy `mlflow_experiment_trace_otel_*` tables). `tables` maps a location to other names,
    e.g. parquet paths in tests (`spark.read.parquet(...)` registered as temp views)."""

    catalog: str
    schema: str
    prefix: str | None = None

    @classmethod
    def parse(cls, text: str) -> UcLocation:
        parts = (text or "").strip().split(".")
        if len(parts) not in (2, 3) or not all(_NAME.match(p) for p in parts):
            raise ValueError(f"{text!r} is not a Unity Catalog trace location: use catalog.schema.table_prefix (letters, digits, underscores).")
        return cls(*parts)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return ".".join(p for p in (self.catalog, self.schema, self.prefix) if p)

    @property
    def spans_table(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.prefix}{SPANS_SUFFIX}" if self.prefix else f"{self.catalog}.{self.schema}.{LEGACY_SPANS}"

    @property
    def annotations_table(self) -> str | None:
        """None for the legacy location: it has no annotations table (its tags and assessments are
        log events in `_otel_logs`, which this engine does not read)."""
        return f"{self.catalog}.{self.schema}.{self.prefix}{ANNOTATIONS_SUFFIX}" if self.prefix else None

    def trace_id(self, otel_trace_id: str) -> str:
        """The MLflow (v4) trace id of a span row's trace: `trace:/<location>/<otel id>`."""
        return f"trace:/{self.name}/{otel_trace_id}"


def looks_like_uc_location(text: str | None) -> bool:
    """`catalog.schema[.prefix]`: what `--trace-location` names when traces live in Unity Catalog."""
    try:
        UcLocation.parse(text or "")
    except ValueError:
        return False
    return True

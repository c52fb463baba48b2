"""Where a trace's spans are read from, per store kind: the `location` MLflow's
`TracingClient.batch_get_traces(trace_ids, location)` needs (mlflow 3.17).

- A trace stored in Unity Catalog names its location itself: `<catalog>.<schema>` (or
  `<catalog>.<schema>.<table_prefix>`), in its trace location and in its v4 id
  `trace:/<location>/<otel trace id>`. That location goes with it on every store.
- On the Databricks tracking store (`databricks`, `databricks://<profile>`) the batch-get endpoint
  is `/api/4.0/mlflow/traces/<location>/batchGet`, and an experiment's own traces whose spans the
  store keeps (tag `mlflow.trace.spansLocation` = TRACKING_STORE) live at the experiment: its id.
  Without one MLflow builds `/traces/None/batchGet`, which the workspace refuses. An experiment
  trace without that tag has its spans in the artifact repository (the trace data file MLflow's
  client uploads, `mlflow.artifactLocation`): `ARTIFACTS`, read the way MLflow's own
  `search_traces(include_spans=True)` reads it (a presigned download), never a batch get.
- Every other store (sqlite and SQL databases, a tracking server) takes None: MLflow then finds
  each trace's spans itself (tracking store, artifact repository or archive); a location there
  would skip that.
"""

from __future__ import annotations

from typing import Any

from .source import effective_tracking_uri

ARTIFACTS = "<artifact repository>"  # not a batch-get location: the trace's data file is downloaded
_SPANS_LOCATION = "mlflow.trace.spansLocation"


def on_databricks_store(tracking_uri: str | None) -> bool:
    """True when `tracking_uri` (or MLflow's default, when None) is a Databricks workspace."""
    from mlflow.utils.uri import is_databricks_uri

    return is_databricks_uri(effective_tracking_uri(tracking_uri))


def location_of(info: Any, *, databricks: bool) -> str | None:
    """The batch-get location of a trace, from its `TraceInfo`."""
    where = info.trace_location
    if getattr(where, "uc_schema", None) is not None:
        return where.uc_schema.schema_location
    if getattr(where, "uc_table_prefix", None) is not None:
        return where.uc_table_prefix.full_table_prefix
    if databricks and getattr(where, "mlflow_experiment", None) is not None:
        if (getattr(info, "tags", None) or {}).get(_SPANS_LOCATION) == "TRACKING_STORE":
            return str(where.mlflow_experiment.experiment_id)
        return ARTIFACTS
    return None


def location_of_id(trace_id: str, experiment_id: str, *, databricks: bool) -> str | None:
    """The batch-get location of a trace known by id only, in experiment `experiment_id` (on
    Databricks an experiment trace whose spans are in the artifact repository is not returned by
    that batch get: callers fall back to `TracingClient.get_trace`, which downloads them)."""
    from mlflow.tracing.utils import parse_trace_id_v4

    location, _ = parse_trace_id_v4(trace_id)
    if location:
        return location
    return str(experiment_id) if databricks else None


def group_by_location(pairs: list[tuple[str, str | None]]) -> dict[str | None, list[str]]:
    """(trace id, location) pairs as ids per location, in the order given."""
    grouped: dict[str | None, list[str]] = {}
    for trace_id, location in pairs:
        grouped.setdefault(location, []).append(trace_id)
    return grouped

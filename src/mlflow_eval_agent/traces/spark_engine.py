"""Which profile engine runs: `sql` / `api` (build_profile, one Python process), `spark` (Spark SQL
aggregates over Unity Catalog tables, spark_profile.py) or `warehouse` (the same statements on a
Databricks SQL warehouse through the Statement Execution API, warehouse.py).

`auto` (the default for `analyze`, the agent's profile tool and the offline planner) takes spark when
the trace location is a Unity Catalog location (`catalog.schema.prefix`) and a SparkSession is active
(the Databricks job's own, or Databricks Connect's); with no SparkSession but a SQL warehouse configured
(`--sql-warehouse-id` / MLFLOW_TRACING_SQL_WAREHOUSE_ID) it takes the warehouse; otherwise what
build_profile chooses (for a UC location, MLflow's API, which reads the tables through the warehouse).
`spark` asked for explicitly falls back to the warehouse the same way when there is no SparkSession;
`spark` or `warehouse` without a UC location, or with neither a SparkSession nor a warehouse, is an
error that says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .api_reader import DEFAULT_SPAN_TRACES
from .trajectory import DEFAULT_SCAN
from .uc_schema import UcLocation, looks_like_uc_location

ENGINES = ("auto", "sql", "api", "spark", "warehouse")
UC_ENGINES = ("spark", "warehouse")


def _prefixed(trace_location: str | None) -> bool:
    """A `catalog.schema.prefix` location: the v2 tables (`<prefix>_otel_*`, VARIANT attributes) this engine reads."""
    return looks_like_uc_location(trace_location) and UcLocation.parse(trace_location or "").prefix is not None


def choose_engine(engine: str, trace_location: str | None, spark: Any = None, sql_warehouse_id: str | None = None) -> str:
    """The engine that will run: "spark", "warehouse", or "sql"/"api"/"auto" handed to build_profile."""
    from .source import InvalidQuery

    engine = (engine or "auto").lower()
    if engine not in ENGINES:
        raise InvalidQuery(f"--engine {engine!r} is not one of {', '.join(ENGINES)}.")
    if engine in UC_ENGINES:
        if not looks_like_uc_location(trace_location):
            raise InvalidQuery(f"--engine {engine} reads Unity Catalog trace tables: pass --trace-location <catalog>.<schema>.<table_prefix>.")
        if not _prefixed(trace_location):
            raise InvalidQuery(f"--engine {engine} reads the <prefix>_otel_* tables of a catalog.schema.table_prefix location; the older "
                               "catalog.schema location (mlflow_experiment_trace_otel_*, MAP attributes) is read with --engine api.")
        if engine == "warehouse":
            if not sql_warehouse_id:
                raise InvalidQuery("--engine warehouse runs the profile on a SQL warehouse: pass --sql-warehouse-id <id> "
                                   "(or set MLFLOW_TRACING_SQL_WAREHOUSE_ID).")
            return "warehouse"
        if spark is None and sql_warehouse_id:
            return "warehouse"  # no Spark here: the same statements on the SQL warehouse
        return "spark"
    if engine == "auto" and _prefixed(trace_location):
        if spark is not None:
            return "spark"
        if sql_warehouse_id:
            return "warehouse"
    return engine


def profile_with_engine(tracking_uri: str | None, experiment: str, filter_string: str | None = None, since_ms: int | None = None,
                        max_traces: int | None = None, *, engine: str = "auto", trace_location: str | None = None,
                        progress: Callable[[int], None] | None = None, trajectory_scan: int = DEFAULT_SCAN,
                        spark: Any = None, sql_warehouse_id: str | None = None, workspace_client: Any = None,
                        span_traces: int | None = DEFAULT_SPAN_TRACES) -> Any:
    """The profile by the chosen engine (see the module doc). `workspace_client` (databricks-sdk) is the
    warehouse engine's connection (the standard Databricks auth chain when None). Raises TraceSourceError subclasses."""
    from .profile import build_profile
    from .source import InvalidQuery

    wanted = (engine or "auto").lower()
    if wanted in ("spark", "auto") and _prefixed(trace_location) and spark is None:
        from .spark_profile import active_spark

        spark = active_spark()
    chosen = choose_engine(wanted, trace_location, spark, sql_warehouse_id)
    if chosen in UC_ENGINES:
        if chosen == "spark" and spark is None:
            raise InvalidQuery("--engine spark needs a SparkSession: run on Databricks (a job or notebook), install databricks-connect "
                               "with a configured workspace, pass --sql-warehouse-id to run the same profile on a SQL warehouse, "
                               "or use --engine api (MLflow's API through a SQL warehouse).")
        from .spark_profile import sql_profile

        if chosen == "spark":
            from .sql_runner import SparkRunner

            runner: Any = SparkRunner(spark)
        else:
            from .warehouse import WarehouseRunner

            runner = WarehouseRunner(sql_warehouse_id or "", workspace_client)
        location = UcLocation.parse(trace_location or "")
        profile = sql_profile(runner, location, experiment if experiment != trace_location else None, filter_string=filter_string,
                              since_ms=since_ms, max_traces=max_traces, trajectory_scan=trajectory_scan)
        if progress:
            progress(profile.trace_count)
        return profile
    path = None
    if chosen == "api":
        path = "api"
    elif chosen == "sql":
        from .source import mlflow_client
        from .sql_reader import sql_store

        if sql_store(mlflow_client(tracking_uri)) is None:
            raise InvalidQuery("--engine sql reads a local SQL tracking store's tables (sqlite, postgres, mysql); this store is not one: use --engine api.")
        path = "sql+search" if filter_string else "sql"
    return build_profile(tracking_uri, experiment, filter_string, since_ms, max_traces, path=path, progress=progress, trajectory_scan=trajectory_scan,
                         span_traces=span_traces)

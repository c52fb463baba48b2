"""The spark engine's statements on a Databricks SQL warehouse, through the Statement Execution API.

Where there is no SparkSession (off-cluster without Databricks Connect), the same profile is computed by
sending spark_profile.py's SQL statements to a SQL warehouse: `POST /api/2.0/sql/statements` with
`warehouse_id`, `wait_timeout`, `on_wait_timeout=CONTINUE`, `disposition=INLINE`, `format=JSON_ARRAY`
(databricks-sdk's `statement_execution.execute_statement`), polling `GET /api/2.0/sql/statements/{id}`
while the statement is PENDING or RUNNING (bounded: `timeout_s`, then the statement is canceled), and
reading every result chunk (`GET .../result/chunks/{n}`, following `next_chunk_index`). JSON_ARRAY
values are strings (NULL as null); they are turned back into Python values by the manifest's column
types (integers, floats, booleans, decimals; arrays, maps and structs from their JSON).

A warehouse keeps nothing between statements, so a stage (sql_runner.py) is a common table expression
written in front of every statement that reads it (and of the stages it reads): nothing is persisted,
and each aggregate re-reads the tables from the warehouse's own caches. Differences from the Spark path:
- `spark.sql.variant.allowDuplicateKeys` cannot be set per statement: a payload with duplicate JSON keys
  parses as non-JSON here unless the warehouse allows them (Python keeps the last key).
- INLINE results are capped by Databricks at 25 MiB per statement; the profile's aggregates are small,
  and the trajectory scan (the most recent traces read whole) is fetched `trajectory_batch` traces at a time.
"""

from __future__ import annotations

import decimal
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from .source import InvalidQuery, TrackingServerError
from .sql_runner import unique_name

ENGINE = "warehouse"
WAIT_TIMEOUT = "30s"  # the API's own wait (0 or 5-50 s) before it answers PENDING/RUNNING
POLL_START_S = 0.5
POLL_MAX_S = 5.0
TIMEOUT_S = 1800.0
TRAJECTORY_BATCH = 100
_INTS = {"BYTE", "SHORT", "INT", "LONG"}
_FLOATS = {"FLOAT", "DOUBLE"}
_JSON_TYPES = {"ARRAY", "MAP", "STRUCT"}


class WarehouseError(TrackingServerError):
    """A statement failed on the warehouse, or its result could not be read; the message says what to do."""


class WarehouseRunner:
    """SqlRunner over a SQL warehouse. `client` is a databricks-sdk WorkspaceClient (built from the
    standard Databricks auth chain when None)."""

    engine = ENGINE

    def __init__(self, warehouse_id: str, client: Any = None, *, timeout_s: float = TIMEOUT_S, trajectory_batch: int = TRAJECTORY_BATCH,
                 sleep: Callable[[float], None] = time.sleep):
        if not warehouse_id:
            raise InvalidQuery("The warehouse engine needs a SQL warehouse: pass --sql-warehouse-id or set MLFLOW_TRACING_SQL_WAREHOUSE_ID.")
        self.warehouse_id = warehouse_id
        self.client = client if client is not None else _workspace_client()
        self.timeout_s = timeout_s
        self.trajectory_batch = trajectory_batch
        self._sleep = sleep
        self._stages: dict[str, str] = {}  # name -> statement, in definition order
        self.statements = 0

    # --- SqlRunner ---------------------------------------------------------------------------------
    def stage(self, name: str, statement: str, persist: bool = True) -> str:
        relation = unique_name(name)
        self._stages[relation] = statement
        return relation

    def materialise(self, name: str) -> None:
        """Nothing to build ahead on a warehouse: a stage is computed inside each statement that reads it."""

    def release(self, name: str) -> None:
        """Nothing is held on a warehouse (a stage's definition stays: later stages may read it)."""

    def close(self) -> None:
        self._stages.clear()

    def rows(self, statement: str) -> list[Mapping[str, Any]]:
        return self._execute(self.with_stages(statement))

    # --- statements --------------------------------------------------------------------------------
    def with_stages(self, statement: str) -> str:
        """`statement` with the stages it reads (and the stages those read) as a WITH clause, in definition order."""
        needed: set[str] = set()
        pending = [statement]
        while pending:
            text = pending.pop()
            for name in self._stages:
                if name not in needed and re.search(rf"\b{re.escape(name)}\b", text):
                    needed.add(name)
                    pending.append(self._stages[name])
        if not needed:
            return statement
        ctes = ", ".join(f"{name} AS ({sql})" for name, sql in self._stages.items() if name in needed)
        return f"WITH {ctes} {statement}"

    def _execute(self, statement: str) -> list[dict[str, Any]]:
        from databricks.sdk.service.sql import Disposition, ExecuteStatementRequestOnWaitTimeout, Format, StatementState

        api = self.client.statement_execution
        self.statements += 1
        response = self._call(lambda: api.execute_statement(
            statement=statement, warehouse_id=self.warehouse_id, wait_timeout=WAIT_TIMEOUT, on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
            disposition=Disposition.INLINE, format=Format.JSON_ARRAY))
        deadline = time.monotonic() + self.timeout_s
        delay = POLL_START_S
        while _state(response) in (StatementState.PENDING, StatementState.RUNNING, None):
            if time.monotonic() >= deadline:
                self._cancel(response.statement_id)
                raise WarehouseError(f"A profile statement ran longer than {self.timeout_s:.0f} s on SQL warehouse {self.warehouse_id} and was "
                                     "canceled: use a larger warehouse, or narrow the profile with --since / --max-traces.")
            if not response.statement_id:
                raise WarehouseError(f"SQL warehouse {self.warehouse_id} answered without a statement id: check the warehouse id and try again.")
            self._sleep(delay)
            delay = min(POLL_MAX_S, delay * 2)
            response = self._call(lambda: api.get_statement(response.statement_id))
        state = _state(response)
        if state != StatementState.SUCCEEDED:
            raise WarehouseError(self._failure(response, state))
        manifest = response.manifest
        if manifest is None or manifest.schema is None:
            raise WarehouseError(f"SQL warehouse {self.warehouse_id} returned a result without its schema: run again, or use --engine api.")
        if manifest.truncated:
            raise WarehouseError(f"SQL warehouse {self.warehouse_id} truncated a profile result (over the 25 MiB inline limit): "
                                 "narrow the profile with --since / --max-traces, or run on Spark (--engine spark).")
        columns = [(c.name, _type_name(c)) for c in (manifest.schema.columns or [])]
        out: list[dict[str, Any]] = []
        chunk = response.result
        seen = 0
        while chunk is not None:
            for values in chunk.data_array or []:
                out.append({name: _value(kind, v) for (name, kind), v in zip(columns, values)})
            nxt = chunk.next_chunk_index
            if nxt is None:
                break
            seen += 1
            if seen > (manifest.total_chunk_count or 0) + 1:
                raise WarehouseError(f"SQL warehouse {self.warehouse_id} kept naming more result chunks than its manifest lists: run again.")
            chunk = self._call(lambda: api.get_statement_result_chunk_n(response.statement_id, nxt))
        if manifest.total_row_count is not None and len(out) != manifest.total_row_count:
            raise WarehouseError(f"SQL warehouse {self.warehouse_id} returned {len(out)} of {manifest.total_row_count} result rows: run again.")
        return out

    def _failure(self, response: Any, state: Any) -> str:
        status = response.status
        error = getattr(status, "error", None)
        message = (getattr(error, "message", None) or "no reason given").strip().rstrip(".")
        name = getattr(state, "value", state)
        if name == "FAILED":
            return (f"SQL warehouse {self.warehouse_id} failed a profile statement ({message}): check that the trace tables exist and "
                    "that you can read them (SELECT on the spans and annotations tables), or use --engine api.")
        if name == "CANCELED":
            return f"A profile statement on SQL warehouse {self.warehouse_id} was canceled ({message}): run the profile again."
        if name == "CLOSED":
            return f"A profile statement's result on SQL warehouse {self.warehouse_id} was closed before it was read: run the profile again."
        return f"SQL warehouse {self.warehouse_id} answered state {name} ({message}): run the profile again, or use --engine api."

    def _cancel(self, statement_id: str | None) -> None:
        if statement_id:
            try:
                self.client.statement_execution.cancel_execution(statement_id)
            except Exception:  # best effort: the timeout error below says what happened
                pass

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (WarehouseError, InvalidQuery):
            raise
        except Exception as exc:  # databricks-sdk's DatabricksError family, or the network
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            code = getattr(exc, "error_code", None) or ""
            if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST") \
                    or type(exc).__name__ in ("NotFound", "PermissionDenied", "Unauthenticated", "InvalidParameterValue", "BadRequest"):
                raise InvalidQuery(f"SQL warehouse {self.warehouse_id} refused the statement ({reason}): check --sql-warehouse-id "
                                   "(MLFLOW_TRACING_SQL_WAREHOUSE_ID), that the warehouse is running and that you may use it.") from None
            raise WarehouseError(f"The Statement Execution API failed ({reason}): check the connection to Databricks and run again.") from None


def _state(response: Any) -> Any:
    return getattr(getattr(response, "status", None), "state", None)


def _type_name(column: Any) -> str:
    kind = getattr(column, "type_name", None)
    kind = getattr(kind, "value", kind)
    if kind:
        return str(kind).upper()
    text = (getattr(column, "type_text", None) or "").upper()
    return re.split(r"[<(]", text, maxsplit=1)[0] or "STRING"


def _value(kind: str, value: Any) -> Any:
    """A JSON_ARRAY value (a string, or None for NULL) as the Python value Spark would collect."""
    if value is None:
        return None
    if kind in _INTS:
        return int(value)
    if kind in _FLOATS:
        return float(value)
    if kind == "DECIMAL":
        return decimal.Decimal(value)
    if kind == "BOOLEAN":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind in _JSON_TYPES:
        return json.loads(value) if isinstance(value, str) else value
    return value


def _workspace_client() -> Any:
    try:
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient()
    except Exception as exc:  # the SDK raises ValueError for every kind of missing configuration
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InvalidQuery(f"The warehouse engine cannot connect to Databricks ({reason}): set DATABRICKS_HOST and DATABRICKS_TOKEN "
                           "(or DATABRICKS_CONFIG_PROFILE), or run on Databricks.") from None

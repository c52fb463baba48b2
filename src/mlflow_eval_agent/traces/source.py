"""Reading every matching trace of an experiment, page by page, as `TraceRecord`s.

Two paths, one result:
- **sql** (a local SQLAlchemy tracking store: sqlite, postgres, mysql): trace rows, span rows and
  assessments are read straight from the store's tables in keyset-paged batches. This skips
  building MLflow entities per span, the cost that makes `search_traces(include_spans=True)`
  slow (~100x). With a filter string, trace infos come from the store's own `search_traces` (so
  filter semantics are MLflow's, exactly) and only spans are read directly ("sql+search").
- **api** (a tracking server, Databricks, anything else): `search_traces(include_spans=False)`
  pages the infos and `TracingClient.batch_get_traces` loads each page's spans.
The readers live in sql_reader.py and api_reader.py behind one interface (`TraceReader`, with
`TraceQuery`, in query.py); this module resolves the experiment, turns MLflow's exceptions into
ours and chooses the path.
Both visit traces newest first (timestamp desc, then trace id), MLflow's default order, so
`max_traces` keeps the same traces on either path; tests check that both give the same profile.
"""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any

from .query import ReadPath, TraceQuery, TraceReader, page_size  # noqa: F401  (TraceQuery, page_size: re-exported)
from .records import TraceRecord

class TraceSourceError(Exception):
    """Traces could not be read. `user_error` is True for a mistake in the request (exit 2),
    False for a server or storage failure (exit 1)."""

    user_error = True


class ExperimentNotFound(TraceSourceError):
    pass


class InvalidQuery(TraceSourceError):
    pass


class TrackingServerError(TraceSourceError):
    user_error = False


class TrackingUriError(TraceSourceError):
    """The tracking URI names a store that cannot be opened (bad scheme, unusable path, ...)."""


@dataclass(frozen=True)
class ExperimentRef:
    experiment_id: str
    name: str


# --- settings-free helpers -----------------------------------------------------------------


def mlflow_client(tracking_uri: str | None) -> Any:
    """A client whose store is open; a URI that cannot be used is a clear TrackingUriError."""
    from mlflow import MlflowClient

    check_reachable(tracking_uri)
    check_sqlite_exists(tracking_uri)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        client._tracking_client.store  # noqa: B018 - opening the store surfaces a bad URI here, not mid-profile
    except Exception as exc:  # MLflow, SQLAlchemy and OS errors all mean: this URI does not work here
        message = _first_line(getattr(exc, "message", None) or str(exc))
        raise TrackingUriError(f"Cannot open the tracking store {redact_uri(tracking_uri) or '(default)'}: {message}") from None
    return client


def check_reachable(tracking_uri: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast (instead of MLflow's minutes of retries) when an HTTP tracking server is down."""
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 - the user's own server
            return
    except urllib.error.HTTPError:
        return  # it answered: reachable (some proxies have no /health)
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingServerError(
            f"Cannot reach the MLflow tracking server at {redact_uri(tracking_uri)} ({reason}). "
            "Start it or pass the right --tracking-uri."
        ) from None


def check_sqlite_exists(tracking_uri: str | None) -> None:
    """Reading traces must not create a database: MLflow would make an empty one at a mistyped path."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if path and path != ":memory:" and not Path(path).exists():
        raise TrackingUriError(f"There is no MLflow database at {path}; check --tracking-uri (sqlite:////absolute/path.db).")


def effective_tracking_uri(tracking_uri: str | None) -> str:
    """The URI given, else the one MLflow resolves by default (MLFLOW_TRACKING_URI or its own default)."""
    if tracking_uri:
        return tracking_uri
    import mlflow

    return mlflow.get_tracking_uri()


def redact_uri(uri: str | None) -> str | None:
    """A tracking URI safe to print: passwords in URLs are masked."""
    if uri is None:
        return None
    return re.sub(r"(://[^:/@]+):[^@/]+@", r"\1:***@", uri)


def is_uc_trace_location(tracking_uri: str | None, text: str) -> bool:
    """True for `<catalog>.<schema>[.<table_prefix>]` on the Databricks store: traces stored in Unity
    Catalog, which MLflow searches and batch-gets at that location (through a SQL warehouse)."""
    from mlflow.utils.uri import is_databricks_uri

    from ..settings import UC_TRACE_LOCATION

    return bool(UC_TRACE_LOCATION.match(text.strip())) and is_databricks_uri(effective_tracking_uri(tracking_uri))


def resolve_experiment(tracking_uri: str | None, experiment: str, client: Any = None) -> ExperimentRef:
    """An experiment by id or by name; ExperimentNotFound with a clear sentence otherwise."""
    from mlflow.exceptions import MlflowException

    experiment = (experiment or "").strip()
    if not experiment:
        raise ExperimentNotFound("No experiment given: pass -e/--experiment-id with an experiment id or name.")
    if is_uc_trace_location(tracking_uri, experiment):
        return ExperimentRef(experiment, experiment)  # read through MLflow at that location (locations=[...])
    client = client or mlflow_client(tracking_uri)
    found = None
    try:
        if experiment.isdigit():
            try:
                found = client.get_experiment(experiment)
            except MlflowException as exc:
                if not _is_not_found(exc):
                    raise
        if found is None:
            found = client.get_experiment_by_name(experiment)
    except MlflowException as exc:
        raise _translate(exc, tracking_uri) from None
    if found is None:
        raise ExperimentNotFound(
            f"Experiment {experiment!r} was not found at {redact_uri(tracking_uri) or 'the default tracking URI'}. "
            "Check the id or name (and --tracking-uri)."
        )
    if getattr(found, "lifecycle_stage", "active") == "deleted":
        raise ExperimentNotFound(f"Experiment {experiment!r} is deleted; restore it or choose another.")
    return ExperimentRef(str(found.experiment_id), str(found.name))


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> int:
    """'7d', '12h', '30m', '2024-05-01', '2024-05-01T10:00:00Z' or epoch ms -> epoch ms."""
    value = (text or "").strip()
    now = now or datetime.now(timezone.utc)
    if match := _RELATIVE.match(value):
        delta = timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
        return int((now - delta).timestamp() * 1000)
    if value.isdigit() and len(value) >= 10:
        return int(value) if len(value) >= 13 else int(value) * 1000
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(
            f"--since {text!r} is not understood: use a duration like 7d, 12h, 30m, a date like 2024-05-01, "
            "an ISO time, or epoch milliseconds."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _translate(exc: Exception, tracking_uri: str | None) -> TraceSourceError:
    """An MLflow exception as one of ours: the user's mistake, or the server's failure."""
    code = str(getattr(exc, "error_code", ""))
    message = _first_line(getattr(exc, "message", None) or str(exc))
    if "SQL warehouse" in message:  # traces in Unity Catalog are read through a SQL warehouse
        return InvalidQuery(
            f"Reading traces stored in Unity Catalog needs a running SQL warehouse: pass --sql-warehouse-id "
            f"(or set MLFLOW_TRACING_SQL_WAREHOUSE_ID) ({message})"
        )
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"):
        return InvalidQuery(f"MLflow rejected the query (check the filter): {message}")
    if _is_not_found(exc):
        return ExperimentNotFound(message)
    return TrackingServerError(f"The tracking store at {redact_uri(tracking_uri) or 'the default URI'} failed: {message}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), str(text))[:400]


# --- the reader ----------------------------------------------------------------------------


class TraceSource:
    """Iterate the records of one query; `path` says how, `truncated` whether max_traces cut it."""

    def __init__(self, tracking_uri: str | None, query: TraceQuery, force_path: ReadPath | None = None, client: Any = None):
        self.tracking_uri = tracking_uri
        self.query = query
        self.client = client or mlflow_client(tracking_uri)
        self.path: ReadPath = force_path or self._choose_path()
        self.truncated = False

    def _choose_path(self) -> ReadPath:
        from .sql_reader import sql_schema_known, sql_store

        if sql_store(self.client) is None or not sql_schema_known():
            return "api"
        return "sql+search" if self.query.filter_string else "sql"

    def records(self) -> Iterator[TraceRecord]:
        from mlflow.exceptions import MlflowException

        limit = self.query.max_traces
        produced = 0
        try:
            for record in self._pages():
                if limit is not None and produced >= limit:
                    self.truncated = True
                    return
                produced += 1
                yield record
        except MlflowException as exc:
            raise _translate(exc, self.tracking_uri) from None
        except TraceSourceError:
            raise
        except (ConnectionError, OSError) as exc:
            raise TrackingServerError(f"Lost the tracking store at {redact_uri(self.tracking_uri)}: {exc}") from None

    def _pages(self) -> Iterator[TraceRecord]:
        yield from self.reader().records()

    def reader(self) -> TraceReader:
        """The engine for this path, behind the one reader interface (query.py)."""
        from .api_reader import ApiReader
        from .sql_reader import SqlReader

        if self.path == "api":
            return ApiReader(self.client, self.query)
        return SqlReader(self.client, self.query, via_search=self.path == "sql+search")


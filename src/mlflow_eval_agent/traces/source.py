"""Reading every matching trace of an experiment, page by page, as `TraceRecord`s.

Two paths, one result:
- **sql** (a local SQLAlchemy tracking store: sqlite, postgres, mysql): trace rows, span rows and
  assessments are read straight from the store's tables in keyset-paged batches. This skips
  building MLflow entities per span, the cost that makes `search_traces(include_spans=True)`
  slow (~100x). With a filter string, trace infos come from the store's own `search_traces` (so
  filter semantics are MLflow's, exactly) and only spans are read directly ("sql+search").
- **api** (a tracking server, Databricks, anything else): `search_traces(include_spans=False)`
  pages the infos and `TracingClient.batch_get_traces` loads each page's spans.
Both visit traces newest first (timestamp desc, then trace id), MLflow's default order, so
`max_traces` keeps the same traces on either path; tests check that both give the same profile.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from .records import TraceRecord, assessment_from_row, record_from_trace
from .spans import stored_span_row

ReadPath = Literal["sql", "sql+search", "api"]
SQL_PAGE = 500
API_PAGE = 200
BATCH_GET = 10
API_THREADS = 4
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
TRACKING_STORE = "TRACKING_STORE"


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


@dataclass(frozen=True)
class TraceQuery:
    experiment_id: str
    filter_string: str | None = None
    since_ms: int | None = None
    max_traces: int | None = None

    def effective_filter(self) -> str | None:
        """The filter string sent to MLflow, with `since` folded in."""
        parts = [p for p in (self.filter_string and self.filter_string.strip(),) if p]
        if self.since_ms is not None:
            parts.append(f"trace.timestamp_ms >= {int(self.since_ms)}")
        return " AND ".join(parts) or None


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


def redact_uri(uri: str | None) -> str | None:
    """A tracking URI safe to print: passwords in URLs are masked."""
    if uri is None:
        return None
    return re.sub(r"(://[^:/@]+):[^@/]+@", r"\1:***@", uri)


def resolve_experiment(tracking_uri: str | None, experiment: str, client: Any = None) -> ExperimentRef:
    """An experiment by id or by name; ExperimentNotFound with a clear sentence otherwise."""
    from mlflow.exceptions import MlflowException

    experiment = (experiment or "").strip()
    if not experiment:
        raise ExperimentNotFound("No experiment given: pass -e/--experiment-id with an experiment id or name.")
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
        if _sql_store(self.client) is None or not _sql_schema_known():
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
        if self.path == "sql":
            yield from SqlReader(self.client, self.query).records()
        elif self.path == "sql+search":
            yield from SqlReader(self.client, self.query).records_via_search()
        else:
            yield from api_records(self.client, self.query)


def _sql_store(client: Any) -> Any:
    """The client's SQLAlchemy store, or None for any other kind of store."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if isinstance(store, SqlAlchemyStore) else None


SQL_COLUMNS = {
    "SqlTraceInfo": ("request_id", "experiment_id", "status", "timestamp_ms", "execution_time_ms", "session_id",
                     "input_tokens", "output_tokens", "total_tokens"),
    "SqlSpan": ("trace_id", "span_id", "parent_span_id", "name", "type", "status", "start_time_unix_nano",
                "end_time_unix_nano", "model_name", "content"),
    "SqlTraceTag": ("request_id", "key", "value"),
    "SqlAssessments": ("trace_id", "name", "assessment_type", "value", "error", "source_type", "valid", "created_timestamp"),
}


def _sql_schema_known() -> bool:
    """The fast path reads MLflow's tables by column name; if a future MLflow renamed one, the API
    path (slower, always right) is used instead of failing."""
    from mlflow.store.tracking.dbmodels import models

    for model_name, columns in SQL_COLUMNS.items():
        table = getattr(getattr(models, model_name, None), "__table__", None)
        if table is None or any(c not in table.c for c in columns):
            return False
    return True


def _page_size(query: TraceQuery, default: int) -> int:
    # One extra trace beyond max_traces tells whether the limit cut anything.
    return default if query.max_traces is None else max(1, min(default, query.max_traces + 1))


def api_records(client: Any, query: TraceQuery) -> Iterator[TraceRecord]:
    """The API path: pages of trace infos, then each page's spans through batch gets."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracing.client import TracingClient

    tracing = TracingClient(client.tracking_uri)
    token = None
    size = _page_size(query, API_PAGE)
    with ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="profile-batch-get") as pool:
        while True:
            page = client.search_traces(
                locations=[query.experiment_id], filter_string=query.effective_filter(),
                max_results=size, page_token=token, include_spans=False,
            )
            ids = [t.info.trace_id for t in page]
            # Batch-get endpoints take at most 10 ids per call (Databricks among them): chunk, in parallel.
            chunks = [ids[i : i + BATCH_GET] for i in range(0, len(ids), BATCH_GET)]
            loaded = {t.info.trace_id: t for batch in pool.map(tracing.batch_get_traces, chunks) for t in batch}
            for trace in page:
                record = record_from_trace(trace)
                if (full := loaded.get(trace.info.trace_id)) is not None:
                    record.spans = [s.to_dict() for s in full.data.spans]
                yield record  # a trace whose spans could not be loaded counts as one without spans
            token = page.token
            if not token or not ids:
                return


class SqlReader:
    """The local fast path: keyset-paged reads of the store's own tables."""

    def __init__(self, client: Any, query: TraceQuery):
        from mlflow.store.tracking.dbmodels import models

        self.client = client
        self.store = _sql_store(client)
        self.query = query
        self.m = models

    def records(self) -> Iterator[TraceRecord]:
        return read_ahead(self._pages())

    def _pages(self) -> Iterator[list[TraceRecord]]:
        import sqlalchemy as sa

        ti = self.m.SqlTraceInfo.__table__
        columns = [ti.c.request_id, ti.c.status, ti.c.timestamp_ms, ti.c.execution_time_ms, ti.c.session_id,
                   ti.c.input_tokens, ti.c.output_tokens, ti.c.total_tokens]
        size = _page_size(self.query, SQL_PAGE)
        after: tuple[int, str] | None = None
        while True:
            stmt = sa.select(*columns).where(ti.c.experiment_id == int(self.query.experiment_id))
            if self.query.since_ms is not None:
                stmt = stmt.where(ti.c.timestamp_ms >= int(self.query.since_ms))
            if after is not None:
                ts, rid = after
                stmt = stmt.where(sa.or_(ti.c.timestamp_ms < ts, sa.and_(ti.c.timestamp_ms == ts, ti.c.request_id > rid)))
            stmt = stmt.order_by(ti.c.timestamp_ms.desc(), ti.c.request_id.asc()).limit(size)
            with self.store.engine.connect() as conn:
                rows = conn.execute(stmt).fetchall()
            if not rows:
                return
            records = [
                TraceRecord(trace_id=rid, state=state, request_time_ms=ts, execution_ms=ms, session_id=session, tokens=_tokens(tin, tout, ttotal))
                for rid, state, ts, ms, session, tin, tout, ttotal in rows
            ]
            self._attach(records)
            yield records
            after = (rows[-1][2], rows[-1][0])
            if len(rows) < size:
                return

    def records_via_search(self) -> Iterator[TraceRecord]:
        """With a filter: MLflow's own search picks the traces, the spans are read directly."""
        token = None
        size = _page_size(self.query, SQL_PAGE)
        while True:
            infos, token = self.store.search_traces(
                locations=[self.query.experiment_id],
                filter_string=self.query.effective_filter(),
                max_results=size,
                page_token=token,
            )
            from mlflow.entities import Trace, TraceData

            records = [record_from_trace(Trace(info, TraceData(spans=[]))) for info in infos]
            self._attach(records, with_assessments=False)
            yield from records
            if not token or not infos:
                return

    def _attach(self, records: list[TraceRecord], with_assessments: bool = True) -> None:
        """Fill spans (and assessments) for one page of records, a few queries per page."""
        import sqlalchemy as sa

        by_id = {r.trace_id: r for r in records}
        ids = sa.bindparam("ids", expanding=True)
        spans = self.m.SqlSpan.__table__
        tags = self.m.SqlTraceTag.__table__
        with self.store.engine.connect() as conn:
            elsewhere = [
                row.request_id
                for row in conn.execute(
                    sa.select(tags.c.request_id, tags.c.value).where(tags.c.request_id.in_(ids), tags.c.key == SPANS_LOCATION_TAG),
                    {"ids": list(by_id)},
                )
                if row.value != TRACKING_STORE
            ]
            for record in records:
                record.rows = []
            columns = (spans.c.trace_id, spans.c.span_id, spans.c.parent_span_id, spans.c.name, spans.c.type, spans.c.status,
                       spans.c.start_time_unix_nano, spans.c.end_time_unix_nano, spans.c.model_name,
                       _content_if_needed(spans), sa.func.length(spans.c.content))
            result = conn.execute(sa.select(*columns).where(spans.c.trace_id.in_(ids)), {"ids": list(by_id)})
            for trace_id, span_id, parent, name, span_type, status, start, end, model, content, size in result.fetchall():
                if size:  # an empty payload was cleared by archival: MLflow skips it too
                    by_id[trace_id].rows.append(stored_span_row(span_id, parent, name, span_type, status, start, end, model, content, size))
            if with_assessments:
                a = self.m.SqlAssessments.__table__
                stmt = sa.select(a.c.trace_id, a.c.name, a.c.assessment_type, a.c.value, a.c.error, a.c.source_type, a.c.valid)
                for row in conn.execute(stmt.where(a.c.trace_id.in_(ids)).order_by(a.c.created_timestamp), {"ids": list(by_id)}):
                    if row.valid is not False:
                        by_id[row.trace_id].assessments.append(
                            assessment_from_row(row.name, row.assessment_type, row.source_type, row.value, row.error)
                        )
        for trace_id in elsewhere:  # spans kept in artifacts or an archive: let MLflow fetch them
            by_id[trace_id].rows = None
            by_id[trace_id].spans = _spans_via_api(self.client, trace_id)


def _content_if_needed(spans: Any) -> Any:
    """The stored JSON only for spans the profile reads: roots, retrievers, failed spans, spans of
    unknown type, model calls without a model column, and any big enough to hold a huge payload.
    Other spans (most tool and model calls) are profiled from their columns alone."""
    import sqlalchemy as sa

    from .spans import HUGE_PAYLOAD_CHARS

    needed = sa.or_(
        spans.c.parent_span_id.is_(None),
        spans.c.type.is_(None),
        spans.c.type.in_(["UNKNOWN", "RETRIEVER"]),
        spans.c.status == "ERROR",
        sa.and_(spans.c.type.in_(["LLM", "CHAT_MODEL"]), spans.c.model_name.is_(None)),
        sa.func.length(spans.c.content) > HUGE_PAYLOAD_CHARS,
    )
    return sa.case((needed, spans.c.content), else_=sa.null())


def _tokens(input_tokens: int | None, output_tokens: int | None, total_tokens: int | None) -> dict[str, int] | None:
    """The token columns as MLflow's TraceInfo.token_usage shows them (absent keys left out)."""
    usage = {}
    if input_tokens is not None:
        usage["input_tokens"] = int(input_tokens)
    if output_tokens is not None:
        usage["output_tokens"] = int(output_tokens)
    if total_tokens is not None:
        usage["total_tokens"] = int(total_tokens)
    return usage or None


def read_ahead(pages: Iterator[list[TraceRecord]]) -> Iterator[TraceRecord]:
    """Records from `pages`, fetching the next page in a background thread while the caller works
    on the current one (the database's C code runs without the GIL meanwhile)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-read-ahead") as pool:
        pending = pool.submit(next, pages, None)
        try:
            while (page := pending.result()) is not None:
                pending = pool.submit(next, pages, None)
                yield from page
        finally:
            pending.cancel()


def _spans_via_api(client: Any, trace_id: str) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    try:
        trace = client.get_trace(trace_id)
    except (MlflowException, OSError):
        return []
    return [s.to_dict() for s in trace.data.spans] if trace and trace.data else []

"""The API reading path (tracking servers, Databricks, any non-SQL store): pages of trace infos,
then each page's spans through batch gets, each sent to the trace's location (locations.py).

Serving spans is most of what a remote server does for a profile (at 20,000 traces over `mlflow
server`, ~40 s of a 76 s read), so with `TraceQuery.span_traces` set only the newest that many
traces' spans are read: the rest come as trace infos in larger pages and count at trace level
(state, latency, tokens, sessions, assessments) without their spans (TraceRecord.spans_read).
The trajectory scan reads the newest traces too, so it finds them in the memo."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .locations import ARTIFACTS, group_by_location, location_of, on_databricks_store
from .records import TraceRecord, record_from_trace
from .query import TraceQuery, page_size

API_PAGE = 200
INFO_PAGE = 500  # pages of trace infos alone, off Databricks (whose page cap is not documented: API_PAGE there)
BATCH_GET = 10  # the Databricks endpoints take at most 10 ids per batch get
STORE_BATCH = 100  # a tracking server's (or SQL store's) own batch get takes more: fewer round trips
API_THREADS = 2  # measured over HTTP on mlflow server: more threads only queue on the server (and broke connections)
# The API path reads the spans of the newest this many traces (analyze --span-traces; 0: all): at
# 20,000 traces over HTTP, reading every span took 76 s of which ~40 s was the server serving them.
DEFAULT_SPAN_TRACES = 2000
MEMO_TRACES = 1000  # the most recent traces whose spans one pass keeps for the trajectory scan (trajectory.DEFAULT_SCAN)


class SpanMemo:
    """The spans of the most recent traces a profile pass just loaded, kept for the trajectory scan
    that follows it (trajectory.scan reads the same newest traces whole through `with_spans`): over
    HTTP that second read was ~40% of the API path. Only finished traces are kept (their spans no
    longer change); the scan takes each entry once and always pairs it with the trace info its own
    search returned; a new pass replaces the entries; at most MEMO_TRACES traces are held."""

    def __init__(self, limit: int = MEMO_TRACES):
        import threading

        self.limit = limit
        self._data: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def start(self, tracking_uri: str | None) -> None:
        """A new pass: whatever an earlier pass kept (of any store) is dropped."""
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._data = {}

    def keep(self, tracking_uri: str | None, trace: Any) -> None:
        if _state(trace.info) == "IN_PROGRESS":
            return
        with self._lock:
            if len(self._data) < self.limit:
                self._data[(str(tracking_uri), trace.info.trace_id)] = trace.data

    def take(self, tracking_uri: str | None, trace_id: str) -> Any | None:
        with self._lock:
            return self._data.pop((str(tracking_uri), trace_id), None)


def _state(info: Any) -> str:
    state = getattr(info, "state", None)
    return str(getattr(state, "value", state) or "")


MEMO = SpanMemo()


class ApiReader:
    """The API path: pages of trace infos, then each page's spans through batch gets."""

    def __init__(self, client: Any, query: TraceQuery):
        self.client = client
        self.query = query

    def records(self) -> Iterator[TraceRecord]:
        return api_records(self.client, self.query)


def api_records(client: Any, query: TraceQuery) -> Iterator[TraceRecord]:
    """Every matching trace, newest first. The next page of trace infos is asked for as soon as
    the page before it has arrived, so the server searches while this page's spans are fetched and
    its records are profiled."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracing.client import TracingClient

    tracing = TracingClient(client.tracking_uri)
    databricks = on_databricks_store(client.tracking_uri)
    spans_left = query.span_traces  # None: every trace's spans are read
    MEMO.start(client.tracking_uri)

    def size_for(left: int | None) -> int:
        # Pages end where the span budget does; once it is spent, infos alone come in larger pages.
        return page_size(query, (API_PAGE if databricks else INFO_PAGE) if left == 0 else min(API_PAGE, left or API_PAGE))

    def search(token: str | None, size: int) -> Any:
        return client.search_traces(locations=[query.experiment_id], filter_string=query.effective_filter(),
                                    max_results=size, page_token=token, include_spans=False)

    with ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="profile-batch-get") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-search") as searcher:
        pending = searcher.submit(search, None, size_for(spans_left))
        try:
            while pending is not None:
                page = pending.result()
                wanted = list(page) if spans_left is None else list(page)[:spans_left]
                if spans_left is not None:
                    spans_left -= len(wanted)
                pending = searcher.submit(search, page.token, size_for(spans_left)) if page.token and len(page) else None
                loaded = batch_get(tracing, [t.info for t in wanted], databricks=databricks, mapper=pool.map) if wanted else {}
                read = {t.info.trace_id for t in wanted}
                for trace in page:
                    record = record_from_trace(trace)
                    if trace.info.trace_id not in read:
                        record.spans_read = False
                    elif (full := loaded.get(trace.info.trace_id)) is not None:
                        record.spans = [s.to_dict() for s in full.data.spans]
                        MEMO.keep(client.tracking_uri, full)
                    yield record  # a trace whose spans could not be loaded counts as one without spans
        finally:
            if pending is not None:
                pending.cancel()  # the reader stopped early (max_traces, an error): the page asked ahead is not needed


def batch_get(tracing: Any, infos: list[Any], *, databricks: bool, mapper: Callable[..., Iterable[Any]] = map) -> dict[str, Any]:
    """Full traces (spans included) for these trace infos, by trace id: one batch get per 10 ids of
    one location (the endpoints take at most 10, Databricks among them), through `mapper`; traces
    whose spans are in the artifact repository (locations.ARTIFACTS) are downloaded one each."""
    by_id = {i.trace_id: i for i in infos}
    grouped = group_by_location([(i.trace_id, _route(i, databricks)) for i in infos])
    downloads = grouped.pop(ARTIFACTS, [])
    in_store = grouped.pop(IN_STORE, [])
    chunks = [(where, ids[i : i + BATCH_GET]) for where, ids in grouped.items() for i in range(0, len(ids), BATCH_GET)]
    jobs = [("batch", chunk) for chunk in chunks] + [("store", in_store[i : i + STORE_BATCH]) for i in range(0, len(in_store), STORE_BATCH)]
    jobs += [("download", by_id[t]) for t in downloads]

    def run(job: tuple[str, Any]) -> list[Any]:
        kind, what = job
        if kind == "batch":
            return tracing.batch_get_traces(what[1], what[0])
        if kind == "store":  # spans kept by the store itself: its batch get, as MLflow's search_traces does
            return tracing.store.batch_get_traces(what, None)
        found = from_artifacts(tracing, what)
        return [found] if found is not None else []

    return {t.info.trace_id: t for batch in mapper(run, jobs) for t in batch}


IN_STORE = "<tracking store>"  # off Databricks: spans the store keeps, read by its own batch get
_SPANS_LOCATION = "mlflow.trace.spansLocation"


def _route(info: Any, databricks: bool) -> str | None:
    """Where this trace's spans are read: a batch-get location (locations.py), ARTIFACTS, or
    IN_STORE for a store other than Databricks that keeps them itself (no trace-info round trip:
    the search already returned the infos); None lets MLflow decide (archived traces)."""
    where = location_of(info, databricks=databricks)
    if where is None and not databricks:
        tag = (getattr(info, "tags", None) or {}).get(_SPANS_LOCATION)
        if tag == "TRACKING_STORE":
            return IN_STORE
        if tag in (None, "ARTIFACT_REPO"):
            return ARTIFACTS
    return where


def from_artifacts(tracing: Any, info: Any) -> Any | None:
    """A trace whose spans are in the artifact repository, read as MLflow's own
    `search_traces(include_spans=True)` reads it (its trace info is known; a presigned download on
    Databricks); None when its data cannot be read."""
    download = getattr(tracing, "_download_spans_from_artifact_repo", None)
    if download is not None:
        return download(info)
    try:  # a later MLflow without that helper: the public single-trace read
        return tracing.get_trace(info.trace_id)
    except Exception:
        return None


def with_spans(tracking_uri: str | None, page: Iterable[Any]) -> list[Any]:
    """The traces of a `search_traces(include_spans=False)` page with their spans loaded (each from
    its location); a trace whose spans could not be loaded is kept without them."""
    from mlflow.tracing.client import TracingClient

    from mlflow.entities import Trace

    page = list(page)
    kept = {t.info.trace_id: data for t in page if (data := MEMO.take(tracking_uri, t.info.trace_id)) is not None}
    missing = [t.info for t in page if t.info.trace_id not in kept]
    loaded = batch_get(TracingClient(tracking_uri), missing, databricks=on_databricks_store(tracking_uri)) if missing else {}
    return [Trace(t.info, kept[t.info.trace_id]) if t.info.trace_id in kept else loaded.get(t.info.trace_id, t) for t in page]

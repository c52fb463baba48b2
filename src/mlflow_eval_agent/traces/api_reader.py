"""The API reading path (tracking servers, Databricks, any non-SQL store): pages of trace infos,
then each page's spans through batch gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .records import TraceRecord, record_from_trace
from .source import TraceQuery, page_size

API_PAGE = 200
BATCH_GET = 10
API_THREADS = 4


def api_records(client: Any, query: TraceQuery) -> Iterator[TraceRecord]:
    """The API path: pages of trace infos, then each page's spans through batch gets."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracing.client import TracingClient

    tracing = TracingClient(client.tracking_uri)
    token = None
    size = page_size(query, API_PAGE)
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

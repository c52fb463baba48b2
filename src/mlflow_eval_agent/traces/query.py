"""What to read, and the one interface every reading engine implements.

`TraceQuery` says which traces (experiment, filter, since, cap); a reader turns one into
`TraceRecord`s, newest first (timestamp desc, then trace id, MLflow's default order), so
`max_traces` keeps the same traces whichever engine reads them. Readers: `SqlReader`
(sql_reader.py, a local SQLAlchemy store's own tables) and `ApiReader` (api_reader.py, any
tracking server or Databricks). `TraceSource` (source.py) chooses between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from .records import TraceRecord

ReadPath = Literal["sql", "sql+search", "api"]


@dataclass(frozen=True)
class TraceQuery:
    experiment_id: str
    filter_string: str | None = None
    since_ms: int | None = None
    max_traces: int | None = None
    # The API path reads the spans of only this many traces, the newest (None: every trace's); the
    # rest count at trace level only (TraceRecord.spans_read). The SQL path reads every span anyway.
    span_traces: int | None = None

    def effective_filter(self) -> str | None:
        """The filter string sent to MLflow, with `since` folded in."""
        parts = [p for p in (self.filter_string and self.filter_string.strip(),) if p]
        if self.since_ms is not None:
            parts.append(f"trace.timestamp_ms >= {int(self.since_ms)}")
        return " AND ".join(parts) or None


class TraceReader(Protocol):
    """One engine's reading of one query: every matching trace once, newest first."""

    query: TraceQuery

    def records(self) -> Iterator[TraceRecord]: ...


def page_size(query: TraceQuery, default: int) -> int:
    # One extra trace beyond max_traces tells whether the limit cut anything.
    return default if query.max_traces is None else max(1, min(default, query.max_traces + 1))

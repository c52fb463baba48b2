"""Is the tracking store there? One short request, so an outage is told apart from a task's failure.

The loop asks before each session and after a session that did not complete its task: when the
store is unreachable, times out or answers 5xx, the session's failure is the store's, not the
task's, so the task is put back uncharged and the loop waits (bounded) instead of burning attempts.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable

from .traces.source import check_reachable, check_sqlite_exists, effective_tracking_uri, redact_uri

PROBE_TIMEOUT_S = 5.0


def probe_once(tracking_uri: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the store answers; otherwise why it does not (one clause, URI redacted)."""
    uri = effective_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):  # noqa: S310 - the user's own server
                return None
        except urllib.error.HTTPError as exc:
            return f"{redact_uri(uri)} answered HTTP {exc.code}" if exc.code >= 500 else None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
            return f"{redact_uri(uri)} is unreachable: {getattr(exc, 'reason', exc)}"
    if uri.startswith("sqlite:///"):
        try:
            check_sqlite_exists(uri)
        except Exception as exc:  # noqa: BLE001 - any reason is the answer
            return str(exc)
    return None  # databricks and file stores: their first real request tells


def tracking_store_probe(tracking_uri: str | None, timeout_s: float = PROBE_TIMEOUT_S) -> Callable[[], str | None]:
    return lambda: probe_once(tracking_uri, timeout_s)


def has_traces(tracking_uri: str | None, experiment_id: str) -> bool | None:
    """Whether the experiment holds at least one trace; None when that cannot be told quickly."""
    from mlflow import MlflowClient

    try:
        found = MlflowClient(tracking_uri=tracking_uri).search_traces(locations=[experiment_id], max_results=1, include_spans=False)
    except Exception:  # noqa: BLE001 - the run's own reads report store problems with their own sentences
        return None
    return len(found) > 0


__all__ = ["check_reachable", "has_traces", "probe_once", "tracking_store_probe"]

"""report.html: a session's results as one self-contained page, in the session folder and attached to
the latest evaluation run (`publish_report`). Built from state files only, so it can be rebuilt at
any time; written through the session store (atomic, redacted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..store import CorruptStateError, SessionStore
from .page import Links, ReportInput, render

REPORT_FILE = "report.html"
LOCAL_UI = "http://127.0.0.1:5000"


@dataclass
class Published:
    path: Path | None
    run_id: str | None = None  # the evaluation run it was attached to
    notes: list[str] = field(default_factory=list)


def ui_links(tracking_uri: str, experiment_id: str) -> Links:
    """Links into the MLflow UI that shows this store: the server itself, or `mlflow ui` on a local store."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host  # never a user or password
        return Links(urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), experiment_id)
    if tracking_uri.startswith("databricks"):
        return Links(None, experiment_id, note="Trace and run ids are shown without links: open them from the experiment in your Databricks workspace.")
    return Links(LOCAL_UI, experiment_id, note=f"Links open the MLflow UI of this store: uv run mlflow ui --backend-store-uri {tracking_uri} (port 5000).")


def build_input(store: SessionStore, tracking_uri: str) -> ReportInput:
    from ..suite.spec import SPEC_FILE, SuiteSpec
    from ..suite.validate import RUN_RESULTS_FILE, load_report
    from ..traces.profile_model import TraceProfile
    from ..traces.source import redact_uri

    profile = _read(store, "state/profile.json", TraceProfile)
    spec = _read(store, SPEC_FILE, SuiteSpec)
    try:
        validation = load_report(store)
    except CorruptStateError:
        validation = None
    try:
        results = store.read_json(RUN_RESULTS_FILE)
    except CorruptStateError:
        results = None
    experiment_id = (spec.experiment_id if spec else None) or (profile.experiment_id if profile else None) or "0"
    return ReportInput(
        session_id=store.session_id, tracking_uri=redact_uri(tracking_uri) or "", links=ui_links(tracking_uri, experiment_id),
        profile=profile, spec=spec, validation=validation, results=results if isinstance(results, dict) else None,
    )


def write_report(store: SessionStore, tracking_uri: str) -> Path:
    """Write `<session>/report.html` from the session's state; returns its path."""
    return store.write_text(REPORT_FILE, render(build_input(store, tracking_uri)))


def publish_report(store: SessionStore, tracking_uri: str) -> Published:
    """Write report.html and attach it to the latest evaluation run (when the suite has run)."""
    from ..suite.mlflow_run import log_report
    from ..suite.validate import load_report

    path = write_report(store, tracking_uri)
    try:
        validation = load_report(store)
    except CorruptStateError:
        validation = None
    run_id = validation.latest.run_id if validation and validation.latest.ok else None
    if not run_id:
        return Published(path)
    problem = log_report(tracking_uri, run_id, path)
    return Published(path, None if problem else run_id, [problem] if problem else [])


def _read(store: SessionStore, rel: str, model: type):  # noqa: ANN202
    try:
        return store.read_model(rel, model)
    except CorruptStateError:
        return None


__all__ = ["REPORT_FILE", "Published", "publish_report", "ui_links", "write_report"]

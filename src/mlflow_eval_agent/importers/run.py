"""Import a stream of parsed records into one experiment: skip what is already there, write the
rest, attach labels when asked, then check every written trace really reached the store.

Idempotence: each trace carries its conversation's content hash as metadata; before writing,
the experiment's hashes for this format are read once (metadata only, no spans), and any record
whose hash is present (or repeats earlier in the same source) is skipped. With labels, a skipped
conversation whose trace has no labels from this importer gets them, so "import, later import
again --with-labels" ends with labelled traces and no duplicates.

Trace export must be synchronous (MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false, set by the CLI and the
benchmark before MLflow starts tracing): the asynchronous queue drops traces under bulk writes.
As a second guard the runner flushes that queue every few traces, and afterwards counts the
written hashes in the store: a missing trace is reported, never silently lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from pydantic import BaseModel, Field

from .labels import attach_labels, has_import_labels, stored_step_spans
from .model import META_CONTENT_HASH, META_FORMAT, Conversation, Malformed, Notice, Record
from .writer import GAP_NS, write_trace

FLUSH_EVERY = 10
PAGE_SIZE = 500


class Problem(BaseModel):
    where: str
    reason: str


class ImportReport(BaseModel):
    format: str
    experiment_id: str
    imported: int = 0
    skipped: int = 0
    labels_written: int = 0
    labelled_existing: int = 0
    malformed: list[Problem] = Field(default_factory=list)
    notices: list[Problem] = Field(default_factory=list)
    # Source ids of conversations written but not found in the store afterwards.
    lost: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.malformed and not self.lost


def import_records(
    records: Iterable[Record],
    fmt: str,
    experiment_id: str,
    with_labels: bool = False,
    clock: Callable[[], int] = time.time_ns,
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Write every new Conversation of `records` as a trace in `experiment_id`."""
    report = ImportReport(format=fmt, experiment_id=experiment_id)
    existing = existing_imports(experiment_id, fmt)
    written: dict[str, str] = {}
    last_start = 0
    for record in records:
        if isinstance(record, Malformed):
            report.malformed.append(Problem(where=record.where, reason=record.reason))
            continue
        if isinstance(record, Notice):
            report.notices.append(Problem(where=record.where, reason=record.message))
            continue
        conv = record if with_labels else record.without_labels()
        content_hash = conv.content_hash()
        if content_hash in existing or content_hash in written:
            report.skipped += 1
            if with_labels and content_hash in existing:
                _label_existing(existing[content_hash], conv, report)
            continue
        last_start = max(clock(), last_start + GAP_NS)
        trace = write_trace(conv, experiment_id, last_start, content_hash)
        written[content_hash] = conv.source_id
        report.imported += 1
        if with_labels and conv.labels and not conv.labels.empty:
            report.labels_written += attach_labels(trace.trace_id, conv.labels, fmt, trace.spans, trace.root_span_id)
        if report.imported % FLUSH_EVERY == 0:
            mlflow.flush_trace_async_logging()
            if on_progress:
                on_progress(report)
    mlflow.flush_trace_async_logging()
    present = existing_imports(experiment_id, fmt) if written else {}
    report.lost = [source for digest, source in written.items() if digest not in present]
    return report


def _label_existing(trace_id: str, conv: Conversation, report: ImportReport) -> None:
    if conv.labels is None or conv.labels.empty:
        return
    trace = MlflowClient().get_trace(trace_id)
    if has_import_labels(trace, conv.format):
        return
    spans, root_span_id = stored_step_spans(trace)
    report.labels_written += attach_labels(trace_id, conv.labels, conv.format, spans, root_span_id)
    report.labelled_existing += 1


def existing_imports(experiment_id: str, fmt: str) -> dict[str, str]:
    """{content hash: trace id} of the traces this importer already wrote for `fmt` (metadata only)."""
    client = MlflowClient()
    found: dict[str, str] = {}
    token = None
    while True:
        page = client.search_traces(
            locations=[experiment_id],
            filter_string=f"metadata.`{META_FORMAT}` = '{fmt}'",
            max_results=PAGE_SIZE,
            page_token=token,
            include_spans=False,
        )
        for trace in page:
            digest = trace.info.trace_metadata.get(META_CONTENT_HASH)
            if digest:
                found[digest] = trace.info.trace_id
        token = page.token
        if not token:
            return found


def iter_source(reader: Callable[..., Iterator[Record]], path: Path, with_labels: bool, labels_path: Path | None) -> Iterator[Record]:
    """The format's reader, with labels only requested when the user asked for them."""
    return reader(path, with_labels=with_labels, labels_path=labels_path if with_labels else None)


class ExperimentNotFound(Exception):
    """`-e` named a numeric experiment id that does not exist; exit code 2."""


def resolve_experiment(name_or_id: str) -> tuple[str, bool]:
    """The experiment id for `name_or_id`, creating an experiment by that name when none exists.

    Returns (experiment id, created). A number is tried as an id, then as a name; an unknown
    number is an error rather than a new experiment called "123", which would hide a typo.
    """
    client = MlflowClient()
    value = name_or_id.strip()
    if value.isdigit():
        try:
            return client.get_experiment(value).experiment_id, False
        except mlflow.exceptions.MlflowException:
            pass
    existing = client.get_experiment_by_name(value)
    if existing is not None:
        return existing.experiment_id, False
    if value.isdigit():
        raise ExperimentNotFound(f"No experiment has id or name {value}; pass an existing id, or a name to create one.")
    return client.create_experiment(value), True

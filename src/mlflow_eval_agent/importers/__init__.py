"""Transcripts → MLflow traces: the format registry and the one entry point `import_path`.

Every format parses into `model.Conversation` (see model.py); `writer.py` turns one into a trace,
`labels.py` adds human labels as assessments, `run.py` handles skipping, labels and verification.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import magentic_one, openai_chat, tau_bench, who_and_when
from .model import Conversation, Malformed, Notice, Record, SourceError
from .run import ExperimentNotFound, ImportReport, Problem, import_records, iter_source, resolve_experiment


@dataclass(frozen=True)
class ImportFormat:
    name: str
    reader: Callable[..., Iterator[Record]]
    summary: str


FORMATS: dict[str, ImportFormat] = {
    f.name: f
    for f in (
        ImportFormat(openai_chat.FORMAT, openai_chat.read, "JSON Lines, one conversation of OpenAI chat messages per line"),
        ImportFormat(tau_bench.FORMAT, tau_bench.read, "a tau-bench results file (JSON list of runs)"),
        ImportFormat(who_and_when.FORMAT, who_and_when.read, "a folder of Who&When run files (or one file)"),
        ImportFormat(magentic_one.FORMAT, magentic_one.read, "a folder of Magentic-One logs, <trajectory_id>.json (or one log)"),
    )
}


def read_source(fmt: str, path: Path, with_labels: bool = False, labels_path: Path | None = None) -> Iterator[Record]:
    """The records of `path` in format `fmt` (labels only when asked)."""
    if fmt not in FORMATS:
        raise SourceError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if not path.exists():
        raise SourceError(f"{path} does not exist.")
    if labels_path is not None and not labels_path.is_file():
        raise SourceError(f"The labels file {labels_path} does not exist.")
    return iter_source(FORMATS[fmt].reader, path, with_labels, labels_path)


def import_path(
    fmt: str,
    path: Path,
    experiment_id: str,
    with_labels: bool = False,
    labels_path: Path | None = None,
    on_progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import every conversation of `path` into `experiment_id` (see run.import_records)."""
    records = read_source(fmt, path, with_labels, labels_path)
    return import_records(records, fmt, experiment_id, with_labels=with_labels, on_progress=on_progress)


__all__ = [
    "FORMATS",
    "Conversation",
    "ExperimentNotFound",
    "ImportFormat",
    "ImportReport",
    "Malformed",
    "Notice",
    "Problem",
    "SourceError",
    "import_path",
    "import_records",
    "read_source",
    "resolve_experiment",
]

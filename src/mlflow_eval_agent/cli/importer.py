"""`import`: turn chat transcripts into MLflow traces, one per conversation.

Exit codes: 0 every record imported or already there; 1 some records were malformed (the rest
were imported) or a written trace did not reach the store, or the tracking server failed;
2 usage or configuration mistakes (unknown format, missing path, unknown experiment id).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError, user_errors
from .root import ROOT_FLAGS, settings_from

FORMAT_NAMES = ("openai-chat", "tau-bench", "who-and-when", "magentic-one")
# The formats whose labels come from a separate file (the others carry them inline).
LABELS_FILE_FORMATS = ("tau-bench", "magentic-one")
PROBLEMS_SHOWN = 20


def import_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The transcripts: a JSONL file, a tau-bench results file, a folder of Who&When runs or of Magentic-One logs.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"Transcript format: {', '.join(FORMAT_NAMES)}.")],
    experiment: Annotated[str | None, typer.Option("-e", "--experiment", "--experiment-id", help="Experiment name or id; a new name is created.")] = None,
    with_labels: Annotated[bool, typer.Option("--with-labels", help="Also store the source's human labels as HUMAN assessments.")] = False,
    labels: Annotated[Path | None, typer.Option("--labels", help="AgentRx failure labels for tau-bench or magentic-one (default: tau_ground_truth.json beside the results file, ground_truth.json in the logs' folder); needs --with-labels.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI).")] = None,
) -> None:
    """Import chat transcripts as MLflow traces (re-importing the same file adds nothing)."""
    with user_errors():
        flags: dict[str, Any] = dict(ctx.obj[ROOT_FLAGS]) if ctx.obj else {}
        flags.update({k: v for k, v in {"experiment_id": experiment, "tracking_uri": tracking_uri}.items() if v})
        settings = settings_from(flags)
        if fmt not in FORMAT_NAMES:
            raise UserError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMAT_NAMES)}.")
        if not settings.experiment_id:
            raise UserError("Say which experiment to import into: -e <experiment name or id>.")
        if labels is not None and not with_labels:
            raise UserError("--labels only matters with --with-labels; add it or drop --labels.")
        if labels is not None and fmt not in LABELS_FILE_FORMATS:
            raise UserError(f"--labels is read only for {' and '.join(LABELS_FILE_FORMATS)}; drop it for {fmt} (whose labels, if any, are in the files).")
        code = _run(fmt, path, settings.experiment_id, with_labels, labels, settings.tracking_uri)
    raise typer.Exit(code)


def _run(fmt: str, path: Path, experiment: str, with_labels: bool, labels: Path | None, tracking_uri: str | None) -> int:
    # Synchronous export before MLflow builds its exporter: the async queue drops traces in bulk.
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    import mlflow
    from mlflow.exceptions import MlflowException

    from rich.console import Console

    from ..importers import ExperimentNotFound, SourceError, import_path, resolve_experiment
    from ..progress import ConsoleSteps

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment_id, created = resolve_experiment(experiment)
        print(f"{'Created' if created else 'Using'} experiment {experiment!r} (id {experiment_id}) at {mlflow.get_tracking_uri()}.")
        steps = ConsoleSteps(Console(stderr=True, width=None if sys.stderr.isatty() else 120))
        steps.start(f"Importing {path.name}", unit="conversations")
        try:
            report = import_path(fmt, path, experiment_id, with_labels=with_labels, labels_path=labels,
                                 on_progress=lambda r: steps.update(r.imported))
        finally:
            steps.finish()
    except (SourceError, ExperimentNotFound) as exc:
        raise UserError(str(exc), EXIT_USAGE) from None
    except MlflowException as exc:
        raise UserError(f"The tracking server failed: {exc.message.splitlines()[0]}", EXIT_FAILED) from None
    _print_report(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_report(report: Any) -> None:
    print(
        f"Imported {report.imported} conversation(s); skipped {report.skipped} already imported; "
        f"{len(report.malformed)} malformed."
    )
    if report.labels_written:
        relabelled = f" ({report.labelled_existing} existing trace(s) labelled)" if report.labelled_existing else ""
        print(f"Wrote {report.labels_written} human label(s){relabelled}.")
    for problem in report.malformed[:PROBLEMS_SHOWN]:
        print(f"  malformed {problem.where}: {problem.reason}")
    if len(report.malformed) > PROBLEMS_SHOWN:
        print(f"  ... and {len(report.malformed) - PROBLEMS_SHOWN} more malformed record(s).")
    for notice in report.notices:
        print(f"  note {notice.where}: {notice.reason}")
    if report.lost:
        print(
            f"Error: {len(report.lost)} written trace(s) are missing from the store (e.g. {report.lost[0]}); "
            "run the same import again to retry them.",
            file=sys.stderr,
        )


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)

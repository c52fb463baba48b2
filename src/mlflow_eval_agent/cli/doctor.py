"""`doctor`: run first on a real workspace; one verdict per point, with the fix for each failure."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..settings import ConfigError
from ._errors import EXIT_FAILED, EXIT_OK, user_errors
from .root import ROOT_FLAGS, settings_from

MARKS = {"ok": "[green]ok  [/green]", "fail": "[red]FAIL[/red]", "skipped": "[dim]skip[/dim]"}


def doctor(
    ctx: typer.Context,
    experiment_id: Annotated[str | None, typer.Option("-e", "--experiment-id", help="Experiment id or name (env MLFLOW_EXPERIMENT_ID).")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI).")] = None,
) -> None:
    """Check what a run needs: the secret, reading traces, the validation child, the model, the volume."""
    from ..doctor import run_checks

    flags = dict((ctx.obj or {}).get(ROOT_FLAGS, {}))
    flags |= {k: v for k, v in {"experiment_id": experiment_id, "tracking_uri": tracking_uri}.items() if v}
    with user_errors():
        problem = None
        try:
            settings = settings_from(flags)
        except ConfigError as exc:
            if not (flags.get("secret_scope") or flags.get("secret_key")):
                raise
            problem = str(exc)  # the secret could not be read: report it, check the rest without it
            settings = settings_from({**flags, "secret_scope": "", "secret_key": ""})
        checks = run_checks(settings, problem)
    console = Console(highlight=False, soft_wrap=True)
    for check in checks:
        console.print(f"{MARKS[check.verdict]} {check.name}: {escape(check.detail)}")
        if check.fix and check.verdict == "fail":
            console.print(f"     fix: {escape(check.fix)}")
    failed = [c.name for c in checks if c.verdict == "fail"]
    console.print(f"{len(checks) - len(failed)} of {len(checks)} points pass" + (f"; fix: {', '.join(failed)}" if failed else "."))
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)

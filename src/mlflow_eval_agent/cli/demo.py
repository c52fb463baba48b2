"""`demo`: fill a local sqlite experiment with a traced sample agent, build and validate its suite.

Works on a fresh clone with no credentials (the no-model planner builds the suite); with a Claude
credential the agent does. Exit codes as for `-a`: 0 every task completed, 1 a task failed,
2 a usage or configuration mistake.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ._errors import user_errors
from .root import ROOT_FLAGS, settings_from


def demo_command(
    ctx: typer.Context,
    traces: Annotated[int, typer.Option("--traces", min=10, max=2000, help="Traces the sample agent writes (default 60).")] = 60,
    fresh: Annotated[bool, typer.Option("--fresh", help="Write a new demo experiment even if one exists.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Use the no-model planner even when a credential is set.")] = False,
    volume_path: Annotated[str | None, typer.Option("--volume-path", help="Where the demo store and sessions live (default .eval-agent).")] = None,
    session_id: Annotated[str | None, typer.Option("--session-id", help="Name the session (default demo-<time>).")] = None,
) -> None:
    """Run the whole pipeline on a built-in sample agent's traces (no setup, no credentials needed)."""
    with user_errors():
        flags: dict[str, Any] = dict(ctx.obj[ROOT_FLAGS]) if ctx.obj else {}
        flags.update({k: v for k, v in {"volume_path": volume_path, "session_id": session_id}.items() if v})
        code = _run(settings_from(flags), traces, fresh, offline)
    raise typer.Exit(code)


def _run(settings: Any, traces: int, fresh: bool, offline: bool) -> int:
    from ..demo.run import demo_settings, demo_tracking_uri, prepare_experiment
    from ..progress import ConsoleSteps, make_console
    from ..runner import run_autonomous

    console = make_console()
    uri = demo_tracking_uri(settings.volume_path)
    console.print(f"Demo store: {uri}", highlight=False)
    demo = prepare_experiment(uri, traces, fresh, ConsoleSteps(console))
    if demo.seeded:
        modes = sorted({m for s in demo.seeded for m in s.modes})
        console.print(f"Wrote {len(demo.seeded)} traces of the sample support agent to experiment {demo.experiment_id} "
                      f"(injected failure modes: {', '.join(modes)}).", highlight=False)
    else:
        console.print(f"Reusing the demo experiment {demo.experiment_id} (pass --fresh for a new one).", highlight=False)
    run_settings = demo_settings(settings, demo, offline)
    path = "the no-model planner (no Claude credential set)" if run_settings.offline and not settings.access.configured else (
        "the no-model planner" if run_settings.offline else "the agent")
    console.print(f"Building the evaluation suite with {path} ...", highlight=False)
    return run_autonomous(run_settings, console)  # ends with the pass rates, the suite, its commands and the report


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)

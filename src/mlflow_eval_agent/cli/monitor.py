"""`monitor`: put a session's trusted judges on the experiment's incoming traces, list them, stop them.

    mlflow-eval-agent monitor start --session-id S [--judge-model gateway:/judge] [--rate monitor=0.1]
    mlflow-eval-agent monitor list  --session-id S
    mlflow-eval-agent monitor stop  --session-id S [--scorer NAME ...]
    mlflow-eval-agent monitor run   --session-id S [--experiment-id PROD] [--since 24h]

Which judges go up is decided by the tiers of the session's last validation (`gate` and
`monitor`; suite/agreement.py). Code checks cannot be registered: `monitor run` scores them (and the
judges) by running the suite on the traces since its last run (suite/scheduled_run.py: a watermark
in state/monitor_runs.json, moved only after a run that produced verdicts); the bundle's
`eval_agent_scheduled_eval` job runs it on a schedule.
Exit codes: start/list/stop: 0 done; 1 MLflow refused a scorer; 2 usage (no session, no validation
yet, a judge model the server cannot run automatically). run: as run_eval.py's, 0 every gate scorer
met its threshold (or there was nothing new to score), 1 one did not or the suite did not run,
2 usage (no session or suite, an unknown experiment, a bad --since).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from ..progress import make_console
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError, user_errors
from .root import ROOT_FLAGS, settings_from

monitor_app = typer.Typer(help="Production monitoring: register the suite's trusted judges on the experiment, or run the whole suite on the traces since its last run.", no_args_is_help=True)

SessionOpt = Annotated[str, typer.Option("--session-id", help="The session whose suite to monitor with.")]
VolumeOpt = Annotated[str | None, typer.Option("--volume-path", help="Where sessions live (default .eval-agent).")]
UriOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: the one the session ran against).")]


@monitor_app.command("start")
def start_command(
    ctx: typer.Context,
    session_id: SessionOpt,
    volume_path: VolumeOpt = None,
    tracking_uri: UriOpt = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Model the server runs the judges with; on a self-hosted server an AI Gateway endpoint, gateway:/<name>.")] = None,
    rate: Annotated[list[str] | None, typer.Option("--rate", help="Sample rate per tier, e.g. gate=1.0 or monitor=0.1 (defaults gate=1.0, monitor=0.2); repeatable.")] = None,
    filter_string: Annotated[str | None, typer.Option("--filter", help="Only traces matching this search_traces filter.")] = None,
    scorer: Annotated[list[str] | None, typer.Option("--scorer", help="Only this scorer; repeatable.")] = None,
) -> None:
    """Register and start the suite's gate and monitor judges on the experiment."""
    with user_errors():
        settings, store, spec, uri = _open(ctx, session_id, volume_path, tracking_uri, judge_model)
        from ..suite import monitor

        tiers = _tiers(store)
        model = judge_model or settings.judge.model
        plans = monitor.plan_monitoring(spec, tiers, rates=_rates(rate or []), only=scorer or None)
        if any(p.action == "register" for p in plans):
            _check_model(uri, model)
        console = make_console()
        os.environ["MLFLOW_TRACKING_URI"] = uri
        lines = monitor.start(spec, plans, spec.experiment_id, model, filter_string)
        for line in lines:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
        refused = [line for line in lines if "could not be registered" in line]
        console.print(f"Experiment {spec.experiment_id}: {sum(p.action == 'register' for p in plans) - len(refused)} judges sampling new traces; "
                      f"code checks are not registered: `mlflow-eval-agent monitor run --session-id {settings.session_id}` scores them on the traces "
                      "since its last run (on a schedule: cron, CI, or the bundle's eval_agent_scheduled_eval job).",
                      highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if refused else EXIT_OK)


@monitor_app.command("list")
def list_command(ctx: typer.Context, session_id: SessionOpt, volume_path: VolumeOpt = None, tracking_uri: UriOpt = None) -> None:
    """List the scorers registered on the session's experiment, with their sample rates."""
    with user_errors():
        _, _, spec, uri = _open(ctx, session_id, volume_path, tracking_uri, None)
        from ..suite import monitor

        os.environ["MLFLOW_TRACKING_URI"] = uri
        registered = monitor.list_registered(spec.experiment_id)
        console = make_console()
        if not registered:
            console.print(f"No scorers registered on experiment {spec.experiment_id}.", highlight=False)
        for r in registered:
            rate = "-" if r.sample_rate is None else f"{r.sample_rate:.0%}"
            console.print(f"  {r.name}: {r.status}, sampling {rate}" + (f", filter {r.filter_string}" if r.filter_string else ""),
                          highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_OK)


@monitor_app.command("stop")
def stop_command(
    ctx: typer.Context, session_id: SessionOpt, volume_path: VolumeOpt = None, tracking_uri: UriOpt = None,
    scorer: Annotated[list[str] | None, typer.Option("--scorer", help="Only this scorer (default: all registered); repeatable.")] = None,
) -> None:
    """Stop sampling (the scorers stay registered; `start` resumes them)."""
    with user_errors():
        _, _, spec, uri = _open(ctx, session_id, volume_path, tracking_uri, None)
        from ..suite import monitor

        os.environ["MLFLOW_TRACKING_URI"] = uri
        lines = monitor.stop(spec.experiment_id, scorer or None)
        console = make_console()
        for line in lines or [f"No scorers registered on experiment {spec.experiment_id}."]:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILED if any("could not" in line for line in lines) else EXIT_OK)


@monitor_app.command("run")
def run_command(
    ctx: typer.Context,
    session_id: SessionOpt,
    volume_path: VolumeOpt = None,
    tracking_uri: UriOpt = None,
    experiment_id: Annotated[str | None, typer.Option("--experiment-id", help="Experiment whose traces to score, id or name (default: the one the suite was built on).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Start here instead of at the watermark: 24h, 7d, 2026-05-01, an ISO time or epoch ms (default: the last run's end; the first run: 24h).")] = None,
    settle_minutes: Annotated[float, typer.Option("--settle-minutes", min=0, help="Leave traces that started this recently for the next run (they may still be running).")] = 5.0,
    max_traces: Annotated[int, typer.Option("--max-traces", min=1, help="Most traces per run, the oldest first; the next run continues with the rest.")] = 500,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Model for the LLM judges (as for validate; default: the agent's own provider when its credential is set).")] = None,
    pass_env: Annotated[list[str] | None, typer.Option("--pass-env", help="Also pass this environment variable to the suite (the judge provider's own are passed already); repeatable.")] = None,
    max_judge_usd: Annotated[float | None, typer.Option("--max-judge-usd", min=0, envvar="EVAL_AGENT_MAX_JUDGE_USD", help="Run the judges only when their forecast cost for these traces fits (printed before any judge call).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=10, help="Seconds before the suite's run is stopped (the window is then scored again next time).")] = 900,
) -> None:
    """Run the suite on the experiment's traces since the last run (code checks and judges), then move the watermark."""
    from datetime import timedelta

    with user_errors():
        missing = [name for name in pass_env or [] if name not in os.environ]
        if missing:
            raise UserError(f"--pass-env names variables that are not set: {', '.join(missing)}.", EXIT_USAGE)
        settings, store, spec, uri = _open(ctx, session_id, volume_path, tracking_uri, judge_model, experiment_id)
        if not store.exists("evaluation/run_eval.py"):
            raise UserError(f"Session {settings.session_id!r} has no rendered suite (evaluation/run_eval.py): build one first (-a, or --offline).", EXIT_USAGE)
        from ..progress import ConsoleSteps
        from ..suite.scheduled_run import describe, run_monitoring
        from ..traces.source import parse_since, redact_uri, resolve_experiment

        since_ms = parse_since(since) if since else None
        target = resolve_experiment(uri, experiment_id or spec.experiment_id).experiment_id
        console = make_console()
        redact = store.redactor.text
        console.print(f"Scoring new traces of experiment {target} with the suite of session {settings.session_id} ({redact_uri(uri)}) ...", highlight=False,
                      markup=False, soft_wrap=True)
        judge = settings.judge
        if any(s.needs_judge for s in spec.scorers):
            console.print(f"Judges: {judge.model} ({judge.source})" if judge.model and not judge.skip_reason else f"Judges skipped: {judge.skip_reason}",
                          highlight=False, markup=False, soft_wrap=True)
        run, printed = run_monitoring(
            store, uri, target, since_ms=since_ms, settle=timedelta(minutes=settle_minutes), max_traces=max_traces, judge_model=judge.model,
            skip_judges=judge.skip_reason, extra_env={**judge.child_env(), **{n: os.environ[n] for n in pass_env or []}},
            max_budget_usd=max_judge_usd, timeout_s=timeout, steps=ConsoleSteps(console),
        )
        if printed.strip():
            console.print(redact(printed.strip()), highlight=False, markup=False, soft_wrap=True)
        for line in describe(run):
            console.print(redact(line), highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(run.exit_code)


def _open(ctx: typer.Context, session_id: str, volume_path: str | None, tracking_uri: str | None, judge_model: str | None,
          experiment_id: str | None = None) -> tuple[Any, Any, Any, str]:
    from ..store import open_session_store
    from ..store.local import local_session_exists
    from ..suite.spec import SPEC_FILE, SuiteSpec
    from .validate import _tracking_uri

    if not session_id.strip():
        raise UserError("--session-id is empty: name the session whose suite to use (in the bundle: --var suite_session_id=<the run id of the "
                        "eval_agent_job run that built it>).", EXIT_USAGE)
    flags: dict[str, Any] = dict(ctx.obj[ROOT_FLAGS]) if ctx.obj and ROOT_FLAGS in ctx.obj else {}
    flags.update({k: v for k, v in {"session_id": session_id, "volume_path": volume_path, "tracking_uri": tracking_uri, "judge_model": judge_model}.items() if v})
    settings = settings_from(flags)
    if not settings.volume_path.startswith("/Volumes/") and not local_session_exists(settings.volume_path, settings.session_id):
        raise UserError(f"No session {settings.session_id!r} under {os.path.abspath(settings.sessions_root)}: check --session-id and --volume-path.", EXIT_USAGE)
    store = open_session_store(settings.volume_path, settings.session_id, settings.redactor())
    spec = store.read_model(SPEC_FILE, SuiteSpec)
    if spec is None:
        raise UserError(f"Session {settings.session_id!r} has no evaluation suite yet: build one first (-a, or --offline).", EXIT_USAGE)
    return settings, store, spec, _tracking_uri(store, tracking_uri, settings.tracking_uri, experiment_id or spec.experiment_id)


def _tiers(store: Any) -> dict[str, str]:
    from ..suite.validate import load_report

    report = load_report(store)
    if report is None or not report.latest.ok:
        raise UserError("The suite has no successful validation yet, so no scorer has a tier: run `validate` first.", EXIT_USAGE)
    return report.latest.tiers()


def _rates(pairs: list[str]) -> dict[str, float]:
    rates = {}
    for pair in pairs:
        tier, _, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if tier not in ("gate", "monitor") or not 0 < number <= 1:
            raise UserError(f"--rate {pair!r}: write gate=<rate> or monitor=<rate> with a rate in (0, 1].", EXIT_USAGE)
        rates[tier] = number
    return rates


def _check_model(uri: str, model: str | None) -> None:
    """Automatic evaluation runs on the server: on a self-hosted MLflow it only runs judges whose
    model is an AI Gateway endpoint; Databricks runs its own judges when no model is named."""
    databricks = uri.startswith("databricks")
    if not databricks and not (model or "").startswith("gateway:/"):
        raise UserError("A self-hosted MLflow server runs judges automatically only on an AI Gateway endpoint: create one in the MLflow UI "
                        "(AI Gateway) and pass --judge-model gateway:/<endpoint>.", EXIT_USAGE)


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")

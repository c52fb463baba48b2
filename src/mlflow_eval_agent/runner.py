"""`-a/--autonomous`: check the inputs, open the session, run the loop (or the offline planner), summarise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import mlflow
from rich.console import Console

from .aio import run_sync
from .child import absolute_tracking_uri
from .claude_folder import private_folder, remove_stale
from .interrupts import last_signal, signal_name, stop_signals_as_interrupt
from .errors import EXIT_FAILED, EXIT_USAGE, UserError
from .loop import AutonomousLoop, CombinedHooks, RunReport
from .plan import PLAN_FILE
from .progress import ConsoleHooks, ConsoleSteps, make_console, print_summary
from .report import publish_report
from .settings import ConfigError, Settings, require_model_access
from .steps import NO_STEPS, Steps
from .store import SessionStore, new_session_id, open_session_store
from .store.lock import SessionLock
from .store.session_meta import remember_session
from .summary import print_results
from .tracing import maybe_tracer
from .tracking_probe import check_reachable, has_traces, tracking_store_probe
from .traces.source import TraceSourceError, effective_tracking_uri, resolve_experiment


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow's fluent APIs (evaluate, tracing) at the configured store, once per process."""
    if settings.tracking_uri:
        mlflow.set_tracking_uri(settings.tracking_uri)


def check_experiment(settings: Settings) -> Settings:
    """Fail fast, with a sentence, when the experiment is missing or the store unreachable.

    The experiment may be given by name; the returned settings carry its id."""
    if not settings.experiment_id:
        raise ConfigError("No experiment given: pass -e/--experiment-id <id> (or set MLFLOW_EXPERIMENT_ID).")
    try:
        check_reachable(settings.tracking_uri)  # one short request, not minutes of MLflow's retries
    except TraceSourceError as exc:
        raise UserError(str(exc), EXIT_USAGE) from None  # a server that is not there: configuration (exit 2)
    try:
        ref = resolve_experiment(settings.tracking_uri, settings.experiment_id)
    except TraceSourceError as exc:
        raise UserError(str(exc), EXIT_USAGE if exc.user_error else EXIT_FAILED) from None
    return settings.model_copy(update={"experiment_id": ref.experiment_id})


def check_not_empty(settings: Settings) -> None:
    """An experiment without traces has nothing to build from: refused before any agent session."""
    if has_traces(settings.tracking_uri, str(settings.experiment_id)) is False:
        raise UserError(f"Experiment {settings.experiment_id} has no traces: there is nothing to build a suite from. "
                        "Log traces to it first (or choose another -e).", EXIT_USAGE)


@contextlib.contextmanager
def claude_config_dir(settings: Settings) -> Iterator[Path]:
    """A private, writable folder for Claude Code (config, HOME, caches), removed on every exit path."""
    with private_folder(settings.claude_config_dir) as path:
        yield path


@contextlib.contextmanager
def open_store(settings: Settings, console: Console) -> Iterator[SessionStore]:
    """The session, locked for this run: a second run on it stops at once with one line naming the holder."""
    session_id = settings.session_id or new_session_id()
    store = open_session_store(settings.volume_path, session_id, settings.redactor(), pull=False)
    with SessionLock(store.lock_medium(), session_id) as lock:
        store.pull()  # after the lock: what the last holder pushed
        store.on_notice = lambda line: console.print(line, highlight=False, markup=False)
        if lock.took_over:
            console.print(f"Took over the lock of a run that is gone ({lock.took_over.describe()}).", highlight=False, markup=False)
        store.repair()
        resumed = store.exists(PLAN_FILE)
        console.print(f"{'Resuming' if resumed else 'Starting'} session {session_id} in {store.description}", highlight=False)
        yield store


def run_autonomous(settings: Settings, console: Console | None = None) -> int:
    console = console or make_console()
    with stop_signals_as_interrupt():
        configure_mlflow(settings)
        settings = check_experiment(settings)
        check_not_empty(settings)
        if not settings.offline:
            require_model_access(settings)
        for name in remove_stale():
            console.print(f"Removed {name}, a private Claude Code folder left by a run that was killed.", highlight=False, markup=False)
        with open_store(settings, console) as store:
            tracking_uri = absolute_tracking_uri(effective_tracking_uri(settings.tracking_uri))
            remember_session(store, tracking_uri, str(settings.experiment_id))
            report = run_offline(settings, store, ConsoleSteps(console)) if settings.offline else run_agent(settings, store, console)
            published = publish_report(store, tracking_uri)
            store.sync()
            print_summary(console, report, store)
            print_results(console, store, tracking_uri, settings.volume_path, published)
    return report.exit_code


def run_agent(settings: Settings, store: SessionStore, console: Console) -> RunReport:
    tracer = maybe_tracer(settings.agent_experiment_id, store.session_id, settings.experiment_id, store.redactor)
    hooks = ConsoleHooks(console, store, settings.verbose, settings.max_iterations, store.redactor)
    report: RunReport | None = None
    with claude_config_dir(settings) as config_dir:
        hooks_all = CombinedHooks(hooks, *([tracer] if tracer else []))
        wait = settings.api_retry_wait_s
        loop = AutonomousLoop(settings, store, config_dir, hooks=hooks_all, backoff_s=lambda n: min(120.0, wait * 2 ** (n - 1)),
                              probe=tracking_store_probe(settings.tracking_uri))
        try:
            report = run_sync(loop.run())
        except KeyboardInterrupt:
            signum = last_signal()
            report = loop.report(loop.load_plan(), "interrupted", f"({signal_name(signum)}) State is saved; the running task is back to pending.", signal=signum)
        finally:
            if tracer:
                tracer.finish(report, None if report else "the run raised")
    return report


def run_offline(settings: Settings, store: SessionStore, steps: Steps = NO_STEPS) -> RunReport:
    from .suite.offline import build_offline  # the no-model planner

    plan = build_offline(settings, store, steps)
    reason = "completed" if plan.done and plan.counts()["failed"] == 0 else "tasks_failed"
    return RunReport(session_id=store.session_id, plan=plan, stop_reason=reason)


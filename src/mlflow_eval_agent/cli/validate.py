"""`validate`: re-run a session's evaluation suite and report the difference against its baseline.

Exit codes: 0 the suite ran and no `gate` scorer failed, missed its evidence or got worse than at
the baseline; 1 the suite did not run, or a `gate` scorer did; 2 usage mistakes (no such session,
no suite in it). A scorer's tier (gate, monitor, explore) comes from its agreement with human
labels, else with its evidence (suite/agreement.py); monitor and explore scorers are reported only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from ..progress import ConsoleSteps, make_console
from ..traces.source import redact_uri
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError, user_errors
from .root import ROOT_FLAGS, settings_from

WORSE = {"PASS": 0, "REPORT": 0, "SKIPPED": 1, "FAIL": 2, "ERROR": 3, "MISSING": 4}


def validate_command(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Option("--session-id", help="The session whose suite to re-run.")],
    volume_path: Annotated[str | None, typer.Option("--volume-path", help="Where sessions live (default .eval-agent).")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: the one the session ran against).")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Model for the LLM judges, e.g. anthropic:/claude-sonnet-4-5 (env MLFLOW_GENAI_JUDGE_DEFAULT_MODEL; default: the agent's own provider when its credential is set).")] = None,
    pass_env: Annotated[list[str] | None, typer.Option("--pass-env", help="Also pass this environment variable to the suite (the judge provider's own are passed already); repeatable.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=10, help="Seconds before the run is stopped.")] = 900,
    max_judge_usd: Annotated[float | None, typer.Option("--max-judge-usd", min=0, envvar="EVAL_AGENT_MAX_JUDGE_USD", help="Run the judges only when their forecast cost fits (printed before any judge call).")] = None,
    align: Annotated[bool, typer.Option("--align", help="Then align each make_judge judge that has enough human labels (Judge.align with worked examples) and keep it only when it agrees better on held-out labels.")] = False,
    sql_warehouse_id: Annotated[str | None, typer.Option("--sql-warehouse-id", help="SQL warehouse MLflow reads Unity Catalog traces through, handed to the suite (env MLFLOW_TRACING_SQL_WAREHOUSE_ID).")] = None,
) -> None:
    """Re-run a session's evaluation suite and compare it with the baseline run."""
    with user_errors():
        flags: dict[str, Any] = dict(ctx.obj[ROOT_FLAGS]) if ctx.obj else {}
        flags.update({k: v for k, v in {"session_id": session_id, "volume_path": volume_path, "tracking_uri": tracking_uri, "judge_model": judge_model,
                                           "sql_warehouse_id": sql_warehouse_id}.items() if v})
        settings = settings_from(flags)
        code = _run(settings, flags.get("tracking_uri"), pass_env or [], timeout, max_judge_usd, align)
    raise typer.Exit(code)


def _run(settings: Any, explicit_uri: str | None, pass_env: list[str], timeout: float, max_judge_usd: float | None = None, align: bool = False) -> int:
    from ..store import open_session_store
    from ..store.local import local_session_exists
    from ..suite.spec import SPEC_FILE, SuiteSpec
    from ..report import publish_report
    from ..suite.validate import compare, judge_forecast, validate_suite

    if not settings.volume_path.startswith("/Volumes/") and not local_session_exists(settings.volume_path, settings.session_id):
        where = os.path.abspath(os.path.expanduser(settings.sessions_root))
        raise UserError(f"No session {settings.session_id!r} under {where}. Check --session-id, and pass --volume-path <folder> "
                        "when the session was made elsewhere.", EXIT_USAGE)
    store = open_session_store(settings.volume_path, settings.session_id, settings.redactor())
    spec = store.read_model(SPEC_FILE, SuiteSpec)
    if spec is None or not store.exists("evaluation/run_eval.py"):
        raise UserError(f"Session {settings.session_id!r} has no evaluation suite yet (no {SPEC_FILE} or evaluation/run_eval.py).", EXIT_USAGE)
    missing = [name for name in pass_env if name not in os.environ]
    if missing:
        raise UserError(f"--pass-env names variables that are not set: {', '.join(missing)}.", EXIT_USAGE)
    tracking = _tracking_uri(store, explicit_uri, settings.tracking_uri, spec.experiment_id)
    console = make_console()
    console.print(f"Running the suite of session {settings.session_id} against {redact_uri(tracking)} ...", highlight=False)
    judge = settings.judge
    if spec.scorers and any(s.needs_judge for s in spec.scorers):
        console.print(f"Judges: {judge.model} ({judge.source})" if judge.model and not judge.skip_reason else f"Judges skipped: {judge.skip_reason}",
                      highlight=False, markup=False, soft_wrap=True)
        cost = judge_forecast(spec, judge.model, judge.skip_reason)
        if cost is not None:
            over = cost.over(max_judge_usd)
            console.print(cost.line() + (f"; judges skipped: {over}" if over else ""), highlight=False, markup=False, soft_wrap=True)
    report = validate_suite(spec, store, tracking, timeout_s=timeout, judge_model=judge.model, skip_judges=judge.skip_reason, max_judge_usd=max_judge_usd, align=align,
                            extra_env={**judge.child_env(), **{n: os.environ[n] for n in pass_env}}, steps=ConsoleSteps(console))
    published = publish_report(store, tracking)
    store.sync()
    run = report.latest
    redact = store.redactor.text
    if not run.ok:
        console.print(f"[red]The suite did not run:[/red] {redact(str(run.error))}", highlight=False)
        _print_where(console, published, tracking, redact)
        return EXIT_FAILED
    is_baseline = report.baseline is not None and report.baseline.validated_at == run.validated_at and report.baseline.run_id == run.run_id
    baseline = None if is_baseline else report.baseline
    _print_table(console, run, baseline, compare(baseline, run) if baseline else [], redact)
    gated = {name for name, s in run.scorers.items() if s.gates}
    worse = [n for n in (_worse(baseline, run) if baseline else []) if n in gated]
    missing_evidence = {n: why for n, why in run.missing_evidence().items() if n in gated}
    failed = run.gate_failures()
    console.print(redact(run.summary) + ".", highlight=False)
    for note in run.notes:
        console.print(f"[yellow]note:[/yellow] {redact(note)}", highlight=False)
    _print_alignment(console, run.alignment, redact)
    if is_baseline:
        console.print("This run passed its gate and is the baseline (tagged eval_agent.baseline).", highlight=False)
    elif baseline is None:
        console.print("No baseline yet: the first run that passes its gate becomes the baseline.", highlight=False)
    if worse:
        console.print(f"[red]Worse than the baseline:[/red] {', '.join(worse)}", highlight=False)
    if failed:
        console.print(f"[red]Gate scorers that failed:[/red] {', '.join(failed)}", highlight=False)
    _print_where(console, published, tracking, redact)
    return EXIT_FAILED if worse or missing_evidence or failed else EXIT_OK


def _print_alignment(console: Console, alignment: dict[str, Any], redact: Callable[[str], str]) -> None:
    from ..suite.align import AlignmentResult

    for raw in alignment.values():
        result = AlignmentResult.model_validate(raw)
        console.print(redact(result.line()), highlight=False, markup=False, soft_wrap=True)
    if any(r.get("status") == "kept" for r in alignment.values()):
        console.print("The aligned instructions are in the suite (evaluation/scorers.py); the next validate measures them, leaving out "
                      "their training labels.", highlight=False, markup=False, soft_wrap=True)


def _print_where(console: Console, published: Any, tracking: str, redact: Callable[[str], str]) -> None:
    from ..summary import ui_command

    attached = f" (attached to evaluation run {published.run_id})" if published.run_id else ""
    console.print(f"Report: {published.path}{attached}", highlight=False, markup=False, soft_wrap=True)
    for note in published.notes:
        console.print(f"note: {redact(note)}", highlight=False, markup=False, soft_wrap=True)
    ui = ui_command(tracking)
    if ui:
        console.print(f"Browse the runs, traces and verdicts: {ui}", highlight=False, markup=False, soft_wrap=True)


def _tracking_uri(store: Any, explicit: str | None, configured: str | None, experiment_id: str) -> str:
    """The store to run against: --tracking-uri, else the one the session remembers, else the configured
    one. It must exist and hold the suite's experiment: validation never creates a database."""
    from ..store.session_meta import recall_session
    from ..traces.source import TraceSourceError, effective_tracking_uri, resolve_experiment

    meta = recall_session(store)
    if not explicit and meta is not None and meta.usable_uri is None:
        raise UserError("The session's tracking URI held a password, which is not stored: pass --tracking-uri.", EXIT_USAGE)
    uri = effective_tracking_uri(explicit or (meta.usable_uri if meta else None) or configured)
    try:
        resolve_experiment(uri, experiment_id)
    except TraceSourceError as exc:
        origin = "given with --tracking-uri" if explicit else ("the session ran against" if meta else "configured (this session predates remembering its store)")
        raise UserError(f"{str(exc).rstrip('.')} (the tracking store {origin}: {redact_uri(uri)}); pass --tracking-uri with the store "
                        f"that holds experiment {experiment_id}.", EXIT_USAGE if exc.user_error else EXIT_FAILED) from None
    return uri


def _print_table(console: Console, run: Any, baseline: Any, diffs: list[Any], redact: Callable[[str], str]) -> None:
    """One plain line per scorer (no table wrapping: CI logs and narrow terminals stay readable)."""
    changes = {d.name: d.change for d in diffs}
    console.print(f"Validation on {run.data} ({run.seconds:.0f} s, evaluation run {run.run_name} {run.run_id}, gate {run.gate}):", highlight=False)
    for name, result in run.scorers.items():
        rate = "-" if result.pass_rate is None else f"{result.pass_rate:.1%}"
        versus = changes.get(name, "no baseline yet" if baseline is None else "unchanged")
        console.print(f"  {name}: {result.status}, pass rate {rate}; {redact(result.summary)}; vs baseline: {versus}", highlight=False, soft_wrap=True)
        console.print(f"    {_agreement_line(result.agreement)}", highlight=False, soft_wrap=True, markup=False)
    for name, change in changes.items():
        if name not in run.scorers:
            console.print(f"  {name}: {change}", highlight=False, soft_wrap=True)


def _agreement_line(a: Any) -> str:
    """tier, the confusion matrix and kappa/MCC with intervals, false accepts first."""
    if not a.n:
        return f"{a.tier}: {a.reason}"
    c = a.confusion

    def stat(value: float | None, ci: Any) -> str:
        return "-" if value is None else f"{value:.2f}" + (f" [{ci.low:.2f}, {ci.high:.2f}]" if ci else "")

    line = (f"{a.tier} ({a.reason}): vs {a.n} {a.labels_from} labels TP {c.tp} FP {c.fp} FN {c.fn} TN {c.tn}, "
            f"kappa {stat(a.kappa, a.kappa_ci)}, MCC {stat(a.mcc, a.mcc_ci)}")
    if a.false_accepts:
        line += f"; false accepts {', '.join(a.false_accepts[:5])}"
    if a.false_rejects:
        line += f"; false rejects {', '.join(a.false_rejects[:5])}"
    if a.annotators.pairs:
        line += f"; annotators agree {a.annotators.agreement:.0%} (kappa {stat(a.annotators.kappa, None)}, {a.annotators.annotators} people)"
    return line


def _worse(baseline: Any, run: Any) -> list[str]:
    """Scorers whose status got worse, whose pass rate dropped, or that stopped meeting evidence."""
    worse = []
    for name, new in run.scorers.items():
        old = baseline.scorers.get(name)
        if old is None:
            continue
        dropped = old.pass_rate is not None and new.pass_rate is not None and new.pass_rate < old.pass_rate
        if WORSE.get(new.status, 5) > WORSE.get(old.status, 5) or dropped or (old.meets_evidence and new.meets_evidence is False):
            worse.append(name)
    return worse


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)

"""`analyze`: the exact trace profile of an experiment, as readable tables or one JSON document."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ._errors import EXIT_FAILED, EXIT_USAGE, UNREACHABLE, UserError, user_errors
from ..traces.api_reader import DEFAULT_SPAN_TRACES
from .root import ROOT_FLAGS, settings_from

TOP_ROWS = 20


def analyze(
    ctx: typer.Context,
    experiment_id: Annotated[str | None, typer.Option("-e", "--experiment-id", help="Experiment id or name (env MLFLOW_EXPERIMENT_ID).")] = None,
    filter_string: Annotated[str | None, typer.Option("--filter", help="MLflow trace filter, e.g. \"attributes.status = 'ERROR'\".")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only traces started since: 7d, 12h, 30m, 2024-05-01, an ISO time or epoch ms.")] = None,
    max_traces: Annotated[int | None, typer.Option("--max-traces", min=1, help="Profile at most this many traces (the most recent).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the profile as one JSON document (schema: docs/profile-schema.md).")] = False,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI).")] = None,
    trace_location: Annotated[str | None, typer.Option("--trace-location", help="Traces stored in Unity Catalog: <catalog>.<schema>[.<table_prefix>] (Databricks; instead of -e).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="Profile engine: auto, sql, api, spark (Spark SQL over Unity Catalog trace tables; needs --trace-location and a SparkSession, else --sql-warehouse-id) or warehouse (the same SQL on a SQL warehouse).")] = "auto",
    sql_warehouse_id: Annotated[str | None, typer.Option("--sql-warehouse-id", help="SQL warehouse MLflow reads Unity Catalog traces through, and the warehouse engine runs on (env MLFLOW_TRACING_SQL_WAREHOUSE_ID).")] = None,
    span_traces: Annotated[int, typer.Option("--span-traces", min=0, help="On the API path (remote or Databricks store), read the spans of the newest N traces only; the rest count at trace level (0: every trace's spans).")] = DEFAULT_SPAN_TRACES,
) -> None:
    """Profile every matching trace: states, latency, spans, error signatures, tools, tokens, and more."""
    root_flags = dict((ctx.obj or {}).get(ROOT_FLAGS, {}))
    given = {"experiment_id": experiment_id, "tracking_uri": tracking_uri, "trace_location": trace_location, "sql_warehouse_id": sql_warehouse_id}
    flags = {**root_flags, **{k: v for k, v in given.items() if v}}
    with user_errors():
        settings = settings_from(flags)
        where = settings.trace_location or settings.experiment_id  # a UC location is read where it is
        profile = run_profile(settings.tracking_uri, where, filter_string, since, max_traces, show_progress=not as_json,
                              engine=engine, trace_location=settings.trace_location, sql_warehouse_id=settings.sql_warehouse_id,
                              span_traces=span_traces)
        if as_json:
            sys.stdout.write(profile.model_dump_json(indent=2) + "\n")
        else:
            render(profile, Console(soft_wrap=False))


def run_profile(tracking_uri: str | None, experiment: str | None, filter_string: str | None, since: str | None, max_traces: int | None, show_progress: bool = True,
                engine: str = "auto", trace_location: str | None = None, sql_warehouse_id: str | None = None,
                span_traces: int | None = DEFAULT_SPAN_TRACES) -> Any:
    """The profile, or a UserError: exit 2 for a mistake in the request, 1 for a server failure."""
    from ..progress import ConsoleSteps
    from ..steps import NO_STEPS
    from ..traces.spark_engine import profile_with_engine
    from ..traces.source import TraceSourceError, parse_since

    if not experiment:
        raise UserError("No experiment given: pass -e/--experiment-id (an id or a name) or set MLFLOW_EXPERIMENT_ID.", EXIT_USAGE)
    status = Console(stderr=True)
    steps = ConsoleSteps(status) if show_progress and status.is_terminal else NO_STEPS
    try:
        since_ms = parse_since(since) if since else None
        steps.start("Profiling traces", unit="traces")
        profile = profile_with_engine(tracking_uri, experiment, filter_string, since_ms, max_traces, engine=engine,
                                      trace_location=trace_location, sql_warehouse_id=sql_warehouse_id, progress=steps.update,
                                      span_traces=span_traces)
    except TraceSourceError as exc:
        usage = exc.user_error or str(exc).startswith(UNREACHABLE)  # a server that is not there: configuration (exit 2)
        raise UserError(str(exc), EXIT_USAGE if usage else EXIT_FAILED) from None
    finally:
        steps.finish()
    if profile.trace_count == 0:
        which = "matching the filter" if (filter_string or since) else "logged"
        raise UserError(f"Experiment {experiment!r} has no traces {which}; nothing to profile.", EXIT_USAGE)
    return profile


# --- rendering ---------------------------------------------------------------------------------


def render(p: Any, console: Console) -> None:
    console.print(
        f"[bold]Experiment {escape(p.experiment_name or '')} ({p.experiment_id})[/bold]: {p.trace_count:,} traces, {p.span_count:,} spans, "
        f"{p.time_range.first or '?'} .. {p.time_range.last or '?'}  [dim](read via {p.source.path} in {p.source.seconds:.2f}s"
        f"{', truncated by --max-traces' if p.source.truncated else ''})[/dim]"
    )
    if p.span_trace_count is not None:
        console.print(f"[yellow]Span-level figures (spans, errors, signatures, tools, hidden failures, LLM calls, outputs) are from the newest "
                      f"{p.span_trace_count:,} of {p.trace_count:,} traces; states, latency, tokens, sessions and assessments count all. "
                      f"--span-traces 0 reads every trace's spans.[/yellow]")
    overview = _table("Overview", "measure", "value")
    overview.add_row("status", ", ".join(f"{k} {v:,}" for k, v in p.status_counts.items()))
    overview.add_row("trace latency ms", _lat(p.latency_ms))
    overview.add_row("spans per trace", _counts(p.spans_per_trace))
    overview.add_row("traces with error spans", f"{p.traces_with_error_spans:,}")
    overview.add_row("hidden failures", f"{p.hidden_failures.count:,} (root OK, a span inside failed)")
    overview.add_row("tokens in/out/total", f"{p.tokens.input:,} / {p.tokens.output:,} / {p.tokens.total:,} ({p.tokens.traces_with_usage:,} traces report usage)")
    overview.add_row("LLM calls", f"{p.llm.calls:,} in {p.llm.traces_with_calls:,} traces; per trace {_counts(p.llm.calls_per_trace)}")
    overview.add_row("models", Text(", ".join(f"{m.name} ({m.count:,})" for m in p.llm.models[:6]) or "-"))
    overview.add_row("retrieval", f"{p.retrieval.spans:,} spans, {p.retrieval.empty:,} empty ({_share(p.retrieval.empty_share)})" if p.retrieval.spans else "-")
    overview.add_row("final outputs", f"{p.outputs.missing:,} missing ({p.outputs.missing_ok:,} in OK traces), {p.outputs.empty:,} empty ({p.outputs.empty_ok:,} in OK traces)")
    overview.add_row("sessions", f"{p.sessions.distinct_sessions:,} sessions over {p.sessions.traces_with_session:,} traces" if p.sessions.traces_with_session else "-")
    console.print(overview)
    _spans(p, console)
    _signatures(p, console)
    _tools(p, console)
    _trajectory(p, console)
    _shapes(p, console)
    _assessments(p, console)
    _odd(p, console)


def _spans(p: Any, console: Console) -> None:
    table = _table(f"Spans (top {min(TOP_ROWS, len(p.spans))} of {len(p.spans)})", "name", "type", "count", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms")
    for s in p.spans[:TOP_ROWS]:
        table.add_row(Text(s.name), Text(s.span_type), f"{s.count:,}", f"{s.error_count:,}", *(_ms(getattr(s.latency_ms, k)) for k in ("p50", "p90", "p99", "max")))
    console.print(table)


def _signatures(p: Any, console: Console) -> None:
    if not p.error_signatures:
        console.print("[green]No error spans.[/green]")
        return
    table = _table(f"Error signatures ({len(p.error_signatures)})", "id", "signature", "span", "count", "traces", "example trace")
    for s in p.error_signatures[:TOP_ROWS]:
        table.add_row(s.id, Text(s.signature), Text(s.span_name), f"{s.count:,}", f"{s.trace_count:,}", s.trace_ids[0] if s.trace_ids else "")
    console.print(table)
    if p.hidden_failures.count:
        spans = escape(", ".join(f"{b.span_name} ({b.count:,})" for b in p.hidden_failures.by_span[:6]))
        console.print(f"Hidden failures: {p.hidden_failures.count:,} traces ended OK with a failed span inside: {spans}")


def _tools(p: Any, console: Console) -> None:
    if not p.tools:
        return
    table = _table("Tools", "tool", "calls", "errors", "traces", "p50 ms", "p99 ms")
    for t in p.tools[:TOP_ROWS]:
        table.add_row(Text(t.name), f"{t.calls:,}", f"{t.errors:,}", f"{t.trace_count:,}", _ms(t.latency_ms.p50), _ms(t.latency_ms.p99))
    console.print(table)


def _trajectory(p: Any, console: Console) -> None:
    t = p.trajectory
    if not t.scanned:
        return
    table = _table(f"Trajectories (the {t.scanned:,} most recent traces, read whole)", "what", "traces", "example trace")
    rows = [
        ("errors never recovered from", t.unrecovered_errors), ("errors recovered by a later success", t.recovered_errors),
        ("run ended right after an error", t.error_at_end), ("same call 3 times in a row", t.repeated_calls),
        ("error text in an OK span's output", t.error_text), ("agent admits made-up data", t.made_up_data),
        ("time/turn/step limit reached", t.limit_reached), ("loop self-report", t.loop_reports),
        ("action with no user turn since the last tool result", t.unconfirmed_actions), ("no tool called", t.no_tool),
        ("ended on a tool result nothing read", t.unanswered_end),
        (f"last step lacks the completion marker {t.completion_marker!r}", t.unfinished),
    ]
    for label, found in rows:
        if found.count:
            table.add_row(label, f"{found.count:,}", found.trace_ids[0] if found.trace_ids else "")
    console.print(table)
    if t.error_text_kinds:
        console.print("Error text: " + escape(", ".join(f"{k.name} {k.count:,}" for k in t.error_text_kinds)), highlight=False)
    if t.synthetic_timing:
        console.print(f"[yellow]{t.synthetic_timing:,} of {t.scanned:,} traces have synthetic timing (imported transcripts): latency there measures transcript length.[/yellow]")


def _shapes(p: Any, console: Console) -> None:
    table = _table("Input / output shapes (root span)", "side", "kind", "keys", "traces")
    for side, shapes in (("inputs", p.shapes.inputs), ("outputs", p.shapes.outputs)):
        for s in shapes[:5]:
            table.add_row(side, s.kind, Text(", ".join(s.keys)), f"{s.count:,}")
    console.print(table)


def _assessments(p: Any, console: Console) -> None:
    if not p.assessments:
        return
    table = _table("Existing assessments", "name", "kind", "count", "sources", "values")
    for a in p.assessments[:TOP_ROWS]:
        values = f"mean {a.numeric.mean}" if a.numeric else ", ".join(f"{k}: {v:,}" for k, v in list(a.values.items())[:5])
        table.add_row(Text(a.name), a.kind, f"{a.count:,}", ", ".join(f"{k} {v:,}" for k, v in a.sources.items()), Text(values))
    console.print(table)


def _odd(p: Any, console: Console) -> None:
    odd = {k: v for k, v in p.odd_data.items() if v.count}
    if odd:
        console.print("Odd data (counted, not fatal): " + ", ".join(f"{k.replace('_', ' ')} {v.count:,}" for k, v in odd.items()))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _lat(stats: Any) -> str:
    return " ".join(f"{k} {_ms(getattr(stats, k))}" for k in ("p50", "p90", "p99", "max"))


def _counts(stats: Any) -> str:
    return "-" if stats.mean is None else f"mean {stats.mean}, p50 {stats.p50}, p90 {stats.p90}, max {stats.max}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)

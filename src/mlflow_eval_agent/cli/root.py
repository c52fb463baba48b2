"""Root options: run the agent autonomously (-a), interactively (-i), or ask one question."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..databricks import adapt_settings
from ..settings import Settings, apply_tracing_environment, resolve_settings
from ._errors import EXIT_USAGE, fail, user_errors

ROOT_FLAGS = "root_flags"


def settings_from(flags: dict[str, Any]) -> Settings:
    """Resolve settings once per command (flags > env/.env > defaults), then adapt them for Databricks
    (and give MLflow the SQL warehouse for Unity Catalog traces)."""
    settings = adapt_settings(resolve_settings({k: v for k, v in flags.items() if k != "anthropic_base_url"}), base_url=flags.get("anthropic_base_url"))
    apply_tracing_environment(settings)
    return settings


def root(
    ctx: typer.Context,
    autonomous: Annotated[bool, typer.Option("-a", "--autonomous", help="Analyse the traces, plan and build the evaluation suite.")] = False,
    interactive: Annotated[bool, typer.Option("-i", "--interactive", help="Open a chat about the experiment's traces.")] = False,
    experiment_id: Annotated[str | None, typer.Option("-e", "--experiment-id", help="MLflow experiment whose traces to evaluate.")] = None,
    session_id: Annotated[str | None, typer.Option("--session-id", help="Resume (or name) a session; completed tasks are never redone.")] = None,
    volume_path: Annotated[str | None, typer.Option("--volume-path", help="Where sessions live: a local folder or /Volumes/<catalog>/<schema>/<volume>. Default .eval-agent")] = None,
    max_iterations: Annotated[int | None, typer.Option("--max-iterations", min=1, help="Most agent sessions in this session, over all its runs (default 20).")] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", min=1, help="Attempts per task before it is marked failed (default 3).")] = None,
    max_budget_usd: Annotated[float | None, typer.Option("--max-budget-usd", min=0.01, help="Stop starting agent sessions once this session spent this much, over all its runs (default 10).")] = None,
    limit_stop_ok: Annotated[bool, typer.Option("--limit-stop-ok", help="Exit 0, not 3, when the run stops at --max-iterations or --max-budget-usd (jobs: no retry).")] = False,
    model: Annotated[str | None, typer.Option("--model", help="Claude model for the agent (env MODEL).")] = None,
    judge_model: Annotated[str | None, typer.Option("--judge-model", help="Model for the suite's LLM judges, e.g. anthropic:/claude-sonnet-4-5 (env MLFLOW_GENAI_JUDGE_DEFAULT_MODEL; default: the agent's own provider when its credential is set).")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (env MLFLOW_TRACKING_URI).")] = None,
    agent_experiment_id: Annotated[str | None, typer.Option("--agent-experiment-id", help="Trace the agent's own run into this experiment.")] = None,
    allow_annotate: Annotated[bool, typer.Option("--allow-annotate", help="Let the agent tag traces and log feedback/expectations on them.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Build the plan and suite without a model, from the trace profile.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show every tool call and the model's text.")] = False,
    secret_scope: Annotated[str | None, typer.Option("--secret-scope", help="Databricks secret scope holding the model token (env EVAL_AGENT_SECRET_SCOPE).")] = None,
    secret_key: Annotated[str | None, typer.Option("--secret-key", help="Key of the model token in that scope (env EVAL_AGENT_SECRET_KEY).")] = None,
    model_auth: Annotated[str | None, typer.Option("--model-auth", help="Databricks: 'secret' (the token in --secret-scope/--secret-key) or 'job' (the job's own identity, a token refreshed as it runs).")] = None,
    anthropic_base_url: Annotated[str | None, typer.Option("--anthropic-base-url", help="Model gateway URL (env ANTHROPIC_BASE_URL); on Databricks default https://<workspace>/serving-endpoints/anthropic.")] = None,
    sql_warehouse_id: Annotated[str | None, typer.Option("--sql-warehouse-id", help="Databricks SQL warehouse MLflow reads Unity Catalog traces through (env MLFLOW_TRACING_SQL_WAREHOUSE_ID).")] = None,
    trace_location: Annotated[str | None, typer.Option("--trace-location", help="Traces stored in Unity Catalog: <catalog>.<schema>[.<table_prefix>] (Databricks; instead of -e; env EVAL_AGENT_TRACE_LOCATION).")] = None,
) -> None:
    flags = {
        "experiment_id": experiment_id,
        "session_id": session_id,
        "volume_path": volume_path,
        "max_iterations": max_iterations,
        "max_attempts": max_attempts,
        "max_budget_usd": max_budget_usd,
        "limit_stop_ok": limit_stop_ok or None,
        "model": model,
        "judge_model": judge_model,
        "tracking_uri": tracking_uri,
        "agent_experiment_id": agent_experiment_id,
        "allow_annotate": allow_annotate or None,
        "offline": offline or None,
        "verbose": verbose or None,
        "secret_scope": secret_scope,
        "secret_key": secret_key,
        "model_auth": model_auth,
        "anthropic_base_url": anthropic_base_url,
        "sql_warehouse_id": sql_warehouse_id,
        "trace_location": trace_location,
    }
    ctx.obj = {ROOT_FLAGS: flags}
    if ctx.invoked_subcommand:
        return
    if autonomous and interactive:
        raise fail("Choose one of -a/--autonomous and -i/--interactive.", EXIT_USAGE)
    if not (autonomous or interactive):
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    with user_errors():
        settings = settings_from(flags)
        if autonomous:
            from ..runner import run_autonomous
            from ..settings import needs_experiment_for_runs

            if why := needs_experiment_for_runs(settings):
                raise fail(why, EXIT_USAGE)

            code = run_autonomous(settings)
        else:
            from ..repl import run_interactive

            code = run_interactive(settings)
    raise typer.Exit(code)


def ask(
    ctx: typer.Context,
    question: Annotated[list[str], typer.Argument(help="The question, e.g. \"why do my traces fail?\"")],
) -> None:
    """Ask one question about the experiment's traces and print the answer."""
    with user_errors():
        settings = settings_from(ctx.obj[ROOT_FLAGS] if ctx.obj else {})
        from ..repl import ask_once

        code = ask_once(settings, " ".join(question))
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.callback()(root)
    app.command("ask", hidden=True)(ask)

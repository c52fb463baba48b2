"""Agent tools over the trace profile: the whole profile in a few KB, and drill-downs to traces.

The unfiltered profile of the run's experiment is computed once and kept in `state/profile.json`,
so later tool calls and later sessions reuse it (`refresh=true` recomputes it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..store import CorruptStateError
from ..traces.drilldown import hidden_failure_examples, signature_examples, slowest_traces, stratified_sample
from ..traces.spark_engine import profile_with_engine
from ..traces.profile_model import TraceProfile
from ..traces.profile_summary import compact_profile
from ..traces.source import TraceSourceError, mlflow_client, parse_since
from ._base import UNTRUSTED_NOTE, ToolContext, ToolError, agent_tool, render_result

PROFILE_FILE = "state/profile.json"
DRILL_NOTE = (
    "Exact numbers over every matching trace (nearest-rank percentiles). Drill down with signature_examples(signature_id), "
    "hidden_failures, slowest_traces and stratified_sample; get_trace shows one trace in full."
)


class ProfileArgs(BaseModel):
    experiment_id: str | None = Field(default=None, description="Experiment id or name; defaults to the run's experiment.")
    filter: str | None = Field(default=None, description="MLflow trace filter, e.g. \"attributes.status = 'ERROR'\" (single quotes, AND only).")
    since: str | None = Field(default=None, description="Only traces since: 7d, 12h, 2024-05-01, ...")
    max_traces: int | None = Field(default=None, ge=1, description="Profile only the most recent N traces.")
    refresh: bool = Field(default=False, description="Recompute instead of reusing the saved profile.")


def load_profile(ctx: ToolContext, experiment: str | None = None, filter_string: str | None = None,
                 since: str | None = None, max_traces: int | None = None, refresh: bool = False) -> TraceProfile:
    """The profile for these arguments: the saved one when it fits, else freshly computed."""
    experiment = ctx.experiment_id(experiment)
    default_scope = not (filter_string or since or max_traces)
    if default_scope and not refresh:
        cached = _cached(ctx)
        if cached is not None and experiment in (cached.experiment_id, cached.experiment_name) and _is_default_scope(cached):
            return cached
    try:
        # The engine: Spark SQL over the UC tables when the traces live in Unity Catalog and Spark is here.
        profile = profile_with_engine(ctx.settings.tracking_uri, experiment, filter_string, parse_since(since) if since else None, max_traces,
                                      trace_location=ctx.settings.trace_location, sql_warehouse_id=ctx.settings.sql_warehouse_id)
    except TraceSourceError as exc:
        raise ToolError(str(exc)) from None
    if default_scope:
        ctx.store.write_model(PROFILE_FILE, profile)
    return profile


def _cached(ctx: ToolContext) -> TraceProfile | None:
    try:
        return ctx.store.read_model(PROFILE_FILE, TraceProfile)
    except CorruptStateError:
        return None  # moved aside by the store; recompute


def _is_default_scope(profile: TraceProfile) -> bool:
    s = profile.source
    return not (s.filter_string or s.since_ms is not None or s.max_traces)


@agent_tool(
    "profile",
    "Exact statistics over every trace of the experiment (a few KB whatever its size): trace states, latency "
    "percentiles, span and tool tables, error signatures with example trace ids, hidden failures (trace OK but a "
    "span failed), tokens, LLM calls and models, retrieval that returned nothing, empty outputs, input/output "
    "shapes, sessions, existing assessments. Start here; quote its numbers rather than estimating.",
    ProfileArgs,
)
def profile_tool(ctx: ToolContext, args: ProfileArgs) -> dict[str, Any]:
    profile = load_profile(ctx, args.experiment_id, args.filter, args.since, args.max_traces, args.refresh)
    note = f"{DRILL_NOTE} {UNTRUSTED_NOTE}"
    # The budget counts the bytes of the text the agent receives: this whole result, as rendered.
    view = compact_profile(profile, size=lambda v: len(render_result({"note": note, "profile": v}).encode("utf-8")))
    return {"note": note, "profile": view}


class SignatureArgs(BaseModel):
    signature_id: str = Field(min_length=4, description="An error signature id from the profile (sig-...).")
    limit: int = Field(default=3, ge=1, le=5, description="Example traces to show.")


@agent_tool(
    "signature_examples",
    "Example traces of one error signature from the profile: the failing span, its exception type and raw message, "
    "its inputs, and the trace's request and response (truncated).",
    SignatureArgs,
)
def signature_examples_tool(ctx: ToolContext, args: SignatureArgs) -> dict[str, Any]:
    profile = load_profile(ctx)
    try:
        found = signature_examples(ctx.settings.tracking_uri, profile, args.signature_id, args.limit)
    except KeyError as exc:
        raise ToolError(str(exc.args[0])) from None
    except TraceSourceError as exc:
        raise ToolError(str(exc)) from None
    return {"note": UNTRUSTED_NOTE, **found}


class HiddenArgs(BaseModel):
    limit: int = Field(default=3, ge=1, le=10, description="Traces to show.")


@agent_tool(
    "hidden_failures",
    "Traces that ended OK although a span inside them failed (an error swallowed by the app): which spans failed and "
    "with what message. The profile gives their count and which spans they come from.",
    HiddenArgs,
)
def hidden_failures_tool(ctx: ToolContext, args: HiddenArgs) -> dict[str, Any]:
    profile = load_profile(ctx)
    try:
        examples = hidden_failure_examples(ctx.settings.tracking_uri, profile, args.limit)
    except TraceSourceError as exc:
        raise ToolError(str(exc)) from None
    return {
        "note": UNTRUSTED_NOTE,
        "count": profile.hidden_failures.count,
        "by_span": [b.model_dump() for b in profile.hidden_failures.by_span[:10]],
        "examples": examples,
    }


class SlowestArgs(BaseModel):
    limit: int = Field(default=5, ge=1, le=20)
    filter: str | None = Field(default=None, description="Optional MLflow trace filter.")
    experiment_id: str | None = Field(default=None, description="Defaults to the run's experiment.")


@agent_tool(
    "slowest_traces",
    "The slowest traces (by MLflow search over all traces), each with its three slowest spans, to see what makes "
    "them slow.",
    SlowestArgs,
)
def slowest_traces_tool(ctx: ToolContext, args: SlowestArgs) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    try:
        rows = slowest_traces(mlflow_client(ctx.settings.tracking_uri), ctx.experiment_id(args.experiment_id), args.limit, args.filter)
    except TraceSourceError as exc:
        raise ToolError(str(exc)) from None
    except MlflowException as exc:
        raise ToolError(f"The search failed: {exc.message.splitlines()[0] if exc.message else exc}. Check the filter.") from None
    return {"note": UNTRUSTED_NOTE, "traces": rows}


class SampleArgs(BaseModel):
    size: int = Field(default=20, ge=1, le=100, description="How many traces.")


@agent_tool(
    "stratified_sample",
    "A stratified sample of trace ids for an evaluation dataset: examples of every error signature, hidden failures, "
    "empty outputs, empty retrieval and slow traces, plus normal OK traffic (about a third). Each id says its stratum.",
    SampleArgs,
)
def stratified_sample_tool(ctx: ToolContext, args: SampleArgs) -> dict[str, Any]:
    items = stratified_sample(load_profile(ctx), args.size)
    return {"size": len(items), "traces": [item.model_dump() for item in items]}


TOOLS = [profile_tool, signature_examples_tool, hidden_failures_tool, slowest_traces_tool, stratified_sample_tool]

"""The trace profile document (schema version 1), as pydantic models.

Field names are a public contract (`analyze --json`, the agent's `profile` tool, the offline
planner, `state/profile.json`); docs/profile-schema.md describes every field. Add fields freely;
renaming or removing one needs a new schema_version.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


class LatencyStats(BaseModel):
    """Nearest-rank percentiles on exact values, in milliseconds; None when nothing was timed."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None


class HistogramBin(BaseModel):
    lower_ms: float
    upper_ms: float
    count: int


class TimeBucket(BaseModel):
    start_ms: int
    end_ms: int
    states: dict[str, int] = Field(description="Traces that started in [start_ms, end_ms), by state.")


class CountStats(BaseModel):
    """A distribution of per-trace (or per-session) counts: mean and nearest-rank percentiles."""

    mean: float | None = None
    p50: int | None = None
    p90: int | None = None
    max: int | None = None


class SpanStats(BaseModel):
    name: str
    span_type: str
    count: int
    error_count: int
    latency_ms: LatencyStats


class ErrorSignature(BaseModel):
    id: str = Field(description="Stable short id; pass it to the signature_examples tool.")
    signature: str = Field(description="'<ExceptionType>: <normalised message>'")
    exception_type: str | None
    span_name: str
    count: int = Field(description="Spans where this error originated (not counting its propagation to parents).")
    trace_count: int
    trace_ids: list[str] = Field(description="Up to 5 example traces, most recent first.")
    example_message: str = Field(description="One raw message (untrusted, truncated).")


class SpanCount(BaseModel):
    span_name: str
    count: int


class HiddenFailures(BaseModel):
    """Traces whose state is OK although a span inside them failed (an error swallowed somewhere)."""

    count: int = 0
    trace_ids: list[str] = Field(default_factory=list)
    by_span: list[SpanCount] = Field(default_factory=list)


class ToolStats(BaseModel):
    name: str
    calls: int
    errors: int
    trace_count: int
    latency_ms: LatencyStats


class TokenTotals(BaseModel):
    input: int = 0
    output: int = 0
    total: int = 0
    traces_with_usage: int = 0


class NamedCount(BaseModel):
    name: str
    count: int


class LlmUsage(BaseModel):
    calls: int = 0
    traces_with_calls: int = 0
    calls_per_trace: CountStats = Field(default_factory=CountStats)
    models: list[NamedCount] = Field(default_factory=list)
    calls_without_model: int = 0


class RetrieverStats(BaseModel):
    name: str
    spans: int
    empty: int


class Retrieval(BaseModel):
    spans: int = 0
    empty: int = Field(0, description="Retriever spans whose outputs were missing or empty.")
    empty_share: float | None = None
    traces_with_retrieval: int = 0
    traces_with_empty_retrieval: int = 0
    empty_trace_ids: list[str] = Field(default_factory=list)
    by_name: list[RetrieverStats] = Field(default_factory=list)


class Outputs(BaseModel):
    """The root span's inputs and outputs (the trace's request and final answer)."""

    missing: int = Field(0, description="Traces with no final output (absent or null).")
    empty: int = Field(0, description="Traces whose final output is blank text, an empty container or an empty chat reply.")
    missing_ok: int = Field(0, description="Of `missing`, traces whose state is OK.")
    empty_ok: int = Field(0, description="Of `empty`, traces whose state is OK.")
    missing_ok_trace_ids: list[str] = Field(default_factory=list)
    empty_ok_trace_ids: list[str] = Field(default_factory=list)
    inputs_missing: int = 0


class Shape(BaseModel):
    kind: str = Field(description="chat_messages, chat_completion, message, text, object, list, number, boolean, null, non_json, huge")
    keys: list[str] = Field(default_factory=list, description="Top-level keys of an object (first 12, sorted).")
    count: int
    example_trace_id: str


class Shapes(BaseModel):
    inputs: list[Shape] = Field(default_factory=list)
    outputs: list[Shape] = Field(default_factory=list)


class Sessions(BaseModel):
    traces_with_session: int = 0
    distinct_sessions: int = 0
    traces_per_session: CountStats = Field(default_factory=CountStats)
    example_session_ids: list[str] = Field(default_factory=list)


class NumericStats(BaseModel):
    count: int
    min: float
    max: float
    mean: float


class AssessmentSummary(BaseModel):
    name: str
    kind: str = Field(description="feedback, expectation or issue")
    count: int
    trace_count: int
    sources: dict[str, int] = Field(description="By source type: HUMAN, LLM_JUDGE, CODE, ...")
    values: dict[str, int] = Field(description="Count per value (bool/text values, first 20 distinct; the rest under '(other)').")
    numeric: NumericStats | None = None
    errors: int = 0


class TimeRange(BaseModel):
    first_ms: int | None = None
    last_ms: int | None = None
    first: str | None = None
    last: str | None = None


class SlowTrace(BaseModel):
    trace_id: str
    latency_ms: float
    state: str


class OddCount(BaseModel):
    count: int = 0
    trace_ids: list[str] = Field(default_factory=list)


class Trajectory(BaseModel):
    """What the trajectories show (traces/trajectory.py), over the most recent `scanned` traces: these
    counts need every span's contents, so they are read from a sample, not from every trace."""

    scanned: int = Field(0, description="Traces whose spans were read for these counts (the most recent ones).")
    unrecovered_errors: OddCount = Field(default_factory=OddCount, description="A span failed and no later span of the same name succeeded.")
    recovered_errors: OddCount = Field(default_factory=OddCount, description="A span failed and a later span of the same name succeeded (a retry that worked).")
    error_at_end: OddCount = Field(default_factory=OddCount, description="The last step of the run failed.")
    repeated_calls: OddCount = Field(default_factory=OddCount, description="A tool called 3 times in a row with the same inputs.")
    repeated_tools: list[NamedCount] = Field(default_factory=list)
    error_text: OddCount = Field(default_factory=OddCount, description="A tool or model output reports an error although its span did not fail.")
    error_text_kinds: list[NamedCount] = Field(default_factory=list, description="http_error, traceback, refusal, access_denied, captcha, exit_code, not_found: traces per kind.")
    made_up_data: OddCount = Field(default_factory=OddCount, description="The agent says it used hypothetical, simulated or placeholder data.")
    limit_reached: OddCount = Field(default_factory=OddCount, description="A span reports a time, turn or step limit reached.")
    loop_reports: OddCount = Field(default_factory=OddCount, description="A framework or the agent reports being stuck in a loop.")
    conversations: int = Field(0, description="Traces holding a conversation (two or more user turns inside the trace, e.g. imported transcripts).")
    actions: list[NamedCount] = Field(default_factory=list, description="Consequential tools called (names that change something: cancel_, update_, send_ ...): traces per tool.")
    unconfirmed_actions: OddCount = Field(default_factory=OddCount, description="A consequential tool called with no user turn since the last tool result (in traces with a user turn).")
    unconfirmed_tools: list[NamedCount] = Field(default_factory=list)
    no_tool: OddCount = Field(default_factory=OddCount, description="Traces that called no tool at all.")
    synthetic_timing: int = Field(0, description="Traces whose timing an importer marked synthetic (durations measure transcript length, not time).")
    unanswered_end: OddCount = Field(default_factory=OddCount, description="The run's last step was a tool call that succeeded: no model turn read its result (the run stopped, or was stopped, mid-task).")
    completion_marker: str | None = Field(None, description="The upper-case token (TERMINATE, ###STOP###) that ends the last step of at least a quarter of the runs: the framework's way of saying it finished.")
    unfinished: OddCount = Field(default_factory=OddCount, description="Runs whose last step does not end with the completion marker (cut off by a turn or time limit, or abandoned); none when there is no marker.")


class ProfileSource(BaseModel):
    tracking_uri: str | None = None
    path: str = Field(description="sql (local store read directly), sql+search (filtered), or api")
    filter_string: str | None = None
    since_ms: int | None = None
    max_traces: int | None = None
    truncated: bool = Field(False, description="True when max_traces stopped the scan before the last matching trace.")
    span_traces: int | None = Field(None, description="The API path's span budget: spans were read for at most this many traces, the newest (None: every trace).")
    seconds: float = 0.0


class TraceProfile(BaseModel):
    schema_version: int = SCHEMA_VERSION
    experiment_id: str
    experiment_name: str | None = None
    generated_at: str
    source: ProfileSource
    trace_count: int = 0
    span_count: int = 0
    span_trace_count: int | None = Field(
        None, description="When not every trace's spans were read: how many were (the newest; the API path reads the spans of the "
                          "newest --span-traces traces). Span-level figures (spans, errors, signatures, tools, hidden failures, LLM "
                          "calls, retrieval, outputs, shapes) count those traces only; trace-level ones count all. None: every trace.")
    time_range: TimeRange = Field(default_factory=TimeRange)
    status_counts: dict[str, int] = Field(default_factory=dict)
    latency_ms: LatencyStats = Field(default_factory=LatencyStats)
    latency_histogram: list[HistogramBin] = Field(default_factory=list, description="Trace latencies in 24 bins (log-spaced when they span > 20x).")
    timeline: list[TimeBucket] = Field(default_factory=list, description="Trace states over time: up to 30 equal buckets from the first to the last trace.")
    spans_per_trace: CountStats = Field(default_factory=CountStats)
    trace_names: list[NamedCount] = Field(default_factory=list)
    spans: list[SpanStats] = Field(default_factory=list)
    traces_with_error_spans: int = 0
    error_signatures: list[ErrorSignature] = Field(default_factory=list)
    hidden_failures: HiddenFailures = Field(default_factory=HiddenFailures)
    tools: list[ToolStats] = Field(default_factory=list)
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    llm: LlmUsage = Field(default_factory=LlmUsage)
    retrieval: Retrieval = Field(default_factory=Retrieval)
    outputs: Outputs = Field(default_factory=Outputs)
    shapes: Shapes = Field(default_factory=Shapes)
    sessions: Sessions = Field(default_factory=Sessions)
    assessments: list[AssessmentSummary] = Field(default_factory=list)
    slowest_traces: list[SlowTrace] = Field(default_factory=list)
    sample_trace_ids: list[str] = Field(
        default_factory=list, description="Up to 25 OK traces without error spans, chosen by a hash of the id (stable, order-free)."
    )
    odd_data: dict[str, OddCount] = Field(default_factory=dict)
    trajectory: Trajectory = Field(default_factory=Trajectory)

    @property
    def traces_with_spans_read(self) -> int:
        """The traces the span-level figures count: divide span-level counts by this, not trace_count."""
        return self.trace_count if self.span_trace_count is None else self.span_trace_count

    def signature(self, signature_id: str) -> ErrorSignature | None:
        return next((s for s in self.error_signatures if s.id == signature_id), None)

"""What a trace's trajectory shows, read in plain Python from MLflow `Trace` objects.

Per trace (`trajectory_facts`): errors the agent never recovered from (no later success of the
same span name) and those it did, the run ending right after an error, the same tool called with
the same arguments 3 times in a row, error text in a span's output although the span did not fail
(HTTP 4xx/5xx, tracebacks, content-filter refusals, access denied, CAPTCHA pages, non-zero exit
codes), the agent admitting made-up data, limit and loop self-reports, a consequential tool called
with no user turn since the last tool result (counted for traces with a user turn; the planner
proposes the check only where most traces are conversations), no tool used at all, and whether an importer marked
the timing synthetic, and how the run ended: on a tool result no model turn read (`unanswered_end`), or
without the completion marker most runs end with (`unfinished`: a framework's `TERMINATE`-like word,
found by `completion_marker` when a share of runs end on the same upper-case token; a run cut off by a
turn or time limit that recorded no message about it ends without it). The profile counts them over a sample (`scan`), the offline planner reads the
same facts per dataset trace as evidence for the checks it proposes. This is a second reading,
independent of the check engine: where they disagree, the planner drops the check and says why.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .failure_text import admits_made_up_data, error_kinds, is_consequential, reports_limit, reports_loop

REPEATS = 3  # identical consecutive calls that make a loop
SYNTHETIC_TIMING_KEY = "eval_agent.import.timing"
MODEL_TYPES = ("CHAT_MODEL", "LLM")


@dataclass
class TrajectoryFacts:
    """The facts one trace shows; `found` holds the names below that apply."""

    found: set[str] = field(default_factory=set)
    error_kinds: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)  # consequential tools it called
    unconfirmed: set[str] = field(default_factory=set)  # of those, called with no user turn since the last tool result
    repeated: set[str] = field(default_factory=set)  # tools called REPEATS times in a row with the same inputs
    unrecovered: set[str] = field(default_factory=set)  # names of spans that failed with no later success
    final_token: str | None = None  # the marker-like token the last step's text ends with (see marker_token)


FACTS = (
    "unrecovered_error", "recovered_error", "error_at_end", "repeated_calls", "error_text", "made_up_data",
    "limit_reached", "loop_report", "unconfirmed_action", "user_turns", "no_tool", "synthetic_timing", "unanswered_end",
)
# The facts that are failures (the others describe the trace: a retry that worked, a conversation).
FAILURES = ("unrecovered_error", "error_at_end", "repeated_calls", "error_text", "made_up_data", "limit_reached",
            "loop_report", "unconfirmed_action", "no_tool", "unanswered_end")
# A completion marker: the same marker-like token ends the last step of at least this share of the
# scanned runs (and at least MARKER_MIN_RUNS of them). Below that it is a phrase, not a convention.
MARKER_SHARE = 0.25
MARKER_MIN_RUNS = 3
_MARKER_STRIP = ".,;:!?\"'`*"  # trailing punctuation after a marker (the preset allows the same)


def trajectory_facts(trace: Any) -> TrajectoryFacts:
    facts = TrajectoryFacts()
    spans = sorted(getattr(getattr(trace, "data", None), "spans", None) or [], key=lambda s: (getattr(s, "start_time_ns", None) or 0))
    steps = [s for s in spans if getattr(s, "parent_id", None)]
    meta = getattr(getattr(trace, "info", None), "trace_metadata", None) or {}
    if meta.get(SYNTHETIC_TIMING_KEY) == "synthetic":
        facts.found.add("synthetic_timing")
    _errors(steps, facts)
    _repeats(steps, facts)
    _text(steps, facts)
    _actions(steps, facts)
    _ending(steps, facts)
    if spans and not any(_type(s) == "TOOL" for s in spans):
        facts.found.add("no_tool")
    return facts


def _status(span: Any) -> str:
    code = getattr(getattr(span, "status", None), "status_code", None)
    return str(getattr(code, "value", code) or "UNSET").upper().replace("STATUS_CODE_", "")


def _type(span: Any) -> str:
    return str(getattr(span, "span_type", None) or "UNKNOWN").upper()


def _errors(steps: list[Any], facts: TrajectoryFacts) -> None:
    failed = [_status(s) == "ERROR" for s in steps]
    last_success = {s.name: i for i, s in enumerate(steps) if not failed[i]}
    for i, span in enumerate(steps):
        if failed[i]:
            later = last_success.get(span.name, -1) > i
            facts.found.add("recovered_error" if later else "unrecovered_error")
            if not later:
                facts.unrecovered.add(span.name)
    if steps and failed[-1]:
        facts.found.add("error_at_end")


def _repeats(steps: list[Any], facts: TrajectoryFacts) -> None:
    run, last = 0, None
    for span in (s for s in steps if _type(s) == "TOOL"):
        key = (span.name, json.dumps(getattr(span, "inputs", None), sort_keys=True, default=str))
        run = run + 1 if key == last else 1
        last = key
        if run >= REPEATS:
            facts.found.add("repeated_calls")
            facts.repeated.add(span.name)


def answer_text(outputs: Any) -> str:
    """The words of an output: a string, a chat message's content, a completion's first choice;
    anything else as compact JSON."""
    if outputs is None:
        return ""
    if isinstance(outputs, str):
        return outputs
    if isinstance(outputs, dict):
        choices = outputs.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or {}
            return answer_text(message.get("content") if isinstance(message, dict) else choices[0].get("text"))
        if isinstance(outputs.get("messages"), list) and outputs["messages"]:
            return answer_text(outputs["messages"][-1])
        for key in ("content", "answer", "output", "response", "text", "result"):
            if key in outputs:
                return answer_text(outputs[key])
    if isinstance(outputs, list):
        if outputs and all(isinstance(p, dict) and "text" in p for p in outputs):
            return "".join(str(p["text"]) for p in outputs)
        if outputs and isinstance(outputs[-1], dict) and "content" in outputs[-1]:
            return answer_text(outputs[-1]["content"])
    return json.dumps(outputs, ensure_ascii=False, default=str)


def _text(steps: list[Any], facts: TrajectoryFacts) -> None:
    for span in steps:
        text = answer_text(getattr(span, "outputs", None))
        if not text:
            continue
        if _status(span) != "ERROR" and _type(span) in ("TOOL", *MODEL_TYPES):
            kinds = error_kinds(text)
            if kinds:
                facts.found.add("error_text")
                facts.error_kinds.update(kinds)
        if _type(span) in (*MODEL_TYPES, "AGENT") and admits_made_up_data(text):
            facts.found.add("made_up_data")
        if reports_limit(text):
            facts.found.add("limit_reached")
        if reports_loop(text):
            facts.found.add("loop_report")


def marker_token(text: str) -> str | None:
    """The last whitespace-separated token of `text`, trailing punctuation stripped, when it looks
    like a framework's marker rather than a word: at least 4 characters, 3 or more letters, none
    lower-case (`TERMINATE`, `###STOP###`, `[DONE]`). None otherwise."""
    words = text.split()
    token = words[-1].rstrip(_MARKER_STRIP) if words else ""
    letters = [c for c in token if c.isalpha()]
    if len(token) < 4 or len(letters) < 3 or any(c.islower() for c in letters) or len(token) > 40:
        return None
    return token


def _ending(steps: list[Any], facts: TrajectoryFacts) -> None:
    if not steps:
        return
    last = steps[-1]
    if _type(last) == "TOOL" and _status(last) != "ERROR":  # a failed last step is error_at_end
        facts.found.add("unanswered_end")
    facts.final_token = marker_token(answer_text(getattr(last, "outputs", None)))


def completion_marker(final_tokens: Counter[str], scanned: int) -> str | None:
    """The marker most runs end with, when one is common enough to be the framework's convention."""
    if not final_tokens or not scanned:
        return None
    token, runs = final_tokens.most_common(1)[0]
    return token if runs >= MARKER_MIN_RUNS and runs >= MARKER_SHARE * scanned else None


def ends_unfinished(final_token: str | None, marker: str | None) -> bool:
    """A run whose last step does not end with the completion marker (never, when there is none)."""
    return marker is not None and final_token != marker


def is_user_turn(span: Any) -> bool:
    """A model call whose newest input message is the user's."""
    inputs = getattr(span, "inputs", None)
    messages = inputs.get("messages") if isinstance(inputs, dict) else None
    return _type(span) in MODEL_TYPES and isinstance(messages, list) and bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "user"


def _actions(steps: list[Any], facts: TrajectoryFacts) -> None:
    since_tool_user = False
    user_turns = 0
    for span in steps:
        if is_user_turn(span):
            since_tool_user = True
            user_turns += 1
        elif _type(span) == "TOOL":
            if is_consequential(span.name):
                facts.actions.add(span.name)
                if not since_tool_user:
                    facts.unconfirmed.add(span.name)
            since_tool_user = False
    if user_turns >= 2:
        facts.found.add("user_turns")  # a conversation inside the trace
    if not user_turns:
        facts.unconfirmed.clear()  # no user inside the trace to ask
    elif facts.unconfirmed:
        facts.found.add("unconfirmed_action")


@dataclass
class TrajectoryCounts:
    """Facts counted over scanned traces, with example ids (most recent first)."""

    scanned: int = 0
    traces: dict[str, list[str]] = field(default_factory=dict)
    error_kinds: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    unconfirmed: Counter[str] = field(default_factory=Counter)
    repeated: Counter[str] = field(default_factory=Counter)
    endings: list[tuple[str, str | None]] = field(default_factory=list)  # (trace id, final token), newest first

    def add(self, trace_id: str, facts: TrajectoryFacts) -> None:
        self.scanned += 1
        for name in facts.found:
            self.traces.setdefault(name, []).append(trace_id)
        self.error_kinds.update(facts.error_kinds)
        self.actions.update(facts.actions)
        self.unconfirmed.update(facts.unconfirmed)
        self.repeated.update(facts.repeated)
        self.endings.append((trace_id, facts.final_token))

    @property
    def final_tokens(self) -> Counter[str]:
        """Runs per marker-like token their last step ends with."""
        return Counter(token for _, token in self.endings if token)

    def unfinished(self) -> tuple[str | None, list[str]]:
        """The completion marker, and the runs whose last step does not end with it."""
        marker = completion_marker(self.final_tokens, self.scanned)
        return marker, [tid for tid, token in self.endings if ends_unfinished(token, marker)]


def count(traces: Iterable[Any]) -> TrajectoryCounts:
    counts = TrajectoryCounts()
    for trace in traces:
        counts.add(trace.info.trace_id, trajectory_facts(trace))
    return counts


EXAMPLE_IDS = 10
SCAN_PAGE = 100
DEFAULT_SCAN = 1000  # most recent traces read whole for the trajectory counts


class _RowSpan:
    """A span read from the store's table (traces/spans.py SpanRow) seen as the facts read it."""

    __slots__ = ("name", "span_type", "span_id", "parent_id", "start_time_ns", "status", "_row")

    def __init__(self, row: Any):
        self.name, self.span_type, self.span_id, self.parent_id = row.name, row.span_type, row.span_id, row.parent_id
        self.start_time_ns, self._row = row.start_ns, row
        self.status = SimpleNamespace(status_code=row.status)

    @property
    def inputs(self) -> Any:
        from .spans import INPUTS

        return self._row.payload(INPUTS).value

    @property
    def outputs(self) -> Any:
        from .spans import OUTPUTS

        return self._row.payload(OUTPUTS).value


def record_view(record: Any) -> Any:
    """A TraceRecord from the SQL reader (full content) shaped like the `Trace` the facts read."""
    info = SimpleNamespace(trace_id=record.trace_id, trace_metadata=record.metadata)
    return SimpleNamespace(info=info, data=SimpleNamespace(spans=[_RowSpan(r) for r in record.rows or []]))


def scan(client: Any, experiment_id: str, filter_string: str | None, limit: int = DEFAULT_SCAN, fast: bool = True) -> TrajectoryCounts:
    """Count the facts over the `limit` most recent matching traces (spans included): straight from
    a local SQL store's tables when possible (~20x faster), else through `search_traces`."""
    from .query import TraceQuery
    from .sql_reader import SqlReader, sql_schema_known, sql_store

    if fast and not filter_string and sql_store(client) is not None and sql_schema_known():
        counts = TrajectoryCounts()
        for record in SqlReader(client, TraceQuery(experiment_id, max_traces=limit), full_content=True).records():
            if counts.scanned >= limit:
                break
            trace = record_view(record) if record.rows is not None else _api_trace(client, record.trace_id)
            counts.add(record.trace_id, trajectory_facts(trace))
        return counts
    from .api_reader import with_spans

    counts, token = TrajectoryCounts(), None
    while counts.scanned < limit:
        page = client.search_traces(
            locations=[experiment_id], filter_string=filter_string, max_results=min(SCAN_PAGE, limit - counts.scanned),
            order_by=["timestamp_ms DESC"], page_token=token, include_spans=False,
        )
        for trace in with_spans(client.tracking_uri, page):  # spans from each trace's location (locations.py)
            counts.add(trace.info.trace_id, trajectory_facts(trace))
        token = getattr(page, "token", None)
        if not token or not page:
            break
    return counts


def as_model(counts: TrajectoryCounts) -> Any:
    """The profile's `trajectory` section."""
    from .profile_model import NamedCount, OddCount, Trajectory

    def ids(name: str) -> OddCount:
        found = counts.traces.get(name, [])
        return OddCount(count=len(found), trace_ids=found[:EXAMPLE_IDS])

    def named(counter: Counter[str]) -> list[NamedCount]:
        return [NamedCount(name=n, count=c) for n, c in sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:20]]

    marker, unfinished = counts.unfinished()
    return Trajectory(
        scanned=counts.scanned,
        unrecovered_errors=ids("unrecovered_error"), recovered_errors=ids("recovered_error"), error_at_end=ids("error_at_end"),
        repeated_calls=ids("repeated_calls"), repeated_tools=named(counts.repeated),
        error_text=ids("error_text"), error_text_kinds=named(counts.error_kinds),
        made_up_data=ids("made_up_data"), limit_reached=ids("limit_reached"), loop_reports=ids("loop_report"),
        conversations=len(counts.traces.get("user_turns", [])), actions=named(counts.actions),
        unconfirmed_actions=ids("unconfirmed_action"), unconfirmed_tools=named(counts.unconfirmed),
        no_tool=ids("no_tool"), synthetic_timing=len(counts.traces.get("synthetic_timing", [])),
        unanswered_end=ids("unanswered_end"), completion_marker=marker,
        unfinished=OddCount(count=len(unfinished), trace_ids=unfinished[:EXAMPLE_IDS]),
    )


def _api_trace(client: Any, trace_id: str) -> Any:
    """A trace whose spans live outside the store's table (artifacts, archive): MLflow fetches it."""
    return client.get_trace(trace_id)

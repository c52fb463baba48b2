"""The trace profile: exact statistics over every matching trace, in one streaming pass.

`build_profile(...)` reads records page by page (see source.py) and feeds `ProfileBuilder`,
which keeps only aggregates: counters, capped example lists chosen order-free (most recent by
timestamp, or smallest hash), and compact arrays of durations for exact percentiles
(percentiles.py). Nothing per trace is kept except 8 bytes of latency per trace and per span,
9 bytes of start time and state per trace (the timeline), and a small counter per session.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from .accumulators import (
    EXAMPLES,
    MANY_EXAMPLES,
    MAX_NAMED,
    MAX_SIGNATURES,
    MAX_SPAN_KEYS,
    OTHER,
    SLOWEST,
    Examples,
    HashSample,
    AssessmentAcc,
    LatencyAcc,
    OddCounts,
    ShapeAcc,
    SignatureAcc,
)
from .percentiles import CountDistribution, ExactValues, histogram
from .profile_model import (
    CountStats,
    ErrorSignature,
    HiddenFailures,
    HistogramBin,
    LatencyStats,
    LlmUsage,
    NamedCount,
    Outputs,
    ProfileSource,
    Retrieval,
    RetrieverStats,
    Sessions,
    Shape,
    Shapes,
    SlowTrace,
    SpanCount,
    SpanStats,
    TimeBucket,
    TimeRange,
    TokenTotals,
    ToolStats,
    TraceProfile,
)
from . import trajectory
from .api_reader import DEFAULT_SPAN_TRACES, MEMO
from .records import TraceRecord
from .signatures import error_from_span, signature_id
from .trajectory import DEFAULT_SCAN
from .source import TraceQuery, TraceSource, redact_uri, resolve_experiment
from .spans import (
    HUGE_PAYLOAD_CHARS,
    INPUTS,
    LLM_TYPES,
    OUTPUTS,
    STATUS_NAMES,
    Payload,
    SpanRow,
    columns_of,
    is_empty_value,
    looks_like_json,
    model_name,
    row_from_columns,
    shape_of,
    span_row,
    status_code,
    stored_status,
    translated_type,
)

TIMELINE_BUCKETS = 30


class ProfileBuilder:
    """Feed records with `add`; `finish` returns the profile. Memory stays flat-ish (see module doc)."""

    def __init__(self) -> None:
        self.trace_count = 0
        self.span_count = 0
        self.status = Counter[str]()
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.latency = ExactValues()
        self.started_ms = array("q")  # per trace with a start time: when, and its state (an index into state_names)
        self.started_state = array("b")
        self.state_names: list[str] = []
        self.slowest: list[tuple[int, str, str]] = []
        self.spans_per_trace = CountDistribution()
        self.trace_names: Counter[str] = Counter()
        self.span_stats: dict[tuple[str, str], LatencyAcc] = {}
        self.tools: dict[str, LatencyAcc] = {}
        self.signatures: dict[tuple[str | None, str, str], SignatureAcc] = {}
        self.traces_with_error_spans = 0
        self.hidden = 0
        self.hidden_examples = Examples(MANY_EXAMPLES)
        self.hidden_by_span: Counter[str] = Counter()
        self.tokens = [0, 0, 0, 0]  # input, output, total, traces_with_usage
        self.llm_calls = 0
        self.llm_traces = 0
        self.llm_per_trace = CountDistribution()
        self.models: Counter[str] = Counter()
        self.calls_without_model = 0
        self.retrieval = [0, 0, 0, 0]  # spans, empty, traces, traces_with_empty
        self.retrieval_examples = Examples(MANY_EXAMPLES)
        self.retrievers: dict[str, list[int]] = {}
        self.outputs = Counter[str]()
        self.output_examples = {"missing_ok": Examples(MANY_EXAMPLES), "empty_ok": Examples(MANY_EXAMPLES)}
        self.shapes: dict[str, dict[tuple[str, tuple[str, ...]], ShapeAcc]] = {"inputs": {}, "outputs": {}}
        self.sessions: Counter[str] = Counter()  # traces per session id: exact distinct count
        self.session_examples: list[str] = []
        self.traces_with_session = 0
        self.assessments: dict[tuple[str, str], AssessmentAcc] = {}
        self.sample = HashSample()
        self.odd = OddCounts()
        self.spans_unread = 0  # traces counted at trace level only (TraceRecord.spans_read)

    # --- one trace ---------------------------------------------------------------------------
    def add(self, record: TraceRecord) -> None:
        self.trace_count += 1
        self.status[record.state] += 1
        self._trace_level(record)
        if not record.spans_read:
            self.spans_unread += 1
            return
        cols = record.columns if record.columns is not None else [columns_of(r) for r in self._rows(record)]
        self.span_count += len(cols)
        self.spans_per_trace.add(len(cols))
        if not cols:
            self.odd.add("traces_without_spans", record)
            self.llm_per_trace.add(0)
            self._root_payloads(record, None)
            return
        self._span_columns(cols, record)

    def _trace_level(self, record: TraceRecord) -> None:
        ts = record.request_time_ms
        if ts is not None:
            self.first_ms = ts if self.first_ms is None else min(self.first_ms, ts)
            self.last_ms = ts if self.last_ms is None else max(self.last_ms, ts)
            if record.state not in self.state_names and len(self.state_names) < 100:
                self.state_names.append(record.state)
            self.started_ms.append(int(ts))
            self.started_state.append(self.state_names.index(record.state) if record.state in self.state_names else len(self.state_names) - 1)
        if record.execution_ms is None:
            self.odd.add("traces_without_duration", record)
        else:
            self.latency.add(int(record.execution_ms))
            item = (int(record.execution_ms), record.trace_id, record.state)
            if len(self.slowest) < SLOWEST:
                heapq.heappush(self.slowest, item)
            elif item > self.slowest[0]:
                heapq.heapreplace(self.slowest, item)
        if record.tokens:
            t = record.tokens
            self.tokens[0] += int(t.get("input_tokens") or 0)
            self.tokens[1] += int(t.get("output_tokens") or 0)
            self.tokens[2] += int(t.get("total_tokens") or 0)
            self.tokens[3] += 1
        session = record.session_id
        if session:
            self.traces_with_session += 1
            self.sessions[session] += 1
            examples = self.session_examples
            # The EXAMPLES smallest ids; a full list only changes for an id below its largest.
            if session not in examples and (len(examples) < EXAMPLES or session < examples[-1]):
                self.session_examples = sorted([*examples, session])[:EXAMPLES]
        if record.assessments:
            seen: set[tuple[str, str]] = set()
            for a in record.assessments:
                acc = self.assessments.setdefault((a.name, a.kind), AssessmentAcc())
                acc.add(a)
                if (a.name, a.kind) not in seen:
                    seen.add((a.name, a.kind))
                    acc.traces += 1

    def _rows(self, record: TraceRecord) -> list[SpanRow]:
        if record.rows is not None:
            return record.rows
        rows = []
        for span in record.spans:
            row = span_row(span) if isinstance(span, dict) else None
            if row is None:
                self.odd.add("unparseable_spans", record)
            else:
                rows.append(row)
        return rows

    def _span_columns(self, cols: list[tuple], record: TraceRecord) -> None:
        """The hot loop: one pass over a trace's spans as column tuples (spans.SPAN_COLUMNS, ~3 million
        for 100,000 agent traces). Each span costs a few counters and one duration; a SpanRow (and
        its stored JSON's parse) is made only for the spans a statistic reads: roots (payloads),
        retrievers (their outputs), failed spans (their error), model calls without a model column,
        spans without a type, and spans big enough to hold a huge payload."""
        odd = self.odd
        span_stats = self.span_stats
        tools = self.tools
        llm: list[tuple[str, str | None, str | None, Any]] = []  # (span id, parent id, model column, SpanRow or columns)
        errors: list[SpanRow] = []
        roots: list[tuple[tuple[int, str, int], Any]] = []  # (tie-break key, SpanRow or columns)
        retrieval = [0, 0]
        tools_seen: set[str] = set()
        for t in cols:
            _, span_id, parent, name, span_type, status, start, end, model, content, size = t
            # The same normalisation as stored_span_row (idempotent for rows read another way).
            parent = parent or None
            name = name or "(unnamed)"
            end = end or None
            status = STATUS_NAMES.get(status) or status_code(status)
            row = content if isinstance(content, SpanRow) else None
            if not span_type or span_type == "UNKNOWN":
                span_type = "UNKNOWN"
                if row is None:  # the stored JSON may carry a type MLflow infers on load
                    row = row_from_columns(span_id, parent, name, span_type, status, start, end, model, content, size)
                    span_type = row.span_type = translated_type(row) or "UNKNOWN"
            duration = end - start if (start is not None and end is not None and end >= start) else None
            if end is None:
                odd.add("spans_missing_end_time", record)
            elif duration is None:
                odd.add("spans_negative_duration", record)
            if status == "UNSET":
                odd.add("spans_unset_status", record)
            failed = status == "ERROR"
            if size is None or size > HUGE_PAYLOAD_CHARS or parent is None or failed or span_type == "RETRIEVER":
                if row is None:
                    row = row_from_columns(span_id, parent, name, span_type, status, start, end, model, content, size)
                self._payload_checks(row, record)
                if failed:
                    errors.append(row)
            if parent is None:
                roots.append(((start or 0, name, end or 0), row))
            stats = span_stats.get((name, span_type)) or self._span_key(name, span_type, record)
            stats.count += 1
            if failed:
                stats.errors += 1
            if duration is not None:
                stats.durations.add(duration)
            if span_type == "TOOL":
                tool_name = name if (name in tools or len(tools) < MAX_NAMED) else OTHER
                tool = tools.get(tool_name)
                if tool is None:
                    tool = tools[tool_name] = LatencyAcc()
                tool.count += 1
                tool.errors += failed
                if duration is not None:
                    tool.durations.add(duration)
                if tool_name not in tools_seen:
                    tools_seen.add(tool_name)
                    tool.traces += 1
            elif span_type in LLM_TYPES:
                llm.append((span_id, parent, model, row if row is not None else t))
            elif span_type == "RETRIEVER":
                retrieval[0] += 1
                retrieval[1] += self._retriever(row)  # type: ignore[arg-type]  (made above: a retriever is always read)
        root = self._root(roots, cols, record)
        if root is not None:
            self._count_name(self.trace_names, root.name)
        self._root_payloads(record, root)
        parent_of = {t[1]: t[2] or None for t in cols} if (llm or errors) else {}
        llm_calls = self._llm_calls(llm, parent_of, len(cols))
        self.llm_calls += llm_calls
        self.llm_traces += llm_calls > 0
        self.llm_per_trace.add(llm_calls)
        if retrieval[0]:
            self.retrieval[2] += 1
            if retrieval[1]:
                self.retrieval[3] += 1
                self.retrieval_examples.offer(record.trace_id, record.request_time_ms)
        self._errors(errors, parent_of, len(cols), record)

    def _root(self, roots: list[tuple[tuple[int, str, int], Any]], cols: list[tuple], record: TraceRecord) -> SpanRow | None:
        if not roots:
            self.odd.add("traces_without_root", record)
            ids = {t[1] for t in cols}
            roots = [((t[6] or 0, t[3] or "(unnamed)", t[7] or 0), t) for t in cols if (t[2] or None) not in ids]  # orphans: their parent never arrived
        elif len(roots) > 1:
            self.odd.add("traces_with_multiple_roots", record)
        if not roots:
            return None
        # Ties broken by name and end, not by span id: ids are hex in table columns, base64 in span JSON.
        _, found = min(roots, key=lambda r: r[0])
        return _row(found)

    def _llm_calls(self, llm: list[tuple[str, str | None, str | None, Any]], parent_of: dict[str, str | None], limit: int) -> int:
        """Model calls: LLM/CHAT_MODEL spans with no model span below them. Frameworks such as DSPy
        type a whole module as LLM around the real call; counting both would double the calls."""
        if not llm:
            return 0
        llm_ids = {span_id for span_id, _, _, _ in llm}
        wrappers: set[str] = set()
        for _, parent, _, _ in llm:
            hops = 0
            while parent is not None and hops < limit:
                if parent in llm_ids:
                    wrappers.add(parent)
                parent, hops = parent_of.get(parent), hops + 1
        calls = 0
        for span_id, _, model, found in llm:
            if span_id in wrappers:
                continue
            calls += 1
            model = model or model_name(_row(found))
            if model:
                self._count_name(self.models, model)
            else:
                self.calls_without_model += 1
        return calls

    def _span_key(self, name: str, span_type: str, record: TraceRecord) -> LatencyAcc:
        key = (name, span_type)
        stats = self.span_stats.get(key)
        if stats is None:
            if len(self.span_stats) >= MAX_SPAN_KEYS:
                self.odd.add("folded_span_names", record)
                key = (OTHER, span_type)
            stats = self.span_stats.setdefault(key, LatencyAcc())
        return stats

    def _retriever(self, row: SpanRow) -> int:
        payload = row.payload(OUTPUTS)
        empty = int(not payload.present or (not payload.is_huge and is_empty_value(payload.value)))
        self.retrieval[0] += 1
        self.retrieval[1] += empty
        name = row.name if (row.name in self.retrievers or len(self.retrievers) < MAX_NAMED) else OTHER
        counts = self.retrievers.setdefault(name, [0, 0])
        counts[0] += 1
        counts[1] += empty
        return empty

    def _payload_checks(self, row: SpanRow, record: TraceRecord) -> None:
        """Huge payloads on every span; text that is not JSON on the spans the profile reads anyway
        (roots, retrievers, failed spans), so other spans' stored JSON is never parsed for this."""
        inspected = row.parent_id is None or row.span_type == "RETRIEVER" or row.status == "ERROR"
        size = row.content_size
        if not inspected and size is not None and size <= HUGE_PAYLOAD_CHARS:
            return  # no payload can be longer than the span's whole stored text
        attrs = row.raw.get("attributes")
        if not isinstance(attrs, dict):
            return
        for key in (INPUTS, OUTPUTS):
            raw = attrs.get(key)
            if not isinstance(raw, str):
                continue
            if len(raw) > HUGE_PAYLOAD_CHARS:
                self.odd.add("huge_payloads", record)
            elif inspected and not looks_like_json(raw):
                self.odd.add("non_json_payloads", record)

    def _errors(self, errors: list[SpanRow], parent_of: dict[str, str | None], limit: int, record: TraceRecord) -> None:
        if not errors:
            if record.state == "OK":
                self.sample.offer(record.trace_id)
            return
        self.traces_with_error_spans += 1
        infos = {r.span_id: error_from_span(r.raw, r.status_message) for r in errors}
        keys = {sid: (info.exception_type, info.normalized) for sid, info in infos.items()}
        propagated: set[str] = set()
        for row in errors:  # an error re-raised by each parent is counted once, where it began
            parent, hops = row.parent_id, 0
            while parent is not None and hops < limit:
                if keys.get(parent) == keys[row.span_id]:
                    propagated.add(parent)
                parent, hops = parent_of.get(parent), hops + 1
        counted: set[tuple[str | None, str, str]] = set()
        hidden_spans: set[str] = set()
        for row in errors:
            if row.span_id in propagated:
                continue
            exc_type, normalized = keys[row.span_id]
            sig = self._signature((exc_type, row.name, normalized), record)
            sig.count += 1
            sig.offer_message(infos[row.span_id].message, record)
            key = (exc_type, row.name, normalized)
            if key not in counted:
                counted.add(key)
                sig.traces += 1
                sig.examples.offer(record.trace_id, record.request_time_ms)
            hidden_spans.add(row.name)
        if record.state == "OK":
            self.hidden += 1
            self.hidden_examples.offer(record.trace_id, record.request_time_ms)
            for name in hidden_spans:
                self.hidden_by_span[name] += 1

    def _signature(self, key: tuple[str | None, str, str], record: TraceRecord) -> SignatureAcc:
        sig = self.signatures.get(key)
        if sig is None:
            if len(self.signatures) >= MAX_SIGNATURES:
                self.odd.add("folded_signatures", record)
                key = (None, OTHER, OTHER)
            sig = self.signatures.setdefault(key, SignatureAcc())
        return sig

    def _root_payloads(self, record: TraceRecord, root: SpanRow | None) -> None:
        ok = record.state == "OK"
        inputs = root.payload(INPUTS) if root else Payload(present=False)
        outputs = root.payload(OUTPUTS) if root else Payload(present=False)
        if not inputs.present or inputs.value is None:
            self.outputs["inputs_missing"] += 1
        else:
            self._shape("inputs", inputs, record)
        if not outputs.present or outputs.value is None:
            self._output_case("missing", ok, record)
        else:
            self._shape("outputs", outputs, record)
            if not outputs.is_huge and is_empty_value(outputs.value):
                self._output_case("empty", ok, record)

    def _output_case(self, case: str, ok: bool, record: TraceRecord) -> None:
        self.outputs[case] += 1
        if ok:
            self.outputs[f"{case}_ok"] += 1
            self.output_examples[f"{case}_ok"].offer(record.trace_id, record.request_time_ms)

    def _shape(self, which: str, payload: Payload, record: TraceRecord) -> None:
        key = shape_of(payload)
        shapes = self.shapes[which]
        acc = shapes.get(key)
        if acc is None:
            if len(shapes) >= MAX_NAMED:
                key = (OTHER, ())
            acc = shapes.setdefault(key, ShapeAcc())
        acc.count += 1
        example = (record.request_time_ms or 0, record.trace_id)
        if example > acc.example:
            acc.example = example

    @staticmethod
    def _count_name(counter: Counter[str], name: str) -> None:
        counter[name if (name in counter or len(counter) < MAX_NAMED) else OTHER] += 1

    # --- the result --------------------------------------------------------------------------
    def finish(self, experiment_id: str, source: ProfileSource, experiment_name: str | None = None) -> TraceProfile:
        return TraceProfile(
            experiment_id=experiment_id,
            experiment_name=experiment_name,
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source=source,
            trace_count=self.trace_count,
            span_count=self.span_count,
            span_trace_count=self.trace_count - self.spans_unread if self.spans_unread else None,
            time_range=TimeRange(first_ms=self.first_ms, last_ms=self.last_ms, first=_iso(self.first_ms), last=_iso(self.last_ms)),
            status_counts=dict(sorted(self.status.items(), key=lambda kv: (-kv[1], kv[0]))),
            latency_ms=LatencyStats(**self.latency.summary()),
            latency_histogram=[HistogramBin(lower_ms=lo, upper_ms=hi, count=c) for lo, hi, c in histogram(self.latency)],
            timeline=self._timeline(),
            spans_per_trace=CountStats(**self.spans_per_trace.summary()),
            trace_names=_named(self.trace_names),
            spans=sorted(
                (SpanStats(name=n, span_type=t, count=s.count, error_count=s.errors, latency_ms=s.stats()) for (n, t), s in self.span_stats.items()),
                key=lambda s: (-s.count, s.name, s.span_type),
            ),
            traces_with_error_spans=self.traces_with_error_spans,
            error_signatures=self._signature_list(),
            hidden_failures=HiddenFailures(
                count=self.hidden,
                trace_ids=self.hidden_examples.ids(),
                by_span=[SpanCount(span_name=n, count=c) for n, c in sorted(self.hidden_by_span.items(), key=lambda kv: (-kv[1], kv[0]))],
            ),
            tools=sorted(
                (ToolStats(name=n, calls=t.count, errors=t.errors, trace_count=t.traces, latency_ms=t.stats()) for n, t in self.tools.items()),
                key=lambda t: (-t.calls, t.name),
            ),
            tokens=TokenTotals(input=self.tokens[0], output=self.tokens[1], total=self.tokens[2], traces_with_usage=self.tokens[3]),
            llm=LlmUsage(
                calls=self.llm_calls,
                traces_with_calls=self.llm_traces,
                calls_per_trace=CountStats(**self.llm_per_trace.summary()),
                models=_named(self.models),
                calls_without_model=self.calls_without_model,
            ),
            retrieval=self._retrieval(),
            outputs=Outputs(
                missing=self.outputs["missing"],
                empty=self.outputs["empty"],
                missing_ok=self.outputs["missing_ok"],
                empty_ok=self.outputs["empty_ok"],
                missing_ok_trace_ids=self.output_examples["missing_ok"].ids(),
                empty_ok_trace_ids=self.output_examples["empty_ok"].ids(),
                inputs_missing=self.outputs["inputs_missing"],
            ),
            shapes=Shapes(inputs=self._shapes("inputs"), outputs=self._shapes("outputs")),
            sessions=self._sessions(),
            assessments=sorted(
                (acc.summary(name, kind) for (name, kind), acc in self.assessments.items()),
                key=lambda a: (-a.count, a.name, a.kind),
            ),
            slowest_traces=[SlowTrace(trace_id=tid, latency_ms=float(ms), state=st) for ms, tid, st in sorted(self.slowest, reverse=True)],
            sample_trace_ids=self.sample.ids(),
            odd_data=self.odd.result(),
        )

    def _timeline(self, buckets: int = TIMELINE_BUCKETS) -> list[TimeBucket]:
        if self.first_ms is None or self.last_ms is None or not self.started_ms:
            return []
        span = max(1, self.last_ms - self.first_ms + 1)
        width = -(-span // buckets)  # ceil: the last trace falls in the last bucket
        counts: list[Counter[str]] = [Counter() for _ in range(-(-span // width))]
        for ts, state in zip(self.started_ms, self.started_state):
            counts[(ts - self.first_ms) // width][self.state_names[state]] += 1
        return [
            TimeBucket(start_ms=self.first_ms + i * width, end_ms=self.first_ms + (i + 1) * width, states=dict(sorted(c.items())))
            for i, c in enumerate(counts)
        ]

    def _signature_list(self) -> list[ErrorSignature]:
        out = [
            ErrorSignature(
                id=signature_id(exc_type, span, normalized),
                signature=f"{exc_type}: {normalized}" if exc_type else normalized,
                exception_type=exc_type,
                span_name=span,
                count=s.count,
                trace_count=s.traces,
                trace_ids=s.examples.ids(),
                example_message=s.message,
            )
            for (exc_type, span, normalized), s in self.signatures.items()
        ]
        return sorted(out, key=lambda s: (-s.count, s.signature, s.span_name))

    def _retrieval(self) -> Retrieval:
        spans, empty, traces, traces_empty = self.retrieval
        return Retrieval(
            spans=spans,
            empty=empty,
            empty_share=round(empty / spans, 4) if spans else None,
            traces_with_retrieval=traces,
            traces_with_empty_retrieval=traces_empty,
            empty_trace_ids=self.retrieval_examples.ids(),
            by_name=sorted((RetrieverStats(name=n, spans=c[0], empty=c[1]) for n, c in self.retrievers.items()), key=lambda r: (-r.spans, r.name)),
        )

    def _shapes(self, which: str) -> list[Shape]:
        shapes = [
            Shape(kind=kind, keys=list(keys), count=acc.count, example_trace_id=acc.example[1])
            for (kind, keys), acc in self.shapes[which].items()
        ]
        return sorted(shapes, key=lambda s: (-s.count, s.kind, s.keys))

    def _sessions(self) -> Sessions:
        per_session = CountDistribution()
        for count in self.sessions.values():
            per_session.add(count)
        return Sessions(
            traces_with_session=self.traces_with_session,
            distinct_sessions=len(self.sessions),
            traces_per_session=CountStats(**per_session.summary()),
            example_session_ids=self.session_examples,
        )


def _row(found: Any) -> SpanRow:
    """The SpanRow of a span kept as a SpanRow or as raw column values (normalised like the loop)."""
    if isinstance(found, SpanRow):
        return found
    _, span_id, parent, name, span_type, status, start, end, model, content, size = found
    return row_from_columns(span_id, parent or None, name or "(unnamed)", span_type or "UNKNOWN", stored_status(status), start, end or None,
                            model, content, size)


def _named(counter: Counter[str]) -> list[NamedCount]:
    return [NamedCount(name=n, count=c) for n, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds") if ms is not None else None


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The pass allocates millions of short-lived objects that reference counting frees at once;
    the cyclic collector's repeated scans of them cost a quarter of the time (measured), so it is
    paused for the pass and restored after. Memory stays bounded: nothing here forms cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def profile_records(
    records: Iterable[TraceRecord],
    experiment_id: str,
    source: ProfileSource,
    experiment_name: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> TraceProfile:
    """Profile any stream of records (used by build_profile and by tests on hand-made records)."""
    builder = ProfileBuilder()
    started = time.perf_counter()
    with _no_cyclic_gc():
        for record in records:
            builder.add(record)
            if progress and builder.trace_count % 500 == 0:
                progress(builder.trace_count)
    if progress:
        progress(builder.trace_count)
    source.seconds = round(time.perf_counter() - started, 3)
    return builder.finish(experiment_id, source, experiment_name)


def build_profile(
    tracking_uri: str | None,
    experiment_id: str,
    filter_string: str | None = None,
    since_ms: int | None = None,
    max_traces: int | None = None,
    *,
    path: str | None = None,
    progress: Callable[[int], None] | None = None,
    trajectory_scan: int = DEFAULT_SCAN,
    span_traces: int | None = DEFAULT_SPAN_TRACES,
) -> TraceProfile:
    """Profile every trace of an experiment (id or name) matching the filter, in one pass, then
    read the `trajectory_scan` most recent traces whole for the trajectory counts (0: skip).
    On the API path only the newest `span_traces` traces' spans are read (None or 0: every trace's;
    TraceProfile.span_trace_count says how many were); the SQL path reads every span.

    Raises TraceSourceError subclasses (ExperimentNotFound, InvalidQuery, TrackingServerError)
    with a sentence the user can act on. `path` forces "sql", "sql+search" or "api" (tests).
    """
    from .source import mlflow_client

    if max_traces is not None and max_traces < 1:
        from .source import InvalidQuery

        raise InvalidQuery("--max-traces must be at least 1.")
    if span_traces is not None and span_traces < 0:
        from .source import InvalidQuery

        raise InvalidQuery("--span-traces must be 0 (every trace) or more.")
    client = mlflow_client(tracking_uri)
    experiment = resolve_experiment(tracking_uri, experiment_id, client=client)
    query = TraceQuery(experiment.experiment_id, filter_string or None, since_ms, max_traces, span_traces or None)
    source = TraceSource(tracking_uri, query, force_path=path, client=client)  # type: ignore[arg-type]
    meta = ProfileSource(
        tracking_uri=redact_uri(tracking_uri), path=source.path, filter_string=query.filter_string,
        since_ms=since_ms, max_traces=max_traces, span_traces=query.span_traces if source.path == "api" else None,
    )
    try:
        profile = profile_records(source.records(), experiment.experiment_id, meta, experiment.name, progress)
        profile.source.truncated = source.truncated
        limit = min(trajectory_scan, max_traces or trajectory_scan, profile.trace_count)
        if limit > 0:
            started = time.perf_counter()
            try:
                counts = trajectory.scan(client, experiment.experiment_id, query.effective_filter(), limit)
            except Exception as exc:  # MLflow's own errors for a store that went away mid-run
                from .source import _translate

                raise _translate(exc, tracking_uri) from None
            profile.trajectory = trajectory.as_model(counts)
            profile.source.seconds = round(profile.source.seconds + time.perf_counter() - started, 3)
        return profile
    finally:
        MEMO.clear()  # the spans the API pass kept for the scan are not held past this profile

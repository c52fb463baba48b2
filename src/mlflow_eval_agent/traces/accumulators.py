"""The bounded accumulators the profile is made of: example lists chosen independently of the order
traces arrive in, per-name latency, error signatures, shapes, assessments, odd-data counts."""

from __future__ import annotations

import heapq
import zlib
from collections import Counter, defaultdict
from typing import Any

from .percentiles import ExactValues
from .profile_model import AssessmentSummary, LatencyStats, NumericStats, OddCount
from .records import AssessmentRecord, TraceRecord

EXAMPLES = 5
MANY_EXAMPLES = 20
SAMPLE_SIZE = 25
SLOWEST = 10
MAX_SPAN_KEYS = 1_000
MAX_SIGNATURES = 2_000
MAX_NAMED = 200  # models, trace names, shapes, tools beyond this fold into "(other)"
MAX_VALUES = 20
MESSAGE_CHARS = 300
OTHER = "(other)"
ODD_KEYS = (
    "traces_without_spans",
    "traces_without_root",
    "traces_with_multiple_roots",
    "traces_without_duration",
    "spans_missing_end_time",
    "spans_negative_duration",
    "spans_unset_status",
    "unparseable_spans",
    "non_json_payloads",
    "huge_payloads",
    "folded_span_names",
    "folded_signatures",
)


class Examples:
    """The k most recent trace ids offered (by timestamp, then id): independent of visit order."""

    __slots__ = ("k", "_heap", "_seen")

    def __init__(self, k: int = EXAMPLES):
        self.k = k
        self._heap: list[tuple[int, str]] = []
        self._seen: set[str] = set()

    def offer(self, trace_id: str, timestamp_ms: int | None) -> None:
        if trace_id in self._seen:
            return
        item = (timestamp_ms or 0, trace_id)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
            self._seen.add(trace_id)
        elif item > self._heap[0]:
            dropped = heapq.heapreplace(self._heap, item)
            self._seen.discard(dropped[1])
            self._seen.add(trace_id)

    def ids(self) -> list[str]:
        return [tid for _, tid in sorted(self._heap, reverse=True)]


class HashSample:
    """The k ids with the smallest hash: a stable pseudo-random sample, independent of visit order."""

    def __init__(self, k: int = SAMPLE_SIZE):
        self.k = k
        self._heap: list[tuple[int, str]] = []  # max-heap via negated hash

    def offer(self, trace_id: str) -> None:
        h = zlib.crc32(trace_id.encode())  # stable across runs and paths, and cheap
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (-h, trace_id))
        elif -h > self._heap[0][0]:
            heapq.heapreplace(self._heap, (-h, trace_id))

    def ids(self) -> list[str]:
        return [tid for _, tid in sorted(self._heap, reverse=True)]


class OddCounts:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, Examples] = defaultdict(Examples)

    def add(self, key: str, record: TraceRecord, n: int = 1) -> None:
        self.counts[key] += n
        self.examples[key].offer(record.trace_id, record.request_time_ms)

    def result(self) -> dict[str, OddCount]:
        return {k: OddCount(count=self.counts[k], trace_ids=self.examples[k].ids() if k in self.examples else []) for k in ODD_KEYS}


class LatencyAcc:
    """count, errors and exact durations (ns) for one span name or tool."""

    __slots__ = ("count", "errors", "durations", "traces")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.traces = 0
        self.durations = ExactValues()

    def stats(self) -> LatencyStats:
        return LatencyStats(**self.durations.summary(scale=1e6))


class SignatureAcc:
    __slots__ = ("count", "traces", "examples", "message", "message_key")

    def __init__(self) -> None:
        self.count = 0
        self.traces = 0
        self.examples = Examples()
        self.message = ""
        self.message_key: tuple[int, str, str] = (-1, "", "")

    def offer_message(self, message: str, record: TraceRecord) -> None:
        message = message[:MESSAGE_CHARS]
        key = (record.request_time_ms or 0, record.trace_id, message)
        if key > self.message_key:  # the most recent trace's message (then the text): order-free
            self.message_key, self.message = key, message


class ShapeAcc:
    __slots__ = ("count", "example")

    def __init__(self) -> None:
        self.count = 0
        self.example: tuple[int, str] = (-1, "")


class AssessmentAcc:
    def __init__(self) -> None:
        self.count = 0
        self.traces = 0
        self.errors = 0
        self.sources: Counter[str] = Counter()
        self.values: Counter[str] = Counter()
        self.numbers: list[float] = [0, float("inf"), float("-inf"), 0.0]  # n, min, max, sum

    def add(self, a: AssessmentRecord) -> None:
        self.count += 1
        self.errors += a.has_error
        self.sources[a.source_type] += 1
        value = a.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            n, lo, hi, total = self.numbers
            self.numbers = [n + 1, min(lo, value), max(hi, value), total + value]
        label = _value_label(value)
        if label in self.values or len(self.values) < MAX_VALUES:
            self.values[label] += 1
        else:
            self.values[OTHER] += 1

    def summary(self, name: str, kind: str) -> AssessmentSummary:
        n, lo, hi, total = self.numbers
        numeric = NumericStats(count=int(n), min=lo, max=hi, mean=round(total / n, 6)) if n else None
        return AssessmentSummary(
            name=name, kind=kind, count=self.count, trace_count=self.traces, sources=dict(self.sources),
            values=dict(self.values.most_common()), numeric=numeric, errors=self.errors,
        )


def _value_label(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = value if isinstance(value, str) else type(value).__name__
    return text[:60]

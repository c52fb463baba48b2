"""A support-agent experiment whose every number is known in advance (the profile's ground truth).

`support_traces(n)` returns one `Seeded` per trace: the spec to write and the plain facts a test
compares the profile with (latency, state, which failure it carries, ...). The facts are set
here by simple index rules, never computed by the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .trace_writer import SpanSpec, TraceSpec

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HUGE_CHARS = 1_200_000


@dataclass
class Seeded:
    index: int
    spec: TraceSpec
    latency_ms: int
    state: str
    timeout: bool = False  # caught tool timeout: hidden failure
    rate_limit: bool = False  # caught LLM 429: hidden failure
    value_error: bool = False  # uncaught tool error: trace ERROR
    output: str = "answer"  # answer, empty_text, empty_chat, missing
    retrieval_empty: bool = False
    retrieval_missing: bool = False
    session: str | None = None
    model: str = "gpt-4o-mini"
    llm_calls: int = 1
    tool_ms: int = 0
    input_tokens: int = 0
    unset_span: bool = False
    missing_end: bool = False
    non_json_input: bool = False
    huge_output: bool = False
    messages: dict = field(default_factory=dict)

    @property
    def hidden(self) -> bool:
        return self.state == "OK" and (self.timeout or self.rate_limit)


def support_traces(n: int = 200) -> list[Seeded]:
    return [_one(i) for i in range(n)]


def _one(i: int) -> Seeded:
    s = Seeded(index=i, spec=None, latency_ms=100 + i, state="OK")  # type: ignore[arg-type]
    s.timeout = i % 20 == 3
    s.value_error = i % 25 == 7
    s.rate_limit = i % 40 == 21
    s.state = "ERROR" if s.value_error else "OK"
    s.output = "missing" if (s.value_error or i % 50 == 11) else "empty_text" if i % 40 == 5 else "empty_chat" if i % 40 == 25 else "answer"
    s.retrieval_empty = i % 10 == 0
    s.retrieval_missing = i % 30 == 15
    s.session = f"session-{i // 4:03d}" if i < 100 else None
    s.model = "gpt-4o-mini" if i % 2 == 0 else "claude-3-haiku"
    s.llm_calls = 2 if i % 10 == 9 else 1
    s.tool_ms = 5 + i % 7
    s.input_tokens = 10 + i % 5
    s.unset_span = i % 33 == 0
    s.missing_end = i == 150
    s.non_json_input = i == 160
    s.huge_output = i == 170
    s.spec = TraceSpec(root=_root(i, s), start_ms=BASE_MS + i * 60_000, session_id=s.session)
    return s


def _root(i: int, s: Seeded) -> SpanSpec:
    question = f"Where is my order {10_000 + i}?"
    children = [_retriever(i, s), _tool(i, s), *_llm_calls(i, s, question)]
    if s.unset_span:
        children.append(SpanSpec("postprocess", "UNKNOWN", start_ms=70, duration_ms=3, status="UNSET"))
    if s.missing_end:
        children.append(SpanSpec("stream_consumer", "UNKNOWN", start_ms=75, duration_ms=None, status="UNSET"))
    root = SpanSpec("support_agent", "AGENT", start_ms=0, duration_ms=s.latency_ms, children=children)
    if s.non_json_input:
        root.raw_inputs = "not json {order 10160"
    else:
        root.inputs = {"messages": [{"role": "user", "content": question}]}
    if s.value_error:
        root.status = "ERROR"
        root.error = ("ValueError", f"bad order id 'X{i}'")
    elif s.output == "answer":
        root.outputs = {"answer": f"Order {10_000 + i} has shipped."}
    elif s.output == "empty_text":
        root.outputs = ""
    elif s.output == "empty_chat":
        root.outputs = {"choices": [{"message": {"role": "assistant", "content": ""}}]}
    return root


def _retriever(i: int, s: Seeded) -> SpanSpec:
    span = SpanSpec("search_docs", "RETRIEVER", start_ms=1, duration_ms=5 + i % 3, inputs={"query": f"order {i}"})
    if s.retrieval_empty:
        span.outputs = []
    elif not s.retrieval_missing:
        span.outputs = [{"page_content": "Orders ship in 2 days.", "metadata": {"doc_uri": "kb/shipping"}}]
    return span


def _tool(i: int, s: Seeded) -> SpanSpec:
    span = SpanSpec("lookup_order", "TOOL", start_ms=10, duration_ms=s.tool_ms, inputs={"order_id": 10_000 + i})
    if s.timeout:
        span.status = "ERROR"
        span.error = ("TimeoutError", f"timed out after {30 + (i % 3) * 15}s for order {10_000 + i}")
    elif s.value_error:
        span.status = "ERROR"
        span.error = ("ValueError", f"bad order id 'X{i}'")
    elif s.huge_output:
        span.outputs = {"blob": "x" * HUGE_CHARS}
    else:
        span.outputs = {"status": "shipped"}
    return span


def _llm_calls(i: int, s: Seeded, question: str) -> list[SpanSpec]:
    calls = []
    for k in range(s.llm_calls):
        usage = {"input_tokens": s.input_tokens, "output_tokens": 5, "total_tokens": s.input_tokens + 5}
        inputs = {"messages": [{"role": "user", "content": question}]}
        attributes = {"mlflow.chat.tokenUsage": usage}
        if s.model == "gpt-4o-mini":
            attributes["mlflow.llm.model"] = s.model
        else:
            inputs["model"] = s.model
        span = SpanSpec("chat_model", "CHAT_MODEL", start_ms=30 + k * 25, duration_ms=20 + i % 13 - k * 10, inputs=inputs, attributes=attributes)
        if s.rate_limit and k == 0:
            span.status = "ERROR"
            span.error = ("RateLimitError", f"Error code: 429 - Rate limit reached (request req_{i:06d}abc)")
        else:
            span.outputs = {"choices": [{"message": {"role": "assistant", "content": "Shipped."}}]}
        calls.append(span)
    return calls

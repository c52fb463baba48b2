"""A small traced support agent for the demo: retrieval, tool calls and a chat model.

The agent answers customer questions for an outdoor-gear shop. Each request is one MLflow trace:
an AGENT root span, a RETRIEVER span over a tiny knowledge base, a TOOL span for orders, stock or
returns, and a CHAT_MODEL span for the model call (an OpenAI-compatible endpoint; the demo runs a
local fake one). Span times come from a virtual clock (`mlflow.start_span_no_context` with
explicit start and end times), so latencies are exact without sleeping.

The world around the agent injects the failure modes the demo is about (`Faults`): a backend that
times out and is not caught, one that fails and is caught (a hidden failure), a question outside
the knowledge base (empty retrieval), a slow model endpoint, and a pasted text so long that the
agent's context budget runs out and it answers nothing (its bug: an empty answer).
"""

from __future__ import annotations

import json
import random
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities import SpanStatusCode, SpanType

MS = 1_000_000
CONTEXT_BUDGET_TOKENS = 1_500
SYSTEM_PROMPT = (
    "You are the support assistant of Acme Outdoor. Answer in two or three sentences, using only the "
    "documents and tool results given. If a lookup failed, say so and offer to follow up."
)

KNOWLEDGE_BASE = {
    "kb/shipping": ("shipping delivery arrive order late", "Orders ship within 2 business days; standard delivery takes 3-5 days."),
    "kb/returns": ("return refund exchange policy sale", "Items can be returned within 30 days; sale items only for store credit."),
    "kb/sizing": ("size sizing fit small large", "Our jackets run small; order one size up if you are between sizes."),
    "kb/warranty": ("warranty broken repair zipper", "Gear has a 2-year warranty covering zippers, seams and buckles."),
    "kb/stock": ("stock available size color have", "Stock is updated hourly; sold-out sizes restock within 3 weeks."),
}


@dataclass(frozen=True)
class ModelReply:
    content: str
    model: str
    input_tokens: int
    output_tokens: int
    raw: dict[str, Any]


ChatFn = Callable[[list[dict[str, str]]], ModelReply]


def http_chat(base_url: str, model: str = "acme-chat-1", timeout_s: float = 30.0) -> ChatFn:
    """A chat function calling an OpenAI-compatible `/chat/completions` endpoint (stdlib only)."""
    url = base_url.rstrip("/") + "/chat/completions"

    def complete(messages: list[dict[str, str]]) -> ModelReply:
        body = json.dumps({"model": model, "messages": messages}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", "Authorization": "Bearer demo"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (a local URL we started)
            raw = json.loads(response.read())
        usage = raw.get("usage") or {}
        content = ((raw.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        return ModelReply(content, raw.get("model", model), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), raw)

    return complete


@dataclass(frozen=True)
class Request:
    question: str
    intent: str  # order | stock | return | policy
    entity: str = ""
    pasted: str = ""


@dataclass(frozen=True)
class Faults:
    tool_error: str | None = None  # None | "uncaught" | "caught"
    empty_retrieval: bool = False
    slow_model: bool = False
    long_paste: bool = False

    @property
    def modes(self) -> set[str]:
        modes = {f"{self.tool_error}_tool_error"} if self.tool_error else set()
        if self.empty_retrieval:
            modes.add("empty_retrieval")
        if self.slow_model:
            modes.add("slow")
        if self.long_paste:
            modes.add("empty_answer")
        return modes


@dataclass
class Clock:
    """Virtual time: each step takes a chosen number of milliseconds."""

    now_ns: int
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def step(self, low_ms: int, high_ms: int) -> tuple[int, int]:
        start = self.now_ns
        self.now_ns += self.rng.randint(low_ms, high_ms) * MS
        return start, self.now_ns


class SupportAgent:
    """One traced request per `answer` call; returns the trace id."""

    def __init__(self, chat: ChatFn, experiment_id: str | None):
        self.chat = chat
        self.experiment_id = experiment_id
        self.outputs: dict[str, str] | None = None  # the last answer (None: the request failed)

    def answer(self, request: Request, faults: Faults, clock: Clock) -> str:
        user_text = request.question + (f"\n\n{request.pasted}" if request.pasted else "")
        root = mlflow.start_span_no_context(
            "support_agent", span_type=SpanType.AGENT, inputs={"messages": [{"role": "user", "content": user_text}]},
            experiment_id=self.experiment_id, start_time_ns=clock.now_ns, attributes={"app.version": "1.4.2"},
        )
        clock.step(2, 6)
        docs = self._retrieve(root, request, faults, clock)
        tool_result, error = self._call_tool(root, request, faults, clock)
        self.outputs = None
        if error is not None and faults.tool_error == "uncaught":
            root.record_exception(error)
            root.end(status=SpanStatusCode.ERROR, end_time_ns=clock.step(1, 3)[1])
            return root.trace_id
        messages = self._messages(user_text, docs, tool_result, error)
        if _tokens(messages) > CONTEXT_BUDGET_TOKENS:
            answer = ""  # the bug: an exhausted context budget silently yields no answer
        else:
            answer = self._chat(root, messages, faults, clock)
        self.outputs = {"role": "assistant", "content": answer}
        root.end(outputs=self.outputs, end_time_ns=clock.step(1, 4)[1])
        return root.trace_id

    def _retrieve(self, root: Any, request: Request, faults: Faults, clock: Clock) -> list[dict[str, Any]]:
        start, end = clock.step(60, 180)
        span = mlflow.start_span_no_context("search_docs", span_type=SpanType.RETRIEVER, parent_span=root, inputs={"query": request.question}, start_time_ns=start)
        words = set(request.question.lower().replace("?", " ").split())
        docs = [] if faults.empty_retrieval else [
            {"id": uri, "page_content": text, "metadata": {"doc_uri": uri}}
            for uri, (keys, text) in KNOWLEDGE_BASE.items()
            if words & set(keys.split())
        ][:2]
        span.end(outputs=docs, end_time_ns=end)
        return docs

    def _call_tool(self, root: Any, request: Request, faults: Faults, clock: Clock) -> tuple[dict[str, Any] | None, Exception | None]:
        tools = {"order": ("get_order_status", {"order_id": request.entity}), "stock": ("check_inventory", {"sku": request.entity}),
                 "return": ("create_return", {"order_id": request.entity, "reason": "too small"})}
        if request.intent not in tools:
            return None, None
        name, args = tools[request.intent]
        start, end = clock.step(40, 300)
        span = mlflow.start_span_no_context(name, span_type=SpanType.TOOL, parent_span=root, inputs=args, start_time_ns=start)
        if faults.tool_error:
            error = _backend_error(name, request.entity, faults.tool_error)
            span.record_exception(error)
            span.end(status=SpanStatusCode.ERROR, end_time_ns=end)
            return None, error
        result = _backend_result(name, request.entity)
        span.end(outputs=result, end_time_ns=end)
        return result, None

    def _messages(self, user_text: str, docs: list[dict[str, Any]], tool_result: dict[str, Any] | None, error: Exception | None) -> list[dict[str, str]]:
        context = "\n".join(f"[{d['id']}] {d['page_content']}" for d in docs) or "(no documents found)"
        if error is not None:
            context += f"\nTool lookup failed: {type(error).__name__}."
        elif tool_result is not None:
            context += f"\nTool result: {json.dumps(tool_result)}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "system", "content": context}, {"role": "user", "content": user_text}]

    def _chat(self, root: Any, messages: list[dict[str, str]], faults: Faults, clock: Clock) -> str:
        start, end = clock.step(8_000, 12_000) if faults.slow_model else clock.step(600, 1_600)
        span = mlflow.start_span_no_context("chat_completion", span_type=SpanType.CHAT_MODEL, parent_span=root, inputs={"messages": messages}, start_time_ns=start)
        reply = self.chat(messages)
        usage = {"input_tokens": reply.input_tokens or _tokens(messages), "output_tokens": reply.output_tokens or _tokens([{"content": reply.content}])}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        span.set_attributes({"mlflow.chat.tokenUsage": usage, "mlflow.llm.model": reply.model})
        span.end(outputs=reply.raw, end_time_ns=end)
        return reply.content


def _tokens(messages: list[dict[str, str]]) -> int:
    return sum(len(m.get("content", "")) for m in messages) // 4


SERVICES = {"get_order_status": "order", "check_inventory": "inventory", "create_return": "returns"}


def _backend_error(tool: str, entity: str, kind: str) -> Exception:
    service = SERVICES[tool]
    if kind == "caught":
        return ConnectionError(f"{service} service unavailable at 10.0.3.{len(entity) % 9 + 2}:8080")
    return TimeoutError(f"{service} service timed out after 30s for {entity}")  # entity: an order number


def _backend_result(tool: str, entity: str) -> dict[str, Any]:
    seed = sum(map(ord, entity))
    if tool == "get_order_status":
        return {"order_id": entity, "status": ["processing", "shipped", "delivered"][seed % 3], "eta_days": seed % 5 + 1}
    if tool == "check_inventory":
        return {"sku": entity, "in_stock": seed % 7}
    return {"return_id": f"R{seed % 9000 + 1000}", "order_id": entity, "label_url": f"https://acme.example/labels/{seed}"}


# --- the agent as a predict function (what `run_eval.py --predict-fn` imports) -----------------------
# The dataset keeps each request's inputs as the agent takes them: {"messages": [{"role": "user", ...}]}.
# `predict` is today's agent in a healthy world (backends answer, the model is fast); the agent's own bug
# (a long paste exhausts its context budget and yields an empty answer) is still there, as it is in the
# agent. `predict_regressed` is the same agent with a regression injected: every order lookup fails.
_ORDER = re.compile(r"\border (\d{3,})")
_SIZE = re.compile(r"\bin size (\w+)")


class _Fastest(random.Random):
    """Each step takes its shortest plausible time: fresh runs are deterministic and never slow."""

    def randint(self, a: int, b: int) -> int:
        return a


def request_from_messages(messages: Any) -> Request:
    """The request a user message makes (intent and entity read from its text, as the agent's router does)."""
    text = ""
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            text = str(message.get("content") or "")
            break
    question, _, pasted = text.partition("\n\n")
    lowered = question.lower()
    order = _ORDER.search(lowered)
    if pasted:
        return Request(question, "policy", pasted=pasted)
    if "return" in lowered and order:
        return Request(question, "return", order.group(1))
    if "in stock" in lowered:
        product = next((p for p in ("tent", "jacket", "shoes", "pack", "fleece") if p in lowered), "item")
        size = _SIZE.search(question)
        return Request(question, "stock", f"SKU-{product}-{size.group(1) if size else 'M'}")
    if order and ("where is" in lowered or "arrive" in lowered):
        return Request(question, "order", order.group(1))
    return Request(question, "policy")


def _in_process_chat(messages: list[dict[str, str]]) -> ModelReply:
    from .model import support_model

    reply = support_model({"messages": messages})
    content = reply.content or ""
    raw = {"id": "chatcmpl-demo", "object": "chat.completion", "model": "acme-chat-1",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    return ModelReply(content, "acme-chat-1", 0, 0, raw)


def _predict(messages: Any, faults: Callable[[Request], Faults]) -> dict[str, str] | None:
    import time

    request = request_from_messages(messages)
    agent = SupportAgent(_in_process_chat, experiment_id=None)  # the active experiment (run_eval.py's)
    agent.answer(request, faults(request), Clock(time.time_ns(), _Fastest(0)))
    return agent.outputs  # None: the request failed (the trace says why)


def predict(messages: Any) -> dict[str, str] | None:
    """The support agent on one request (a traced AGENT run); returns its answer message."""
    return _predict(messages, lambda request: Faults())


def predict_regressed(messages: Any) -> dict[str, str] | None:
    """`predict` with an injected regression: the order lookup fails (times out, uncaught) for every order."""
    return _predict(messages, lambda request: Faults(tool_error="uncaught" if request.intent == "order" else None))

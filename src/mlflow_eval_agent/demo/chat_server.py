"""A fake OpenAI chat-completions server on 127.0.0.1, stdlib only, for offline demos and tests.

Real clients (the `openai` package, LangChain, LiteLLM, DSPy) talk to it unchanged, so MLflow's
autologging records genuine traces without a model or a network:

    with FakeChatServer(rule_based([(r"weather", ChatReply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))])) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}])

A responder decides each reply from the request body: `scripted(...)` plays replies in order,
`rule_based(...)` matches regular expressions on the last user message, `echo` repeats it. A
reply can carry text or tool calls, token usage (estimated from word counts when not given), a
delay, or an HTTP error status (429, 500, ...) with an OpenAI-style error body. `stream: true`
requests get server-sent events. Every request body is kept in `server.requests`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODEL = "fake-gpt-4o-mini"
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class ChatReply:
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    status: int = 200  # >= 400 answers with an OpenAI-style error body instead
    error: str | None = None
    delay_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


Responder = Callable[[dict[str, Any]], ChatReply]


def last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def echo(request: dict[str, Any]) -> ChatReply:
    return ChatReply(content=f"You said: {last_user_text(request)}")


def scripted(replies: Iterable[ChatReply], then: Responder = echo) -> Responder:
    """Replies in order (thread-safe), then `then` for every later request."""
    queue = iter(list(replies))
    lock = threading.Lock()

    def respond(request: dict[str, Any]) -> ChatReply:
        with lock:
            reply = next(queue, None)
        return reply if reply is not None else then(request)

    return respond


def rule_based(rules: Iterable[tuple[str, ChatReply | Responder]], default: Responder = echo) -> Responder:
    """The first rule whose pattern matches the last user message (case-insensitive) answers.

    A rule's answer is a fixed ChatReply or a function of the request. A conversation that already
    holds a tool result is answered by `default`, so a tool-calling agent finishes its loop.
    """
    compiled = [(re.compile(pattern, re.IGNORECASE), answer) for pattern, answer in rules]

    def respond(request: dict[str, Any]) -> ChatReply:
        messages = request.get("messages") or []
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
            return default(request)
        text = last_user_text(request)
        for pattern, answer in compiled:
            if pattern.search(text):
                return answer(request) if callable(answer) else answer
        return default(request)

    return respond


class FakeChatServer:
    """The server; use as a context manager, or call start() and stop()."""

    def __init__(self, responder: Responder | None = None, model: str = DEFAULT_MODEL, host: str = "127.0.0.1", port: int = 0):
        self.responder = responder or echo
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeChatServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-chat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- building responses ----------------------------------------------------------------
    def record(self, request: dict[str, Any], headers: Any = None) -> None:
        """Keep the request body (`headers`: the request's headers, for subclasses that check them)."""
        with self._lock:
            self.requests.append(request)

    def completion(self, request: dict[str, Any], reply: ChatReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [self._tool_call(call) for call in reply.tool_calls]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or request.get("model") or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop", "logprobs": None}],
            "usage": usage(request, reply),
        }

    def chunks(self, request: dict[str, Any], reply: ChatReply) -> Iterable[dict[str, Any]]:
        """The same completion as stream chunks: role, content, tool calls, finish, usage."""
        full = self.completion(request, reply)
        base = {k: full[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

        yield chunk({"role": "assistant", "content": ""})
        for word in re.findall(r"\S+\s*", reply.content or ""):
            yield chunk({"content": word})
        for index, call in enumerate(full["choices"][0]["message"].get("tool_calls", [])):
            yield chunk({"tool_calls": [{"index": index, **call}]})
        yield chunk({}, full["choices"][0]["finish_reason"])
        if (request.get("stream_options") or {}).get("include_usage"):
            yield base | {"choices": [], "usage": full["usage"]}

    def _tool_call(self, call: ToolCall) -> dict[str, Any]:
        return {"id": call.id or f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}


def usage(request: dict[str, Any], reply: ChatReply) -> dict[str, int]:
    """Token usage: as given, else word counts (prompt: every message; completion: the reply)."""
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = sum(len(_text(m.get("content")).split()) + 3 for m in request.get("messages") or [] if isinstance(m, dict))
    completion = reply.completion_tokens
    if completion is None:
        completion = len((reply.content or "").split()) + sum(len(json.dumps(c.arguments).split()) + 2 for c in reply.tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _handler_for(server: FakeChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
            return

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "fake"}]})
            else:
                self._json(404, _error_body(404, f"No route {self.path}"))

        def do_POST(self) -> None:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, _error_body(404, f"No route {self.path}"))
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, _error_body(400, "The request body is not JSON."))
                return
            server.record(request, self.headers)
            reply = server.responder(request)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.status >= 400:
                self._json(reply.status, _error_body(reply.status, reply.error or f"Fake error {reply.status}"))
            elif request.get("stream"):
                self._stream(server.chunks(request, reply))
            else:
                self._json(200, server.completion(request, reply))

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, chunks: Iterable[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": None, "code": str(status)}}

"""A scripted fake of the Anthropic Messages API, for driving the real bundled Claude Code CLI offline.

Facts measured on claude-agent-sdk 0.2.189 / bundled Claude Code CLI 2.1.332, as root, 2 cores
(tests/test_fake_anthropic.py checks the ones marked [T]; benchmarks/claude_cli_overhead.py times them).

What the CLI sends to ``ANTHROPIC_BASE_URL``
- ``POST /v1/messages?beta=true`` with ``stream: true`` for every model turn [T]. Body keys: model,
  messages, system, tools, metadata, max_tokens, thinking, context_management, output_config, stream.
  Default model ``claude-opus-5-5`` unless ``options.model``. ``tools`` = built-ins named in
  ``tools=[...]`` then MCP tools as ``mcp__<server>__<tool>`` (with ``ENABLE_TOOL_SEARCH=false``) [T].
  ``system`` = billing header + system prompt; the environment block arrives as a
  ``{"role": "system"}`` entry inside ``messages``. Tool results come back as ``tool_result`` blocks
  in the next request [T]; several tool calls in one reply are answered together, not necessarily
  in the order they were called.
- Headers: ``x-api-key`` (``authorization: Bearer`` with ANTHROPIC_AUTH_TOKEN), ``anthropic-version:
  2023-06-01`` [T], ``anthropic-beta: claude-code-20250219,...``, ``x-claude-code-session-id`` = the
  ResultMessage's session_id [T], ``user-agent: claude-cli/2.1.332 (external, sdk-py, ...)``,
  ``x-stainless-retry-count`` (stays 0: the CLI's own retry loop does not bump it).
- Only WITHOUT ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``: ``HEAD /api/hello`` at start-up and,
  per user prompt, a tool-less title request (``tools: []``, ``output_config.format`` a JSON schema
  ``{"title": string}``) whose usage is added to the session cost. This fake answers tool-less
  requests itself (kind "side"; JSON when a schema is demanded) without consuming script steps.
  ``count_tokens`` was never called; it is answered anyway.

Offline, quick start-up (see ``offline_cli_env``)
- Without ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` the CLI resolves ``api.anthropic.com``
  ~10 times per run (strace); ``DISABLE_TELEMETRY``/``DISABLE_ERROR_REPORTING``/``DISABLE_AUTOUPDATER``
  alone still leave 2 lookups. With it the base URL is the only connection [T: one request total].
- ``CLAUDE_CONFIG_DIR`` a private writable folder; ``setting_sources=[]``.
- Spawn to connected ~0.35-0.4 s; CLI start to first request ~0.4-0.5 s; one MCP tool call round
  trip (reply with tool_use -> next request with its tool_result) ~40-70 ms; idle machine.

API errors: never an exception through the SDK [T]
- 429/500/529 and dropped streams are retried by the CLI ``CLAUDE_CODE_MAX_RETRIES`` times with
  backoff ~0.5 s * 2^n + jitter (retries=2: ~1.7 s; 4: ~8.3 s). ``retry-after``/``retry-after-ms``
  headers and ``CLAUDE_CODE_OVERLOADED_RETRY_BASE_DELAY_MS`` did not shorten it.
- Then: one ``AssistantMessage(model="<synthetic>", error="server_error" | "rate_limit",
  content=[TextBlock("API Error: 529 Overloaded. ...")])`` and
  ``ResultMessage(subtype="success", is_error=True, api_error_status=529, terminal_reason="api_error",
  result="API Error: ...")`` [T]. 429 -> error "rate_limit", result "API Error: Request rejected (429)
  · <message>". A dropped-stream storm: three streamed attempts plus one non-streaming fallback,
  then ``result="API Error: Connection to the API was lost (ECONNRESET)..."``, api_error_status None.
  One dropped stream is retried transparently [T]. The same client can take the next query [T].

Permissions (default mode, as root; never bypassPermissions)
- A tool not in ``tools=`` -> error tool_result "No such tool available: Bash. ..." and the guard is
  never asked [T]. A tool in ``allowed_tools`` skips ``can_use_tool`` entirely (the SDK warns
  CanUseToolShadowedWarning) - so a path guard must not list Read/Write there [T]. Other offered
  tools (built-in or MCP) go to ``can_use_tool``; a ``PermissionResultDeny(message=m)`` becomes an
  error tool_result whose text is exactly ``m`` and is listed in ``ResultMessage.permission_denials`` [T].
- ``permission_mode="dontAsk"``: ``can_use_tool`` is never called; everything not in
  ``allowed_tools`` is denied ("... running in don't ask mode ...").
- ``ResultMessage.num_turns`` counts the prompt plus one per tool result, not model requests [T].

Usage, cost and limits
- ``ResultMessage.usage`` sums the fake's ``input_tokens``/``output_tokens`` [T]; ``total_cost_usd``
  is priced by model name: 1M in + 1M out = $24 for the default/unknown names, $18 for names
  containing ``claude-sonnet-4-5`` (e.g. ``databricks-claude-sonnet-4-5``). Big token counts in a
  script therefore drive budget tests.
- ``max_budget_usd`` is checked after each model turn: ``ResultMessage(subtype="error_max_budget_usd",
  is_error=True, terminal_reason="budget_exhausted", errors=["Reached maximum budget ($1)"])``.
  ``max_turns=2`` stops after 2 requests: ``subtype="error_max_turns", terminal_reason="max_turns"``.

Usage: the ``fake_anthropic`` / ``fake_claude_env`` fixtures (``tests.fakes.anthropic_fixture``)::

    fake.script(tool_use("mcp__eval__search_traces", {"max_results": 5}), text("done"))
    fake.script(text("worker reply"), match="<marker in the worker system prompt>")
    ... run sessions ...
    assert "trace_id" in fake.tool_results_in(fake.main_requests()[1])[0].text
    fake.assert_script_finished()
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

EXHAUSTED_TEXT = "[script exhausted]"
SIDE_TEXT = "Fake session title"
_SECRET_HEADER_WORDS = ("key", "auth", "token", "secret", "cookie")

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


# ----------------------------------------------------------------------------- script steps


@dataclass(frozen=True)
class Text:
    """A text content block."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """A tool_use content block; ``name`` as the CLI sees it, e.g. ``mcp__eval__search_traces``."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One assistant message. ``stop_reason`` defaults to tool_use when any block is a tool call."""

    blocks: tuple[Text | ToolUse, ...]
    stop_reason: str | None = None
    input_tokens: int = 1200
    output_tokens: int = 80

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if any(isinstance(b, ToolUse) for b in self.blocks) else "end_turn"


@dataclass(frozen=True)
class HttpError:
    """Answer the next ``times`` main requests with this HTTP status and an Anthropic error body."""

    status: int
    times: int = 1
    message: str | None = None
    retry_after: float | None = None  # the CLI ignores it: backoff is ~0.5 s * 2^n regardless


@dataclass(frozen=True)
class DropStream:
    """Answer 200, send the first SSE events (and some text), then cut the connection."""

    times: int = 1
    partial_text: str = "I was about to"


Step = Union[Reply, HttpError, DropStream, str, Callable[[dict[str, Any]], "Step"]]


def text(value: str, *, input_tokens: int = 1200, output_tokens: int = 80) -> Reply:
    """A plain text answer that ends the turn."""
    return Reply((Text(value),), input_tokens=input_tokens, output_tokens=output_tokens)


def tool_use(name: str, input: dict[str, Any] | None = None, *, say: str | None = None) -> Reply:
    """One tool call, optionally preceded by a sentence of text."""
    return tool_uses((name, input or {}), say=say)


def tool_uses(*calls: tuple[str, dict[str, Any]], say: str | None = None) -> Reply:
    """Several tool calls in one assistant message (the CLI runs them and answers all at once)."""
    blocks: list[Text | ToolUse] = [Text(say)] if say else []
    blocks.extend(ToolUse(name, dict(args)) for name, args in calls)
    return Reply(tuple(blocks))


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ToolResult:
    """A tool_result block found in a request's messages, with its content flattened to text."""

    tool_use_id: str
    text: str
    is_error: bool
    tool_name: str | None  # resolved from the matching tool_use block, when present


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; secrets removed
    body: Any  # parsed JSON (dict) when possible, else text, else None
    kind: str  # "main" | "side" | "count_tokens" | "other"
    at: float  # time.monotonic() when the request arrived
    reply: str = ""  # what the fake answered, for debugging failed tests

    @property
    def session_id(self) -> str | None:
        return self.headers.get("x-claude-code-session-id")

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        return [t.get("name", "") for t in tools or []]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    def system_text(self) -> str:
        return _system_text(self.body if isinstance(self.body, dict) else {})

    def last_user_text(self) -> str:
        return _last_user_text(self.messages)


def content_text(content: Any) -> str:
    """Flatten a message/tool_result ``content`` (string or list of blocks) to plain text."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, dict):
            if block.get("type") == "text":
                parts.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                parts.append(content_text(block.get("content")))
    return "\n".join(parts)


def tool_results_in(request: RecordedRequest | dict[str, Any], *, latest_only: bool = False) -> list[ToolResult]:
    """Every tool_result in a request's conversation, oldest first (or only the last user message's)."""
    body = request.body if isinstance(request, RecordedRequest) else request
    messages = body.get("messages", []) if isinstance(body, dict) else []
    names = {
        block.get("id"): block.get("name")
        for message in messages
        if message.get("role") == "assistant" and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_use"
    }
    user_messages = [m for m in messages if m.get("role") == "user"]
    if latest_only:
        user_messages = user_messages[-1:]
    return [
        ToolResult(
            tool_use_id=block.get("tool_use_id", ""),
            text=content_text(block.get("content")),
            is_error=bool(block.get("is_error")),
            tool_name=names.get(block.get("tool_use_id")),
        )
        for message in user_messages
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    own = system if isinstance(system, str) else content_text(system)
    # The CLI also carries context as {"role": "system"} entries inside messages.
    inline = [content_text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system"]
    return "\n".join([own, *inline])


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


# ----------------------------------------------------------------------------- the server


@dataclass
class _Script:
    match: str | None  # substring of the system prompt or first user message; None = default queue
    steps: list[Step]


class FakeAnthropic:
    """A scripted Anthropic Messages API on 127.0.0.1, safe to share across CLI sessions.

    Main requests (those offering tools) consume script steps in order; a script registered with
    ``match=`` only serves requests whose system prompt or first user message contains that text,
    so concurrent or interleaved session kinds (initializer vs worker) can have separate queues.
    """

    def __init__(self, *, side_text: str = SIDE_TEXT) -> None:
        self.side_text = side_text
        self.requests: list[RecordedRequest] = []
        self.exhausted: list[RecordedRequest] = []
        self.script_errors: list[str] = []
        self._scripts: list[_Script] = [_Script(None, [])]
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeAnthropic:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeAnthropic is not running; call start() first.")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting

    def script(self, *steps: Step, match: str | None = None) -> FakeAnthropic:
        """Append steps to the default queue, or to the queue of requests containing ``match``."""
        with self._lock:
            queue = next((s for s in self._scripts if s.match == match), None)
            if queue is None:
                queue = _Script(match, [])
                self._scripts.insert(len(self._scripts) - 1, queue)  # marker queues before the default
            queue.steps.extend(steps)
        return self

    def remaining_steps(self) -> int:
        with self._lock:
            return sum(len(s.steps) for s in self._scripts)

    def assert_script_finished(self) -> None:
        """Every scripted step was used and no main request ran past the end of its script."""
        leftover = self.remaining_steps()
        if self.exhausted or leftover or self.script_errors:
            replies = [r.reply for r in self.main_requests()]
            raise AssertionError(
                f"script not finished cleanly: {len(self.exhausted)} request(s) past the end, "
                f"{leftover} step(s) unused, script errors {self.script_errors}; main replies so far: {replies}"
            )

    # -- queries over recorded traffic

    def main_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "main"]

    requests_with_tools = main_requests

    def side_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.kind == "side"]

    def sessions(self) -> dict[str, list[RecordedRequest]]:
        """Main requests grouped by the CLI's session id, in order of first appearance."""
        grouped: dict[str, list[RecordedRequest]] = {}
        for request in self.main_requests():
            grouped.setdefault(request.session_id or "?", []).append(request)
        return grouped

    tool_results_in = staticmethod(tool_results_in)

    # -- deciding replies (called from handler threads)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_step(self, body: dict[str, Any]) -> Step | None:
        haystack = _system_text(body) + "\n" + _first_user_text(body.get("messages", []))
        with self._lock:
            queue = next(
                (s for s in self._scripts if s.match is None or s.match in haystack),
                self._scripts[-1],
            )
            if not queue.steps:
                return None
            step = queue.steps[0]
            if isinstance(step, (HttpError, DropStream)) and step.times > 1:
                queue.steps[0] = _replace_times(step, step.times - 1)
            else:
                queue.steps.pop(0)
        while callable(step) and not isinstance(step, (Reply, HttpError, DropStream)):
            produced = step(body)
            if produced is None:
                raise TypeError(f"script step {step!r} returned None; return a step such as text('...')")
            step = produced
            if isinstance(step, (HttpError, DropStream)) and step.times > 1:
                # The callable's verdict holds for the following requests too.
                with self._lock:
                    queue.steps.insert(0, _replace_times(step, step.times - 1))
        return step

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"


def _replace_times(step: HttpError | DropStream, times: int) -> HttpError | DropStream:
    from dataclasses import replace

    return replace(step, times=times)


def _first_user_text(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


# ----------------------------------------------------------------------------- HTTP handling


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet test output; every request is recorded instead

    def do_HEAD(self) -> None:
        self._record(None, "other", "200 empty")
        self._send_json(200, None)

    def do_GET(self) -> None:
        self._record(None, "other", "404")
        self._send_json(404, _error_body(404, f"The fake has no GET {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        route = self.path.split("?", 1)[0]
        if route == "/v1/messages/count_tokens":
            self._record(body, "count_tokens", "token estimate")
            self._send_json(200, {"input_tokens": max(1, len(raw) // 4)})
        elif route == "/v1/messages" and isinstance(body, dict):
            self._messages(body)
        else:
            self._record(body, "other", "404")
            self._send_json(404, _error_body(404, f"The fake has no POST {route}"))

    # -- /v1/messages

    def _messages(self, body: dict[str, Any]) -> None:
        if not body.get("tools"):
            answer = _side_answer(body, self.fake.side_text)
            self._record(body, "side", f"text: {answer}")
            self._send_reply(body, text(answer, input_tokens=200, output_tokens=8))
            return
        record = self._record(body, "main", "")
        try:
            step = self.fake._next_step(body)
        except Exception as exc:  # a broken callable step: fail the test loudly, not the socket
            record.reply = f"script error: {exc!r}"
            with self.fake._lock:
                self.fake.script_errors.append(f"{exc!r}")
            self._send_json(500, _error_body(500, f"fake script error: {exc!r}"))
            return
        if step is None:
            record.reply = f"text: {EXHAUSTED_TEXT}"
            with self.fake._lock:
                self.fake.exhausted.append(record)
            self._send_reply(body, text(EXHAUSTED_TEXT))
        elif isinstance(step, str):
            record.reply = f"text: {step}"
            self._send_reply(body, text(step))
        elif isinstance(step, Reply):
            record.reply = _describe(step)
            self._send_reply(body, step)
        elif isinstance(step, HttpError):
            record.reply = f"http {step.status}"
            headers = {} if step.retry_after is None else {"retry-after": f"{step.retry_after:g}"}
            self._send_json(step.status, _error_body(step.status, step.message), headers)
        elif isinstance(step, DropStream):
            record.reply = "dropped stream"
            self._drop(body, step)
        else:
            raise TypeError(f"Unknown script step {step!r}")

    def _send_reply(self, body: dict[str, Any], reply: Reply) -> None:
        message_id = self.fake._new_id("msg")
        blocks = [_block_json(b, self.fake) for b in reply.blocks]
        if not body.get("stream"):
            self._send_json(200, _message_json(message_id, body, blocks, reply))
            return
        self._start_sse()
        start = _message_json(message_id, body, [], reply)
        start["stop_reason"] = None
        start["usage"]["output_tokens"] = 1
        self._event("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(blocks):
            self._stream_block(index, block)
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.effective_stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
        self._event("message_stop", {"type": "message_stop"})
        self._end_sse()

    def _stream_block(self, index: int, block: dict[str, Any]) -> None:
        if block["type"] == "text":
            self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            value = block["text"]
            for piece in (value[: len(value) // 2], value[len(value) // 2 :]):
                if piece:
                    self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
        else:
            start = {**block, "input": {}}
            self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            encoded = json.dumps(block["input"])
            # Two fragments, split mid-JSON, as the real API does: the client must concatenate.
            for piece in (encoded[: len(encoded) // 2], encoded[len(encoded) // 2 :]):
                self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _drop(self, body: dict[str, Any], step: DropStream) -> None:
        partial = Reply((Text(step.partial_text),))
        if body.get("stream"):
            self._start_sse()
            start = _message_json(self.fake._new_id("msg"), body, [], partial)
            start["stop_reason"] = None
            start["usage"]["output_tokens"] = 1
            self._event("message_start", {"type": "message_start", "message": start})
            self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": step.partial_text}})
        else:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "10000")
            self.end_headers()
            self.wfile.write(b'{"id": "msg_')
            self.wfile.flush()
        # An abortive close (RST) without the final chunk: the client sees a broken transfer.
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()

    # -- wire helpers

    def _record(self, body: Any, kind: str, reply: str) -> RecordedRequest:
        headers = {
            name.lower(): value
            for name, value in self.headers.items()
            if not any(word in name.lower() for word in _SECRET_HEADER_WORDS)
        }
        if auth := self.headers.get("authorization"):  # which credential came, never the credential itself
            headers["authorization-sha256"] = hashlib.sha256(auth.encode()).hexdigest()
        record = RecordedRequest(self.command, self.path, headers, body, kind, time.monotonic(), reply)
        self.fake._record(record)
        return record

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", self.fake._new_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self.fake._new_id("req"))
        self.end_headers()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _end_sse(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _block_json(block: Text | ToolUse, fake: FakeAnthropic) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    return {"type": "tool_use", "id": block.id or fake._new_id("toolu"), "name": block.name, "input": block.input}


def _message_json(message_id: str, body: dict[str, Any], blocks: list[dict[str, Any]], reply: Reply) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": blocks,
        "stop_reason": reply.effective_stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    default = "Overloaded" if status == 529 else f"Fake API error {status}"
    return {"type": "error", "error": {"type": kind, "message": message or default}}


def _side_answer(body: dict[str, Any], side_text: str) -> str:
    """Canned text for a tool-less request; JSON fitting the schema when one is demanded.

    The CLI's title request asks for ``{"title": string}`` through ``output_config.format``.
    """
    output_format = (body.get("output_config") or {}).get("format") or {}
    if output_format.get("type") != "json_schema":
        return side_text
    return json.dumps(_sample_for(output_format.get("schema") or {}, side_text))


def _sample_for(schema: dict[str, Any], side_text: str) -> Any:
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _sample_for(properties.get(name) or {}, side_text) for name in schema.get("required") or properties}
    samples = {"string": side_text, "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}
    return samples.get(kind if isinstance(kind, str) else "string", side_text)


def _describe(reply: Reply) -> str:
    parts = [f"tool_use {b.name}" if isinstance(b, ToolUse) else f"text: {b.text[:60]}" for b in reply.blocks]
    return "; ".join(parts)


# ----------------------------------------------------------------------------- CLI environment


def offline_cli_env(base_url: str, config_dir: str, *, max_retries: int = 2, **extra: str) -> dict[str, str]:
    """Environment for ``ClaudeAgentOptions.env`` that keeps the CLI on the fake and quick to fail."""
    env = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "test-key",
        "CLAUDE_CONFIG_DIR": config_dir,
        # MCP tools go out with every request instead of behind a ToolSearch tool.
        "ENABLE_TOOL_SEARCH": "false",
        # No telemetry, error reporting, update checks or other calls to api.anthropic.com.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # Bounded CLI-side retries so an injected error storm ends in seconds, not minutes.
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
        "API_TIMEOUT_MS": "20000",
    }
    env.update(extra)
    return env


def iter_sse_events(raw: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parse an SSE body into (event, data) pairs; used by the fake's own tests."""
    for chunk in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if "event" in lines:
            yield lines["event"], json.loads(lines.get("data", "{}"))

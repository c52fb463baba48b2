"""A deployed agent behind an OpenAI-compatible `/v1/chat/completions` (stdlib only), for `run_eval.py --endpoint`.

It answers like the demo's support agent would, from the last user message, without tracing anything
(an endpoint's spans live on its own side): the suite sees a root span per request only. Every request
body and its Authorization header are kept, so a test can check what reached the endpoint.

    with AgentEndpoint() as endpoint:                  # endpoint.url: http://127.0.0.1:PORT/v1/chat/completions
        ...
    AgentEndpoint(empty_answers=True)                  # a regressed deployment: every answer empty
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def answer(question: str) -> str:
    return f"Thanks for reaching out! About \"{' '.join(question.split())[:60]}\": our support team has the details and will follow up today."


class AgentEndpoint:
    def __init__(self, empty_answers: bool = False, status: int = 200):
        self.empty_answers, self.status = empty_answers, status
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1/chat/completions"

    def __enter__(self) -> AgentEndpoint:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-agent-endpoint", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        question = next((str(m.get("content") or "") for m in reversed(request.get("messages") or [])
                         if isinstance(m, dict) and m.get("role") == "user"), "")
        content = "" if self.empty_answers else answer(question)
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": request.get("model") or "agent",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(question) // 4, "completion_tokens": len(content) // 4, "total_tokens": (len(question) + len(content)) // 4}}


def _handler(endpoint: AgentEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            if not self.path.rstrip("/").endswith("/v1/chat/completions"):
                return self._json(404, {"error": {"message": f"No route {self.path}", "type": "not_found_error"}})
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                return self._json(400, {"error": {"message": "The request body is not JSON.", "type": "invalid_request_error"}})
            with endpoint._lock:
                endpoint.requests.append(request)
                endpoint.authorizations.append(self.headers.get("Authorization"))
            if endpoint.status >= 400:
                return self._json(endpoint.status, {"error": {"message": f"Fake error {endpoint.status}", "type": "server_error"}})
            return self._json(200, endpoint.reply(request))

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler

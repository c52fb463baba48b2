"""A deployed agent behind an OpenAI-compatible `/v1/chat/completions`, for `run_eval.py --endpoint`.

The demo's own chat server (mlflow_eval_agent.demo.chat_server) with a responder that answers like
the demo's support agent would, from the last user message, without tracing anything (an endpoint's
spans live on its own side): the suite sees a root span per request only. Every request body and
its Authorization header are kept, so a test can check what reached the endpoint.

    with AgentEndpoint() as endpoint:                  # endpoint.url: http://127.0.0.1:PORT/v1/chat/completions
        ...
    AgentEndpoint(empty_answers=True)                  # a regressed deployment: every answer empty
"""

from __future__ import annotations

from typing import Any

from mlflow_eval_agent.demo.chat_server import ChatReply, FakeChatServer, last_user_text


def answer(question: str) -> str:
    return f"Thanks for reaching out! About \"{' '.join(question.split())[:60]}\": our support team has the details and will follow up today."


class AgentEndpoint(FakeChatServer):
    def __init__(self, empty_answers: bool = False, status: int = 200):
        super().__init__(self.reply, model="agent")
        self.empty_answers, self.status = empty_answers, status
        self.authorizations: list[str | None] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def record(self, request: dict[str, Any], headers: Any = None) -> None:
        super().record(request)
        with self._lock:
            self.authorizations.append(headers.get("Authorization") if headers is not None else None)

    def reply(self, request: dict[str, Any]) -> ChatReply:
        if self.status >= 400:
            return ChatReply(status=self.status)
        return ChatReply(content="" if self.empty_answers else answer(last_user_text(request)))

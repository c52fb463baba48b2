"""The demo's chat model: what the local fake endpoint answers to the support agent.

It writes a short support answer from the context the agent sends (documents, a tool result, or a
failed lookup), so traces carry plausible replies and token counts without any real model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .chat_server import ChatReply, last_user_text


def support_model(request: dict[str, Any]) -> ChatReply:
    """A chat-server responder for the demo agent's requests."""
    messages = request.get("messages") or []
    context = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict) and m.get("role") == "system")
    question = last_user_text(request)
    return ChatReply(content=" ".join(_sentences(context, question)))


def _sentences(context: str, question: str) -> list[str]:
    opening = "Thanks for reaching out!"
    if "Tool lookup failed" in context:
        return [opening, "I couldn't reach our systems to check that just now; I've opened a ticket and we'll email you within a day."]
    facts = re.findall(r"\[kb/\w+\] ([^\n\[]+)", context)
    tool = re.search(r"Tool result: (\{.*\})", context)
    answer = [opening]
    if tool:
        answer.append(_from_tool(json.loads(tool.group(1))))
    if facts:
        answer.append(facts[0].strip())
    if len(answer) == 1:
        answer.append(f"I don't have information about that in our help center ({question[:60].strip()}); a colleague will follow up.")
    return answer


def _from_tool(result: dict[str, Any]) -> str:
    if "status" in result:
        return f"Order {result['order_id']} is {result['status']} and should reach you in about {result['eta_days']} day(s)."
    if "in_stock" in result:
        count = result["in_stock"]
        return f"We have {count} in stock right now." if count else "That size is sold out at the moment."
    return f"Your return {result.get('return_id')} is open; the prepaid label is at {result.get('label_url')}."

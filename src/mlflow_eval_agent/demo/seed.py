"""Fill an experiment with the demo agent's traces, with known failure modes (the ground truth).

`plan_requests(n, seed)` decides, deterministically, which request gets which fault; `seed_demo`
runs the agent on them and returns each trace id with its injected modes, so a test can measure a
suite's recall and false positives against the truth.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .agent import MS, ChatFn, Clock, Faults, Request, SupportAgent

# Share of traces per injected failure mode (the rest is normal traffic).
MODE_SHARES = {"uncaught_tool_error": 0.08, "caught_tool_error": 0.08, "empty_answer": 0.07, "empty_retrieval": 0.08, "slow": 0.08}
PRODUCTS = ["Ridge 2 tent", "Summit down jacket", "Trail runner shoes", "Basecamp 40L pack", "Alpine fleece"]
OFF_TOPIC = ["Can I pay with crypto?", "Do you sponsor climbing events?", "Is the Glasgow branch hiring?", "Can I get the catalog in Braille?"]
PASTE = "Order history export:\n" + "\n".join(f"2025-0{m}-1{d} A{1000 + m * 10 + d} Ridge 2 tent 1x 349.00 EUR delivered" for m in range(1, 10) for d in range(10)) * 2


@dataclass(frozen=True)
class SeededTrace:
    trace_id: str
    modes: frozenset[str]
    question: str


def plan_requests(n: int, seed: int = 7) -> list[tuple[Request, Faults]]:
    """n requests with faults: each mode on round(share x n) distinct requests (at least one)."""
    rng = random.Random(seed)
    slots = list(range(n))
    rng.shuffle(slots)
    chosen: dict[str, set[int]] = {}
    for mode, share in MODE_SHARES.items():
        count = max(1, round(share * n))
        chosen[mode], slots = set(slots[:count]), slots[count:]
    return [_request(i, rng, {m for m, ids in chosen.items() if i in ids}) for i in range(n)]


def _request(i: int, rng: random.Random, modes: set[str]) -> tuple[Request, Faults]:
    order = str(10_000 + i * 7)
    product = PRODUCTS[i % len(PRODUCTS)]
    if "empty_retrieval" in modes:
        request = Request(OFF_TOPIC[i % len(OFF_TOPIC)], "policy")
    elif "caught_tool_error" in modes:
        request = Request(f"Do you have the {product} in stock in size M?", "stock", f"SKU-{i % 5}{i % 3}-M")
    elif "uncaught_tool_error" in modes:
        request = Request(f"Where is my order {order}? It should have arrived by now.", "order", order)
    else:
        request = _normal(i, order, product)
    if "empty_answer" in modes:
        request = Request(f"Why was I charged twice for order {order}? Here is my history.", "policy", pasted=PASTE)
    faults = Faults(
        tool_error="uncaught" if "uncaught_tool_error" in modes else "caught" if "caught_tool_error" in modes else None,
        empty_retrieval="empty_retrieval" in modes,
        slow_model="slow" in modes,
        long_paste="empty_answer" in modes,
    )
    return request, faults


def _normal(i: int, order: str, product: str) -> Request:
    kind = i % 4
    if kind == 0:
        return Request(f"Where is my order {order}? It should arrive soon.", "order", order)
    if kind == 1:
        return Request(f"Do you have the {product} in stock in size L?", "stock", f"SKU-{i % 5}{i % 3}-L")
    if kind == 2:
        return Request(f"I want to return order {order}, the {product} is too small. What is the policy?", "return", order)
    return Request(f"Does the {product} have a warranty if the zipper breaks?", "policy")


def seed_demo(experiment_id: str, chat: ChatFn, n: int = 60, seed: int = 7, start_ns: int | None = None,
              progress: Callable[[int], None] | None = None) -> list[SeededTrace]:
    """Run the agent on `n` planned requests; traces are spaced 45 s apart in (virtual) time.
    `progress(k)` is told after each trace."""
    agent = SupportAgent(chat, experiment_id)
    begin = start_ns if start_ns is not None else time.time_ns() - n * 45_000 * MS
    clock = Clock(begin, random.Random(seed))
    seeded = []
    for i, (request, faults) in enumerate(plan_requests(n, seed)):
        clock.now_ns = begin + i * 45_000 * MS
        trace_id = agent.answer(request, faults, clock)
        seeded.append(SeededTrace(trace_id, frozenset(faults.modes), request.question))
        if progress:
            progress(i + 1)
    return seeded

"""Benchmark corpora for the trace profile: the light one and a realistic agent corpus, cached.

- light (the original, `benchmarks/profile.py:corpus`): 4-5 spans and ~6 KB per trace.
- realistic (`realistic_corpus`): a tool-using support agent, 20-40 spans per trace: an AGENT
  root, a planning CHAIN, 4-6 reasoning steps each with a CHAT_MODEL call whose input is the
  whole message history so far (system prompt, user question, earlier assistant turns and tool
  results: 5-50 KB), tool calls (some with an HTTP child span, some caught errors), retrievers
  returning documents (sometimes nothing), an embedding and a reranker, guardrail and parser
  spans, token usage on every model call, sessions, ~5% caught tool timeouts (hidden failures),
  ~3% uncaught errors, ~2% empty answers. About 50-120 KB per trace.

Traces are written with the store's bulk span ingestion (`store.log_spans`, the path OTLP takes),
like the light corpus, and the sqlite file is kept in the cache folder for later runs.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("light", "realistic")
WRITTEN = 20_000  # realistic traces written with log_spans; larger corpora repeat them (see build)
BASE_MS = 1_767_225_600_000
SYSTEM_PROMPT = (
    "You are the support assistant of an online shop. Answer in the customer's language, cite the policy documents you used, "
    "never promise refunds above the policy limit, call tools to look up orders, shipments and refunds, and hand over to a "
    "human when the customer asks. Keep answers short and friendly; never reveal internal notes or other customers' data. "
) * 12  # ~3.6 KB
TOOLS = ("lookup_order", "track_shipment", "check_refund_policy", "issue_refund", "update_address", "search_catalog")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5")
POLICY_SENTENCES = (
    "Express orders ship within two business days. ", "Refunds above 200 EUR need a supervisor's approval. ",
    "Damaged items are replaced free of charge within 30 days. ", "Addresses can be changed until the parcel leaves the warehouse. ",
    "Customers in the EU may withdraw within 14 days without giving a reason. ",
)


def _documents(rng: random.Random, k: int) -> list[dict]:
    return [
        {"page_content": f"Policy {d}: " + "".join(rng.choice(POLICY_SENTENCES) for _ in range(rng.randint(8, 20))),
         "metadata": {"doc_uri": f"kb/policy-{d}", "chunk_id": rng.randint(0, 99)}}
        for d in rng.sample(range(200), k)
    ]


def _tool_result(rng: random.Random, tool: str, order: int) -> dict:
    if tool == "search_catalog":
        return {"items": [{"sku": f"SKU-{rng.randint(1000, 9999)}", "title": "Wireless headphones, noise cancelling, black",
                           "price": round(rng.uniform(10, 400), 2), "stock": rng.randint(0, 50),
                           "description": "".join(rng.choice(POLICY_SENTENCES) for _ in range(6))} for _ in range(rng.randint(3, 8))]}
    return {"order_id": order, "status": rng.choice(["shipped", "in transit", "delayed", "delivered"]), "carrier": rng.choice(["DHL", "UPS", "GLS"]),
            "eta_days": rng.randint(1, 5), "events": [{"at": f"2026-01-{d:02d}T10:00:00Z", "what": rng.choice(["picked", "sorted", "out for delivery"])}
                                                      for d in range(1, rng.randint(3, 12))]}


def realistic_corpus(n: int, seed: int = 1) -> Iterator:
    """n realistic agent traces (TraceSpec) with a fixed seed (see the module doc)."""
    sys.path.insert(0, str(REPO))
    from tests.fakes.trace_writer import SpanSpec, TraceSpec

    rng = random.Random(seed)
    for i in range(n):
        order = 10_000 + i
        question = f"Hi, where is my order {order}? I ordered it {rng.randint(2, 20)} days ago and paid express shipping. Can I still change the address?"
        model = rng.choices(MODELS, weights=(6, 3, 1))[0]
        history: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT},
                               *([{"role": "user", "content": "Earlier: " + question}, {"role": "assistant", "content": "Earlier answer. " * 40}]
                                 if rng.random() < 0.5 else []),
                               {"role": "user", "content": question}]
        timeout_at = rng.randrange(6) if rng.random() < 0.05 else None
        crash = timeout_at is None and rng.random() < 0.03
        children: list = []
        t = 2
        children.append(SpanSpec("input_guardrail", "GUARDRAIL", start_ms=t, duration_ms=rng.randint(2, 30), inputs={"text": question},
                                 outputs={"allowed": True, "categories": []}))
        t += 35
        query_docs = _documents(rng, 4)
        retrieve = SpanSpec("retrieve_policies", "RETRIEVER", start_ms=t + 20, duration_ms=rng.randint(10, 80), inputs={"query": question},
                            outputs=[] if rng.random() < 0.04 else query_docs)
        children.append(SpanSpec("plan", "CHAIN", start_ms=t, duration_ms=200, inputs={"question": question}, outputs={"steps": ["lookup", "answer"]}, children=[
            SpanSpec("embed_query", "EMBEDDING", start_ms=t + 1, duration_ms=rng.randint(5, 40), inputs={"input": question}, outputs={"dims": 1536},
                     attributes={"mlflow.llm.model": "text-embedding-3-small"}),
            retrieve,
            SpanSpec("rerank", "RERANKER", start_ms=t + 110, duration_ms=rng.randint(5, 40), inputs={"query": question, "k": 3},
                     outputs=query_docs[:3]),
        ]))
        history.append({"role": "user", "content": "Context:\n" + "\n".join(d["page_content"] for d in query_docs)})
        t += 210
        steps = rng.randint(4, 6)
        error = None
        for step in range(steps):
            ms = rng.randint(300, 4_000)
            usage = {"input_tokens": sum(len(m["content"]) for m in history) // 4, "output_tokens": rng.randint(20, 300)}
            usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
            last = step == steps - 1
            tools = [] if last else rng.sample(TOOLS, rng.randint(2, 3) if steps <= 5 else rng.randint(1, 2))
            reply = {"role": "assistant", "content": "" if tools else "Your order has shipped and should arrive within two days. " * 3,
                     **({"tool_calls": [{"id": f"call_{step}_{k}", "type": "function", "function": {"name": tool, "arguments": json.dumps({"order_id": order})}}
                                         for k, tool in enumerate(tools)]} if tools else {})}
            children.append(SpanSpec(
                "chat_model", "CHAT_MODEL", start_ms=t, duration_ms=ms,
                inputs={"model": model, "messages": list(history), "temperature": 0.2},
                outputs={"id": f"chatcmpl-{i}-{step}", "model": model, "choices": [{"index": 0, "message": reply, "finish_reason": "tool_calls" if tools else "stop"}],
                         "usage": {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]}},
                attributes={"mlflow.chat.tokenUsage": usage, "mlflow.llm.model": model},
            ))
            children.append(SpanSpec("parse_reply", "PARSER", start_ms=t + ms + 1, duration_ms=1, inputs={"finish_reason": "tool_calls" if tools else "stop"},
                                     outputs={"tool_calls": len(tools)}))
            t += ms + 5
            history.append(reply)
            for k, tool in enumerate(tools):
                dur = rng.randint(20, 600)
                span = SpanSpec(tool, "TOOL", start_ms=t, duration_ms=dur, inputs={"order_id": order})
                if timeout_at == step and k == 0:
                    span.status, span.error = "ERROR", ("TimeoutError", f"{tool} timed out after {rng.choice([10, 30])}s for order {order}")
                    result = {"error": "The service did not answer in time; try again later."}
                elif crash and step == steps - 2 and k == 0:
                    span.status, span.error = "ERROR", ("KeyError", f"'{rng.choice(['carrier', 'eta', 'warehouse'])}'")
                    error = span.error
                    result = None
                else:
                    result = _tool_result(rng, tool, order)
                    span.outputs = result
                if tool in ("lookup_order", "track_shipment"):
                    span.children.append(SpanSpec("http_get", "UNKNOWN" if rng.random() < 0.02 else "TASK", start_ms=t + 1, duration_ms=max(1, dur - 5),
                                                  inputs={"url": f"https://orders.internal/api/orders/{order}"}, outputs={"status_code": 200}))
                children.append(span)
                t += dur + 2
                if result is not None:
                    history.append({"role": "tool", "tool_call_id": f"call_{step}_{k}", "content": json.dumps(result)})
                if error:
                    break
            if error:
                break
            if rng.random() < 0.3:  # a second lookup in the knowledge base mid-conversation
                docs = _documents(rng, 3)
                children.append(SpanSpec("retrieve_policies", "RETRIEVER", start_ms=t, duration_ms=rng.randint(10, 80),
                                         inputs={"query": f"policy for order {order}"}, outputs=[] if rng.random() < 0.04 else docs))
                history.append({"role": "tool", "content": "\n".join(d["page_content"] for d in docs)})
                t += 90
        if not error:
            children.append(SpanSpec("output_guardrail", "GUARDRAIL", start_ms=t, duration_ms=rng.randint(2, 30),
                                     inputs={"text": "Your order has shipped."}, outputs={"allowed": True}))
            t += 35
        root = SpanSpec("support_agent", "AGENT", duration_ms=t + rng.randint(10, 200),
                        inputs={"messages": [{"role": "user", "content": question}]}, children=children)
        if error:
            root.status, root.error = "ERROR", error
        else:
            root.outputs = {"answer": "" if rng.random() < 0.02 else "Your order has shipped and should arrive within two days."}
        yield TraceSpec(root=root, start_ms=BASE_MS + i * 30_000, session_id=f"session-{i // 3}")


def build(kind: str, n: int, cache_dir: Path, light_corpus=None) -> tuple[str, str]:
    """The store URI and experiment id holding n traces of `kind`, built once and cached.
    `light_corpus(n)` yields the light corpus (it lives in benchmarks/profile.py).

    Realistic corpora above WRITTEN traces are the WRITTEN-trace corpus (written with log_spans)
    repeated in SQL with new trace ids, later times and their own sessions: log_spans writes ~15
    realistic traces/s here, so 100,000 of them (11 GB) would take about two hours."""
    sys.path.insert(0, str(REPO))
    from tests.fakes.trace_writer import create_experiment, write_traces

    stem = f"profile-bench-{n}" if kind == "light" else f"profile-bench-{kind}-{n}"
    path = cache_dir / f"{stem}.db"
    uri = f"sqlite:///{path}"
    marker = cache_dir / f"{stem}.json"
    if path.exists() and marker.exists():
        return uri, json.loads(marker.read_text())["experiment_id"]
    path.unlink(missing_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if kind == "realistic" and n > WRITTEN:
        if n % WRITTEN:
            raise SystemExit(f"A realistic corpus above {WRITTEN:,} traces must be a multiple of {WRITTEN:,} (it repeats that corpus).")
        base_uri, experiment_id = build(kind, WRITTEN, cache_dir)
        shutil.copyfile(base_uri.removeprefix("sqlite:///"), path)
        repeat(path, experiment_id, n // WRITTEN, WRITTEN)
        marker.write_text(json.dumps({"experiment_id": experiment_id, "traces": n, "kind": kind, "repeats": n // WRITTEN}))
        print(f"built {n:,} {kind} traces ({n // WRITTEN} copies of {WRITTEN:,}) in {time.perf_counter() - started:.1f}s -> {path}", flush=True)
        return uri, experiment_id
    experiment_id = create_experiment(uri, "support-agent", str(cache_dir / "artifacts"))
    traces = realistic_corpus(n) if kind == "realistic" else light_corpus(n)
    written = write_traces(uri, experiment_id, traces, batch_spans=5_000)
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"experiment_id": experiment_id, "traces": written, "kind": kind}))
    print(f"built {written:,} {kind} traces in {seconds:.1f}s ({written / seconds:,.0f} traces/s) -> {path}", flush=True)
    return uri, experiment_id


def repeat(path: Path, experiment_id: str, copies: int, n: int) -> None:
    """Add copies 1..copies-1 of the experiment's n traces in SQL: trace ids end in a letter that is
    not hex (g, h, ...: no clash with written ids), times move on by n traces, sessions get a suffix."""
    import sqlite3

    shift_ms = n * 30_000
    conn = sqlite3.connect(path)
    try:
        def cols(table: str) -> list[str]:  # generated columns (spans.duration_ns) cannot be inserted
            return [r[1] for r in conn.execute(f"PRAGMA table_xinfo({table})") if r[6] == 0]

        for k in range(1, copies):
            new_id = f"substr({{c}}, 1, length({{c}}) - 1) || '{chr(ord('f') + k)}'"
            replace = {
                "trace_info": {"request_id": new_id.format(c="request_id"), "timestamp_ms": f"timestamp_ms + {k * shift_ms}",
                               "session_id": f"session_id || '-{k}'"},
                "trace_tags": {"request_id": new_id.format(c="request_id")},
                "trace_request_metadata": {"request_id": new_id.format(c="request_id")},
                "spans": {"trace_id": new_id.format(c="trace_id"), "start_time_unix_nano": f"start_time_unix_nano + {k * shift_ms * 1_000_000}",
                          "end_time_unix_nano": f"end_time_unix_nano + {k * shift_ms * 1_000_000}"},
                "span_metrics": {"trace_id": new_id.format(c="trace_id")},
            }
            originals = "(SELECT request_id FROM trace_info WHERE experiment_id = ? AND substr(request_id, -1) BETWEEN '0' AND 'f')"
            for table, exprs in replace.items():
                names = cols(table)
                key = "request_id" if "request_id" in names else "trace_id"
                select = ", ".join(exprs.get(c, f'"{c}"') for c in names)
                conn.execute(f'INSERT INTO {table} ({", ".join(chr(34) + c + chr(34) for c in names)}) SELECT {select} FROM {table} '
                             f"WHERE {key} IN {originals}", (int(experiment_id),))
            conn.commit()
    finally:
        conn.close()


def describe(uri: str) -> dict:
    """Spans per trace and stored bytes per trace of a built corpus (printed by the benchmark)."""
    import sqlite3

    with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
        traces, spans, size = conn.execute(
            "SELECT (SELECT count(*) FROM trace_info), count(*), sum(length(CAST(content AS BLOB))) FROM spans").fetchone()
    return {"traces": traces, "spans_per_trace": round(spans / max(1, traces), 1), "kb_per_trace": round((size or 0) / 1024 / max(1, traces), 1)}

"""What checks-as-data cost: the engine evaluating check documents vs the same checks hand-written in Python.

    uv run python -m benchmarks.checks [--traces 2000] [--spans 10,50,200]

For each trace size (spans per trace, with ~5 KB of chat history per model span) it times, in one
process, each check compiled by the engine and a plain-Python function a user would write for the
same verdicts, and prints microseconds per trace and the ratio. The verdicts are compared first:
a benchmark of two things that disagree measures nothing. Cost grows linearly with spans per trace
(every condition is one pass over the spans, plus a sort of the spans once per check and trace).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlflow_eval_agent.suite.checks import compile_check, get_check  # noqa: E402

HISTORY = "The customer asked about order 1042 and the agent looked it up. " * 80


def make_trace(spans: int, i: int) -> SimpleNamespace:
    children = []
    for n in range(spans - 1):
        kind = "TOOL" if n % 2 else "CHAT_MODEL"
        failed = kind == "TOOL" and (i + n) % 37 == 0
        error = [SimpleNamespace(name="exception", attributes={"exception.type": "TimeoutError", "exception.message": "timed out after 30s"})]
        children.append(SimpleNamespace(
            name="lookup_order" if kind == "TOOL" else "chat", span_type=kind, span_id=f"s{n}", parent_id="root",
            start_time_ns=n * 1000, end_time_ns=n * 1000 + 500, inputs={"order_id": (i * n) % 7 if kind == "TOOL" else HISTORY},
            outputs={"status": "shipped"} if kind == "TOOL" else {"choices": [{"message": {"content": HISTORY}}]},
            attributes={}, events=error if failed else [],
            status=SimpleNamespace(status_code="ERROR" if failed else "OK", description="TimeoutError: timed out after 30s" if failed else ""),
        ))
    root = SimpleNamespace(name="agent", span_type="AGENT", span_id="root", parent_id=None, start_time_ns=0, end_time_ns=spans * 1000,
                           inputs={"q": "where is my order?"}, outputs="It has shipped.", attributes={}, events=[],
                           status=SimpleNamespace(status_code="OK", description=""))
    info = SimpleNamespace(state="OK", execution_time_ms=spans * 1.0, token_usage={"total_tokens": 100 * spans}, tags={}, trace_metadata={}, trace_id=f"t{i}")
    return SimpleNamespace(info=info, data=SimpleNamespace(spans=[root, *children]))


def _status(span):
    return span.status.status_code


def python_no_exception(trace, outputs=None):
    for span in trace.data.spans:
        if _status(span) == "ERROR" and span.name == "lookup_order":
            events = [e for e in span.events if e.name == "exception"]
            if events and events[-1].attributes["exception.type"].rsplit(".", 1)[-1] == "TimeoutError":
                return False, "TimeoutError in lookup_order"
    return True, "no TimeoutError"


def python_hidden(trace, outputs=None):
    root = next(s for s in trace.data.spans if not s.parent_id)
    if _status(root) == "ERROR":
        return True, "failed openly"
    bad = [s for s in trace.data.spans if s is not root and _status(s) == "ERROR"]
    return (not bad), f"{len(bad)} hidden"


def python_repeated(trace, outputs=None):
    tools = sorted((s for s in trace.data.spans if s.span_type == "TOOL"), key=lambda s: s.start_time_ns)
    run, last = 0, None
    for span in tools:
        key = (span.name, json.dumps(span.inputs, sort_keys=True))
        run = run + 1 if key == last else 1
        last = key
        if run >= 3:
            return False, "loop"
    return True, "no loop"


def python_error_text(trace, outputs=None):
    import re

    pattern = re.compile(r"exit code: [1-9]|access denied", re.I)
    for span in trace.data.spans:
        if span.parent_id and pattern.search(json.dumps(span.outputs) if not isinstance(span.outputs, str) else span.outputs):
            return False, "error text"
    return True, "none"


CASES = {
    "no_exception": (get_check("no_exception").rule({"exception_type": "TimeoutError", "span_name": "lookup_order"}), python_no_exception),
    "no_hidden_failures": (get_check("no_hidden_failures").rule({}), python_hidden),
    "no_repeated_calls": (get_check("no_repeated_calls").rule({"times": 3}), python_repeated),
    "no_error_text": (get_check("no_error_text").rule({"pattern": "exit code: [1-9]|access denied"}), python_error_text),
}


def timed(fn, traces, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for trace in traces:
            fn(trace, None)
        best = min(best, time.perf_counter() - started)
    return best / len(traces) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--spans", default="10,50,200", help="Spans per trace, comma-separated.")
    args = parser.parse_args(argv)
    print(f"{'check':<20} {'spans':>5} {'engine us/trace':>16} {'python us/trace':>16} {'ratio':>6}")
    for spans in (int(s) for s in args.spans.split(",")):
        traces = [make_trace(spans, i) for i in range(args.traces)]
        for name, (rule, python) in CASES.items():
            engine = compile_check(rule)
            disagree = sum(engine(t)[0] != python(t)[0] for t in traces)
            if disagree:
                print(f"{name}: the engine and the Python version disagree on {disagree} traces", file=sys.stderr)
                return 1
            ours, theirs = timed(engine, traces), timed(python, traces)
            print(f"{name:<20} {spans:>5} {ours:>16.1f} {theirs:>16.1f} {ours / theirs:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the trace profile against the naive path, on the same store, at 1,000 and 20,000 traces.

    uv run python -m benchmarks.profile                    # 1,000 and 20,000 traces
    uv run python -m benchmarks.profile --sizes 1000 --paths sql,api,naive

Corpus: realistic support-agent traces (an AGENT root with a system prompt and chat messages, a
retriever returning three documents, one or two CHAT_MODEL calls with token usage, a tool call,
sessions, ~5% caught tool timeouts, ~3% uncaught errors, 1-2 KB payloads per span). They are
written through the store's bulk span ingestion (`store.log_spans`, the path OTLP ingestion
takes, in batches of a few thousand spans), not through synchronous tracing (~12 traces/s) or
async tracing (which drops traces under load). The sqlite file is kept in --cache-dir and reused
by later runs of the same size.

Each measurement runs in a fresh Python process, so one does not warm the other's caches:
- sql:   build_profile on the local store (spans read straight from the store's tables);
- api:   build_profile forced through the MLflow API (what a remote or Databricks store gets), with its
         default span budget: spans of the newest 2,000 traces, trace infos for the rest
         (api_reader.DEFAULT_SPAN_TRACES; agreement is then checked on the trace-level figures);
- api-all: the same with every trace's spans read (`analyze --span-traces 0`);
- naive: mlflow.search_traces(include_spans=True) into pandas, then the same kind of summary
         with pandas (status counts, latency and per-span percentiles, tool and error tables).
- raw:   the floor: the same span rows read with plain SQL (sqlite3) and every span's JSON parsed
         with orjson, nothing computed (benchmarks/raw_read.py); printed as the ratio sql/raw.
`--corpus realistic` uses benchmarks/corpus.py's agent corpus (20-40 spans and ~100 KB per trace).
`--server` reads the api and naive paths through `mlflow server` on 127.0.0.1 (the same sqlite file,
copied to a temporary folder, as its backend): what a remote tracking server or Databricks costs,
HTTP and the server's own work included; sql and raw still read the file. Prints api vs naive.
Runs are paired: each of --repeat rounds runs every path once (each round starting with the next path,
so none always meets the server first), and api vs naive is also printed per round,
with each path's client CPU seconds (the measuring process only: with --server the server's work is not in it).
Printed per path (the fastest of --repeat runs, all runs listed): wall seconds, peak RSS growth
during the call (MB, VmHWM reset before the call), and whether its trace count, status counts,
span count and p50/p99 latency agree with the sql profile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PROMPT = (
    "You are the support assistant of an online shop. Answer in the customer's language, cite the policy documents you "
    "used, never promise refunds above the policy limit, and hand over to a human when the customer asks. " * 6
)


def corpus(n: int, seed: int = 1):
    """n realistic traces (TraceSpec) with a fixed seed."""
    sys.path.insert(0, str(REPO))
    from tests.fakes.trace_writer import SpanSpec, TraceSpec

    rng = random.Random(seed)
    base_ms = 1_767_225_600_000
    for i in range(n):
        question = f"Hi, where is my order {10_000 + i}? I ordered it {rng.randint(2, 20)} days ago and paid express shipping."
        docs = [{"page_content": f"Policy {k}: " + "Express orders ship within two business days. " * 10, "metadata": {"doc_uri": f"kb/policy-{k}"}}
                for k in rng.sample(range(40), 3)]
        timeout = rng.random() < 0.05
        crash = not timeout and rng.random() < 0.03
        tool = SpanSpec("lookup_order", "TOOL", start_ms=60, duration_ms=rng.randint(20, 400), inputs={"order_id": 10_000 + i})
        if timeout or crash:
            tool.status = "ERROR"
            tool.error = ("TimeoutError", f"order service timed out after {rng.choice([10, 30])}s for order {10_000 + i}") if timeout else \
                ("KeyError", f"'{rng.choice(['carrier', 'eta', 'warehouse'])}'")
        else:
            tool.outputs = {"status": rng.choice(["shipped", "in transit", "delayed"]), "carrier": "DHL", "eta_days": rng.randint(1, 5)}
        calls = []
        t = 500
        for k in range(1 if rng.random() < 0.8 else 2):
            ms = rng.randint(300, 4_000)
            usage = {"input_tokens": rng.randint(600, 1_500), "output_tokens": rng.randint(20, 200)}
            usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
            calls.append(SpanSpec(
                "chat_model", "CHAT_MODEL", start_ms=t, duration_ms=ms,
                inputs={"model": "gpt-4o-mini", "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]},
                outputs={"choices": [{"message": {"role": "assistant", "content": "Your order has shipped and should arrive within two days."}}]},
                attributes={"mlflow.chat.tokenUsage": usage, "mlflow.llm.model": "gpt-4o-mini"},
            ))
            t += ms + 10
        root = SpanSpec(
            "support_agent", "AGENT", duration_ms=t + rng.randint(10, 200),
            inputs={"messages": [{"role": "user", "content": question}]},
            children=[SpanSpec("search_docs", "RETRIEVER", start_ms=5, duration_ms=rng.randint(10, 50), inputs={"query": question},
                               outputs=[] if rng.random() < 0.04 else docs), tool, *calls],
        )
        if crash:
            root.status, root.error = "ERROR", tool.error
        else:
            root.outputs = {"answer": "" if rng.random() < 0.02 else "Your order has shipped and should arrive within two days."}
        yield TraceSpec(root=root, start_ms=base_ms + i * 30_000, session_id=f"session-{i // 3}")


def build_corpus(n: int, cache_dir: Path) -> tuple[str, str]:
    """The store URI and experiment id holding n traces, built once and cached."""
    sys.path.insert(0, str(REPO))
    from tests.fakes.trace_writer import create_experiment, write_traces

    path = cache_dir / f"profile-bench-{n}.db"
    uri = f"sqlite:///{path}"
    marker = cache_dir / f"profile-bench-{n}.json"
    if path.exists() and marker.exists():
        return uri, json.loads(marker.read_text())["experiment_id"]
    path.unlink(missing_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    experiment_id = create_experiment(uri, "support-agent", str(cache_dir / "artifacts"))
    written = write_traces(uri, experiment_id, corpus(n), batch_spans=5_000)
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"experiment_id": experiment_id, "traces": written}))
    print(f"built {written:,} traces in {seconds:.1f}s ({written / seconds:,.0f} traces/s) -> {path}", flush=True)
    return uri, experiment_id


# --- one measurement, in a child process --------------------------------------------------------


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM from /proc (ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS


def measure(kind: str, uri: str, experiment_id: str) -> dict:
    import mlflow  # imports are not part of the measurement
    import pandas  # noqa: F401

    from mlflow_eval_agent.traces.profile import build_profile

    # Open the store first (lazy imports, schema check): both paths pay it once, outside the timer.
    mlflow.set_tracking_uri(uri)
    mlflow.MlflowClient(uri).get_experiment(experiment_id)
    _reset_peak()
    before = _status_mb("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    if kind == "naive":
        summary = naive_summary(uri, experiment_id)
    elif kind == "raw":  # the floor: plain SQL + orjson over the same span rows (benchmarks/raw_read.py)
        from benchmarks.raw_read import raw_read

        summary = raw_read(uri, experiment_id)
    else:
        budget = {"span_traces": 0} if kind == "api-all" else {}  # api: the default span budget
        p = build_profile(uri, experiment_id, path="api" if kind.startswith("api") else kind, **budget)
        summary = {"traces": p.trace_count, "status": p.status_counts, "p50": p.latency_ms.p50, "p99": p.latency_ms.p99,
                   "spans": p.span_count, "signatures": len(p.error_signatures), "span_traces_read": p.traces_with_spans_read}
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"kind": kind, "seconds": round(seconds, 3), "cpu_s": round(cpu, 3), "rss_growth_mb": round(max(0.0, _status_mb("VmHWM") - before), 1), **summary}


def naive_summary(uri: str, experiment_id: str) -> dict:
    """What one writes without the profile: load every trace with spans, then pandas."""
    import mlflow
    import numpy as np
    import pandas as pd

    mlflow.set_tracking_uri(uri)
    df = mlflow.search_traces(locations=[experiment_id], include_spans=True)
    rows = []
    for trace_id, spans in zip(df["trace_id"], df["spans"]):
        for span in spans:
            d = span if isinstance(span, dict) else span.to_dict()
            attrs = d.get("attributes") or {}
            end, start = d.get("end_time_unix_nano"), d.get("start_time_unix_nano")
            rows.append({
                "trace_id": trace_id, "name": d.get("name"), "type": json.loads(attrs.get("mlflow.spanType", '"UNKNOWN"')),
                "status": str((d.get("status") or {}).get("code")), "ms": (end - start) / 1e6 if end and start else None,
                "message": (d.get("status") or {}).get("message"),
            })
    spans = pd.DataFrame(rows)
    per_span = spans.groupby(["name", "type"]).agg(count=("ms", "size"), errors=("status", lambda s: (s == "STATUS_CODE_ERROR").sum()),
                                                   p50=("ms", lambda s: np.percentile(s.dropna(), 50, method="inverted_cdf")),
                                                   p99=("ms", lambda s: np.percentile(s.dropna(), 99, method="inverted_cdf")))
    errors = spans[spans["status"] == "STATUS_CODE_ERROR"].groupby(["name", "message"]).size()
    latency = df["execution_duration"].dropna().to_numpy()
    return {
        "traces": len(df), "status": {str(k): int(v) for k, v in df["state"].value_counts().items()},
        "p50": float(np.percentile(latency, 50, method="inverted_cdf")), "p99": float(np.percentile(latency, 99, method="inverted_cdf")),
        "spans": len(spans), "span_names": len(per_span), "error_messages": len(errors),
    }


def run_child(kind: str, uri: str, experiment_id: str) -> dict:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--child", kind, uri, experiment_id],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=3_600)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--engine" in argv or any(a.startswith("--engine=") for a in argv):  # the spark engine's bench: benchmarks/profile_spark.py
        from benchmarks.profile_spark import main as spark_main

        return spark_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000", help="Comma-separated trace counts.")
    parser.add_argument("--paths", default="sql,api,naive", help="Which of sql, api, api-all, naive, raw to measure.")
    parser.add_argument("--repeat", type=int, default=2, help="Runs per path; the fastest is reported (the machine may be shared).")
    parser.add_argument("--cache-dir", default="/tmp/mlflow-eval-agent-bench", help="Where corpora are kept between runs.")
    parser.add_argument("--corpus", choices=("light", "realistic"), default="light", help="Corpus: light (above) or realistic (benchmarks/corpus.py).")
    parser.add_argument("--server", action="store_true", help="Read the api and naive paths through a local `mlflow server` (HTTP).")
    parser.add_argument("--server-workers", type=int, default=4, help="With --server: the server's worker processes (mlflow server's default, 4).")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "URI", "EXPERIMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # or litellm fetches its price list online
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    kinds = [k.strip() for k in args.paths.split(",") if k.strip()]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; each run in a fresh process; times exclude imports and opening the store")
    for n in (int(s) for s in args.sizes.split(",")):
        if args.corpus == "light":
            uri, experiment_id = build_corpus(n, Path(args.cache_dir))
        else:
            from benchmarks import corpus as corpora

            uri, experiment_id = corpora.build(args.corpus, n, Path(args.cache_dir))
            print(f"{args.corpus} corpus: {corpora.describe(uri)}")
        with tracking_server(uri, args.server_workers, experiment_id) if args.server else _no_server() as url:
            where = {kind: (url if url and kind in HTTP_PATHS else uri) for kind in kinds}
            if url:
                print(f"api and naive read through mlflow server at {url} ({args.server_workers} workers, sqlite backend)")
            runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
            for round_ in range(args.repeat):  # paired: each round runs every path once, so load on a shared machine hits them alike
                for kind in kinds[round_ % len(kinds):] + kinds[:round_ % len(kinds)]:  # each round starts with another path
                    runs[kind].append(run_child(kind, where[kind], experiment_id))
        results = {kind: min(rs, key=lambda r: r["seconds"]) for kind, rs in runs.items()}
        ref_kind = "sql" if "sql" in results else "naive" if "naive" in results else None
        reference = results.get(ref_kind) if ref_kind else None
        print(f"\n{n:,} traces (best of {args.repeat} runs each)")
        print(f"  {'path':<7} {'seconds':>9} {'traces/s':>10} {'RSS growth MB':>14}  {'all runs (s)':<20} agrees with {ref_kind or '-'}")
        for kind, r in results.items():
            partial = r.get("span_traces_read", r["traces"]) < r["traces"]  # a span budget: only trace-level figures can agree
            keys = ("traces", "status", "p50", "p99") if partial else ("traces", "status", "p50", "p99", "spans")
            agrees = "-" if reference is None or kind == ref_kind else ("yes" if all(r[k] == reference[k] for k in keys if k in r) else f"NO: {r}")
            if partial and agrees == "yes":
                agrees = f"yes (trace level; spans read for the newest {r['span_traces_read']:,})"
            every = ", ".join(f"{x['seconds']:.2f}" for x in runs[kind])
            print(f"  {kind:<7} {r['seconds']:>9.2f} {r['traces'] / r['seconds']:>10,.0f} {r['rss_growth_mb']:>14.1f}  {every:<20} {agrees}")
        if reference and "raw" in results:
            raw = results["raw"]
            print(f"  sql/raw = {reference['seconds'] / raw['seconds']:.2f} (RSS growth: sql {reference['rss_growth_mb']:.1f} MB, raw {raw['rss_growth_mb']:.1f} MB)")
        if ref_kind == "sql" and "naive" in results:
            print(f"  sql profile is {results['naive']['seconds'] / reference['seconds']:.1f}x faster than the naive path")
        over = "over HTTP" if args.server else "on the local store"
        for api in (k for k in ("api", "api-all") if k in results and "naive" in results):
            paired = sorted(n["seconds"] / a["seconds"] for a, n in zip(runs[api], runs["naive"]))
            print(f"  {api} path is {results['naive']['seconds'] / results[api]['seconds']:.2f}x faster than the naive path ({over}); "
                  f"naive/{api} of each round, sorted: {', '.join(f'{r:.2f}' for r in paired)}")
            cpu = {k: min(r["cpu_s"] for r in runs[k]) for k in (api, "naive")}
            print(f"  client CPU (this process only; the server's work is not in it): {api} {cpu[api]:.2f} s, naive {cpu['naive']:.2f} s")
    return 0


HTTP_PATHS = ("api", "api-all", "naive")  # the paths a remote store serves (sql and raw read the file itself)


@contextlib.contextmanager
def _no_server():
    yield None


@contextlib.contextmanager
def tracking_server(uri: str, workers: int, experiment_id: str | None = None):
    """`mlflow server` on 127.0.0.1 over a copy of this sqlite store; yields its URL."""
    import shutil
    import signal
    import socket
    import tempfile
    import urllib.request

    with tempfile.TemporaryDirectory(prefix="profile-bench-server-") as tmp:
        copy = Path(tmp) / "mlflow.db"
        shutil.copyfile(uri.removeprefix("sqlite:///"), copy)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
        log = open(Path(tmp) / "server.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{copy}", "--default-artifact-root", str(Path(tmp) / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(Path(tmp) / 'server.log').read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2):
                        break
                except OSError:
                    time.sleep(0.3)
            if experiment_id:
                _warm(url, workers, experiment_id)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            log.close()


def _warm(url: str, workers: int, experiment: str) -> None:
    """A fresh server is slower than a running one: each worker opens its store on its first
    request, and the first passes over the trace infos take ~3x longer. Without this the first path
    measured pays for it. Small searches and batch gets from several threads at once, then two full
    passes over the infos, before any timer starts."""
    from concurrent.futures import ThreadPoolExecutor

    import mlflow
    from mlflow.tracing.client import TracingClient

    client = mlflow.MlflowClient(url)

    def one(_: int) -> None:
        page = client.search_traces(locations=[experiment], max_results=5, include_spans=False)
        if page:
            TracingClient(url).store.batch_get_traces([t.info.trace_id for t in page], None)

    with ThreadPoolExecutor(max_workers=2 * workers) as pool:
        list(pool.map(one, range(8 * workers)))
    # A fresh server's first passes over every trace info are slow (20,000 traces, 4 workers: 17 s,
    # 18 s, then 6 s): two passes, so whichever path runs first meets the same server as the rest.
    for _ in range(2):
        token = None
        while True:
            page = client.search_traces(locations=[experiment], max_results=500, page_token=token, include_spans=False)
            token = page.token
            if not token or not page:
                break


if __name__ == "__main__":
    raise SystemExit(main())

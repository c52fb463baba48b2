"""Benchmark: the spark engine (local Spark over UC-schema parquet tables) against the sql engine, per size.

    uv run python -m benchmarks.profile --engine spark --sizes 20000,100000,1000000 [--json]
    uv run python -m benchmarks.profile_spark --sizes 20000          # the same

Corpus: benchmarks/profile.py's (the sqlite store is built once and cached in --cache-dir). The UC
tables are staged from that store with tests/fakes/uc_tables.py (the sql engine's own reader, pyarrow
text parquet, then Spark's parse_json into the exact VARIANT schema of traces/uc_schema.py) and cached
too. Sizes above --max-sqlite (default 100,000) are not written to sqlite: Spark itself makes them by
replicating the largest built table with new trace ids and shifted times, so there the sql engine
is not run and the spark profile is checked against the scaled counts of the smaller one instead.

Each measurement runs in a fresh process: spark (a local[2] session; profile with
trajectory_scan=1000) and sql (build_profile, trajectory_scan=1000). Printed per run: seconds,
the driver's (Python process) peak RSS growth during the call, the JVM's peak RSS for spark, and
whether the two profiles agree number for number (trace ids mapped tr-<hex> -> trace:/<loc>/<hex>;
the hash sample is left out: it hashes the ids, which differ). At the end, per spark run: microseconds
per trace and, between consecutive sizes, the time growth over the size growth (1.00 = linear), with
the driver's RSS growth and the JVM's peak RSS (`--json`: one {"scaling": ...} object per size).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCATION = "main.traces.bench"


def _status_mb(field: str, pid: str = "self") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: str = "self") -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


def _session(cores: int = 2):
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{cores}]").appName("profile-bench").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", str(4 * cores))
             .config("spark.driver.memory", "2g").config("spark.sql.session.timeZone", "UTC").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def uc_tables(n: int, cache_dir: Path, max_sqlite: int) -> tuple[Path, str | None, str | None]:
    """(folder with spans/ and annotations/ parquet, sqlite uri or None, experiment id or None)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.profile import build_corpus

    folder = cache_dir / f"uc-{n}"
    if n <= max_sqlite:
        uri, experiment_id = build_corpus(n, cache_dir)
        if not (folder / "done").exists():
            from tests.fakes.uc_tables import stage_rows, typed_tables

            started = time.perf_counter()
            stage_rows(uri, experiment_id, folder)
            spark = _session()
            spans, annotations = typed_tables(spark, folder)
            spans.write.mode("overwrite").parquet(str(folder / "spans"))
            annotations.write.mode("overwrite").parquet(str(folder / "annotations"))
            spark.stop()
            (folder / "done").write_text("ok")
            print(f"wrote UC tables for {n:,} traces in {time.perf_counter() - started:.1f}s -> {folder}", flush=True)
        return folder, uri, experiment_id
    base_n = max_sqlite
    base, _, _ = uc_tables(base_n, cache_dir, max_sqlite)
    if not (folder / "done").exists():
        copies = -(-n // base_n)
        started = time.perf_counter()
        spark = _session()
        spans = spark.read.parquet(str(base / "spans"))
        annotations = spark.read.parquet(str(base / "annotations"))
        k = spark.range(copies).withColumnRenamed("id", "k")
        # copy k: trace ids with k in their last 4 hex digits, times shifted by k x the base corpus's span of time
        shift = "k * 4000000000000000"
        spans.crossJoin(k).selectExpr(*[
            f"concat(substr(trace_id, 1, 28), lpad(hex(k), 4, '0')) AS trace_id" if c == "trace_id" else
            f"start_time_unix_nano + {shift} AS start_time_unix_nano" if c == "start_time_unix_nano" else
            f"end_time_unix_nano + {shift} AS end_time_unix_nano" if c == "end_time_unix_nano" else c
            for c in spans.columns]).write.mode("overwrite").parquet(str(folder / "spans"))
        annotations.crossJoin(k).selectExpr(*[
            "concat(substr(target_id, 1, 28), lpad(hex(k), 4, '0')) AS target_id" if c == "target_id" else
            "concat(annotation_id, '-', k) AS annotation_id" if c == "annotation_id" else c
            for c in annotations.columns]).write.mode("overwrite").parquet(str(folder / "annotations"))
        spark.stop()
        (folder / "done").write_text(json.dumps({"copies": copies, "base": base_n}))
        print(f"replicated {base_n:,} traces x{copies} with Spark in {time.perf_counter() - started:.1f}s -> {folder}", flush=True)
    return folder, None, None


def measure(kind: str, where: str, experiment_id: str) -> dict:
    """One run in this (fresh) process."""
    if kind == "spark":
        from mlflow_eval_agent.traces.spark_profile import spark_profile
        from mlflow_eval_agent.traces.uc_schema import UcLocation

        spark = _session()
        for t in ("spans", "annotations"):
            spark.read.parquet(str(Path(where) / t)).createOrReplaceTempView(f"bench_{t}")
        jvm_pid = str(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        _reset_peak()
        _reset_peak(jvm_pid)
        before, jvm_before = _status_mb("VmRSS"), _status_mb("VmRSS", jvm_pid)
        started = time.perf_counter()
        profile = spark_profile(spark, UcLocation.parse(LOCATION), experiment_id, trajectory_scan=1000,
                                tables={"spans": "bench_spans", "annotations": "bench_annotations"})
        seconds = time.perf_counter() - started
        extra = {"jvm_peak_mb": round(_status_mb("VmHWM", jvm_pid), 1), "jvm_growth_mb": round(_status_mb("VmHWM", jvm_pid) - jvm_before, 1)}
    else:
        import mlflow

        from mlflow_eval_agent.traces.profile import build_profile

        mlflow.MlflowClient(where).get_experiment(experiment_id)
        _reset_peak()
        before = _status_mb("VmRSS")
        started = time.perf_counter()
        profile = build_profile(where, experiment_id, trajectory_scan=1000)
        seconds = time.perf_counter() - started
        extra = {}
    numbers = profile.model_dump(exclude={"source", "generated_at", "sample_trace_ids", "experiment_id", "experiment_name"})
    return {"engine": kind, "traces": profile.trace_count, "seconds": round(seconds, 2),
            "rss_growth_mb": round(max(0.0, _status_mb("VmHWM") - before), 1), **extra, "numbers": numbers}


def run_child(kind: str, where: str, experiment_id: str, timeout: float = 7_200) -> dict:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.profile_spark", "--child", kind, where, experiment_id],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _uc_ids(value: object) -> object:
    from mlflow_eval_agent.traces.uc_schema import UcLocation

    loc = UcLocation.parse(LOCATION)
    return json.loads(re.sub(r'"tr-([0-9a-f]{32})"', lambda m: f'"{loc.trace_id(m.group(1))}"', json.dumps(value)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="spark", choices=["spark"], help="Only spark here (the other engines: benchmarks/profile.py).")
    parser.add_argument("--sizes", default="20000,100000", help="Comma-separated trace counts.")
    parser.add_argument("--cache-dir", default="/tmp/mlflow-eval-agent-bench", help="Where corpora and UC tables are kept between runs.")
    parser.add_argument("--max-sqlite", type=int, default=100_000, help="Largest size written to sqlite; larger ones are replicated by Spark.")
    parser.add_argument("--max-seconds", type=float, default=7_200, help="Stop at the first size whose spark run takes longer.")
    parser.add_argument("--json", action="store_true", help="One JSON object per run (engine, traces, seconds, rss_growth_mb, agree).")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "WHERE", "EXPERIMENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    cache = Path(args.cache_dir)
    previous_spark: dict | None = None
    spark_runs: list[dict] = []
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        folder, uri, experiment_id = uc_tables(n, cache, args.max_sqlite)
        try:
            spark_run = run_child("spark", str(folder), experiment_id or "bench", timeout=args.max_seconds)
        except subprocess.TimeoutExpired:
            print(f"{n:>9,} traces  spark  did not finish within --max-seconds {args.max_seconds:,.0f} s: stopped here", flush=True)
            break
        runs = [spark_run]
        if uri:
            sql_run = run_child("sql", uri, experiment_id)
            agree = spark_run["numbers"] == _uc_ids(sql_run["numbers"])
            runs.append(sql_run)
        else:  # replicated corpus: counts scale with the copies, the distributions stay the same
            copies = json.loads((folder / "done").read_text())["copies"]
            base = previous_spark["numbers"] if previous_spark else None
            got = spark_run["numbers"]
            agree = bool(base) and got["trace_count"] == base["trace_count"] * copies and got["span_count"] == base["span_count"] * copies \
                and {k: v * copies for k, v in base["status_counts"].items()} == got["status_counts"] and got["latency_ms"] == base["latency_ms"]
        for run in runs:
            run["agree"] = agree
            out = {k: v for k, v in run.items() if k != "numbers"}
            if args.json:
                print(json.dumps(out), flush=True)
            else:
                extra = f", JVM peak {run['jvm_peak_mb']:,.0f} MB" if "jvm_peak_mb" in run else ""
                print(f"{n:>9,} traces  {run['engine']:<5}  {run['seconds']:>8.2f} s  driver RSS growth {run['rss_growth_mb']:>7.1f} MB{extra}  "
                      f"agree: {'yes' if agree else 'NO'}", flush=True)
        if uri:
            previous_spark = spark_run
        spark_runs.append(spark_run)
    _scaling(spark_runs, args.json)
    return 0


def _scaling(runs: list[dict], as_json: bool) -> None:
    """Per spark run: the cost per trace; between consecutive sizes: how time grew against size
    (1.0 = linear), and the driver's and the JVM's memory."""
    if not runs:
        return
    if not as_json:
        print("\nspark scaling (time growth / size growth: 1.00 = linear)", flush=True)
    first = runs[0]
    for prev, run in zip([None, *runs[:-1]], runs):
        row = {"engine": "spark", "traces": run["traces"], "seconds": run["seconds"],
               "us_per_trace": round(run["seconds"] / max(1, run["traces"]) * 1e6, 1),
               "rss_growth_mb": run["rss_growth_mb"], "jvm_peak_mb": run.get("jvm_peak_mb")}
        if prev is not None:
            size, time_ = run["traces"] / max(1, prev["traces"]), run["seconds"] / max(1e-9, prev["seconds"])
            row.update(size_growth=round(size, 2), time_growth=round(time_, 2), time_over_size=round(time_ / size, 2))
        if run is not first:
            row["time_over_size_from_first"] = round((run["seconds"] / first["seconds"]) / (run["traces"] / max(1, first["traces"])), 2)
        if as_json:
            print(json.dumps({"scaling": row}), flush=True)
            continue
        growth = (f"  x{row['size_growth']:.0f} traces -> x{row['time_growth']:.2f} time (ratio {row['time_over_size']:.2f})"
                  if prev is not None else "")
        print(f"{run['traces']:>9,} traces  {run['seconds']:>8.2f} s  {row['us_per_trace']:>8.1f} us/trace  driver RSS growth "
              f"{run['rss_growth_mb']:>6.1f} MB  JVM peak {run.get('jvm_peak_mb') or 0:>7,.0f} MB{growth}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""`monitor run`: the session's suite on an experiment's traces since the last run, code checks and judges alike.

Registered judges (monitor.py) sample new traces inside MLflow; code checks run in the suite's own
engine, which a registered scorer cannot carry, so they are watched by running the suite itself on a
schedule. This module is that run: it keeps a watermark per experiment in the session's state
(`state/monitor_runs.json`, written atomically like every state file), scores the traces of the window
(watermark, now - settle], and moves the watermark to the window's end only when run_eval.py produced
its verdicts (gate PASS or FAIL). A run that is killed, times out or cannot read its data leaves the
watermark where it was, so the next run scores the same window again: a window is never skipped.

- First run (no watermark): the window starts `DEFAULT_SINCE` ago (24 h), or at `since`; an explicit
  `since` also overrides a watermark (to re-score or backfill).
- Traces are stamped with their start time, and a trace is logged when it ends: the window closes
  `settle` (5 min) before now, so a trace still running when the window closes is in the next window.
- At most `max_traces` per run, the oldest first: when more wait, the window ends at the last whole
  millisecond that fits and the next run continues from there (so a backlog is worked off, not cut).

The suite runs as validation runs it (validate.run_suite: the least-privilege child, the judge model
and its credential only), with `--experiment-id <id> --filter "<window>"`; its verdicts and evaluation
run go to that experiment. Nothing here reads `state/validation.json` or changes the baseline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, Field

from ..errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ..steps import NO_STEPS, Steps
from ..store import SessionStore
from .validate import DEFAULT_TIMEOUT_S, run_suite

MONITOR_RUNS_FILE = "state/monitor_runs.json"
MONITOR_RESULTS_FILE = "state/monitor_run_results.json"
DEFAULT_SINCE = timedelta(hours=24)
DEFAULT_SETTLE = timedelta(minutes=5)
DEFAULT_MAX_TRACES = 500  # run_eval.py's own default for --max-traces
HISTORY = 30  # runs kept in monitor_runs.json
PAGE = 100


class Watermark(BaseModel):
    timestamp_ms: int = Field(description="Traces up to this start time (epoch ms) are scored.")
    updated_at: str
    run_id: str | None = Field(None, description="The evaluation run that scored the window ending here.")


class MonitorRun(BaseModel):
    started_at: str
    experiment_id: str
    window_start_ms: int
    window_end_ms: int
    traces: int = Field(description="Traces in the window (what run_eval.py was asked to score).")
    more_waiting: bool = Field(False, description="More traces than --max-traces were newer: the next run continues.")
    ok: bool = Field(description="run_eval.py produced its verdicts (gate PASS or FAIL), or there was nothing to score.")
    advanced: bool = Field(description="The watermark moved to window_end_ms.")
    exit_code: int = Field(description="This run's exit code: 0 gate passed (or nothing to score), 1 gate failed or the run failed, 2 usage.")
    gate: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = Field(default_factory=list)


class MonitorState(BaseModel):
    watermarks: dict[str, Watermark] = Field(default_factory=dict, description="Per experiment id.")
    runs: list[MonitorRun] = Field(default_factory=list, description="The latest runs, oldest first.")


class Window(BaseModel):
    start_ms: int
    end_ms: int
    traces: int
    more_waiting: bool = False
    note: str | None = None


def load_state(store: SessionStore) -> MonitorState:
    return store.read_model(MONITOR_RUNS_FILE, MonitorState) or MonitorState()


def window_filter(start_ms: int, end_ms: int) -> str:
    """MLflow's trace filter for start times in (start_ms, end_ms] (attributes.timestamp_ms: the trace's
    start, epoch ms; AND is the only conjunction MLflow's trace search has)."""
    return f"attributes.timestamp_ms > {int(start_ms)} AND attributes.timestamp_ms <= {int(end_ms)}"


def plan_window(client: Any, experiment_id: str, start_ms: int, end_ms: int, max_traces: int) -> Window:
    """How many traces (start_ms, end_ms] holds, oldest first, at most `max_traces`: when more wait, the
    window ends at the newest millisecond whose traces all fit, and the next run starts there."""
    stamps: list[int] = []
    token = None
    want = max_traces + 1
    while len(stamps) < want:
        page = client.search_traces(
            locations=[experiment_id], filter_string=window_filter(start_ms, end_ms), max_results=min(PAGE, want - len(stamps)),
            order_by=["timestamp_ms ASC"], page_token=token, include_spans=False,
        )
        stamps += [int(t.info.timestamp_ms) for t in page]
        token = getattr(page, "token", None)
        if not token or not page:
            break
    if len(stamps) <= max_traces:
        return Window(start_ms=start_ms, end_ms=end_ms, traces=len(stamps))
    fits = stamps[:max_traces]
    cut = fits[-1]
    if stamps[max_traces] == cut:  # the first that does not fit shares that millisecond: end before it
        earlier = [s for s in fits if s < cut]
        if not earlier:  # more than max_traces traces started in one millisecond
            return Window(start_ms=start_ms, end_ms=cut, traces=max_traces, more_waiting=True,
                          note=f"more than {max_traces} traces started in the same millisecond ({_when(cut)}): only {max_traces} of them "
                               "were scored; raise --max-traces to score them all")
        cut = earlier[-1]
    return Window(start_ms=start_ms, end_ms=cut, traces=sum(1 for s in fits if s <= cut), more_waiting=True)


def run_monitoring(
    store: SessionStore,
    tracking_uri: str,
    experiment_id: str,
    *,
    since_ms: int | None = None,
    settle: timedelta = DEFAULT_SETTLE,
    max_traces: int = DEFAULT_MAX_TRACES,
    judge_model: str | None = None,
    skip_judges: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    max_budget_usd: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    warm: bool = False,
    steps: Steps = NO_STEPS,
    now_ms: int | None = None,
    client: Any = None,
) -> tuple[MonitorRun, str]:
    """Score the traces since the watermark (or `since_ms`) once, record the run and, when it produced
    verdicts, move the watermark. Returns the run and the suite's own printed table (stdout)."""
    from ..traces.source import _translate, mlflow_client

    started = _now()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    state = load_state(store)
    mark = state.watermarks.get(experiment_id)
    start_ms = since_ms if since_ms is not None else (mark.timestamp_ms if mark else now_ms - int(DEFAULT_SINCE.total_seconds() * 1000))
    end_ms = now_ms - int(settle.total_seconds() * 1000)
    client = client or mlflow_client(tracking_uri)
    if end_ms <= start_ms:
        window = Window(start_ms=start_ms, end_ms=start_ms, traces=0)
    else:
        try:
            window = plan_window(client, experiment_id, start_ms, end_ms, max_traces)
        except Exception as exc:  # MLflow's refusal or the store's failure, as our sentence
            raise _translate(exc, tracking_uri) from None
    base = {"started_at": started, "experiment_id": experiment_id, "window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
            "traces": window.traces, "more_waiting": window.more_waiting, "notes": [window.note] if window.note else []}
    if window.traces == 0:
        run = MonitorRun(**base, ok=True, advanced=window.end_ms > start_ms, exit_code=EXIT_OK)
        return _record(store, state, run, mark), ""
    if mark is None:  # the first window is pinned before it runs: a run killed now retries this window, not a later "24 h ago"
        mark = Watermark(timestamp_ms=start_ms, updated_at=_now())
        state = state.model_copy(update={"watermarks": {**state.watermarks, experiment_id: mark}})
        store.write_model(MONITOR_RUNS_FILE, state)
    args = ["--experiment-id", experiment_id, "--filter", window_filter(window.start_ms, window.end_ms), "--max-traces", str(window.traces)]
    args += ["--max-budget-usd", f"{max_budget_usd:g}"] if max_budget_usd is not None and not skip_judges else []
    steps.start(f"Scoring {window.traces} traces since {_when(window.start_ms)}", total=window.traces, unit="traces")
    outcome, results = run_suite(store, tracking_uri, args, results_file=MONITOR_RESULTS_FILE, timeout_s=timeout_s, judge_model=judge_model,
                                 skip_judges=skip_judges, extra_env=extra_env, warm=warm, steps=steps)
    gate = (results or {}).get("gate")
    if results is not None and gate in ("PASS", "FAIL"):
        steps.finish(f"gate {gate}")
        run = MonitorRun(**base, ok=True, advanced=True, exit_code=EXIT_OK if gate == "PASS" else EXIT_FAILED, gate=gate,
                         run_id=results.get("run_id"), run_name=results.get("run_name"), seconds=outcome.seconds)
    else:
        steps.finish("did not run")
        # run_eval.py's exit 2 is a configuration or usage mistake (said on its stderr); anything else failed
        code = EXIT_USAGE if outcome.returncode == EXIT_USAGE else EXIT_FAILED
        why = f"timed out after {timeout_s:.0f} s" if outcome.timed_out else outcome.exit_reason()
        run = MonitorRun(**base, ok=False, advanced=False, exit_code=code, seconds=outcome.seconds,
                         error=f"run_eval.py {why} without verdicts: {outcome.tail(600)}")
    return _record(store, state, run, mark), suite_output(outcome.stdout, (results or {}).get("suite"))


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def suite_output(stdout: str, suite: str | None) -> str:
    """What run_eval.py printed of its own: the judges' cost forecast and, from its header on, its
    table and verdict (not MLflow's evaluation banner)."""
    lines = ANSI.sub("", stdout or "").splitlines()
    forecast = [line for line in lines if line.startswith("Judge cost forecast:")]
    start = next((i for i, line in enumerate(lines) if suite and line.startswith(f"{suite}: ")), len(lines))
    return "\n".join([*forecast, *lines[start:]]).strip()


def _record(store: SessionStore, state: MonitorState, run: MonitorRun, mark: Watermark | None) -> MonitorRun:
    watermarks = dict(state.watermarks)
    if run.advanced:
        watermarks[run.experiment_id] = Watermark(timestamp_ms=run.window_end_ms, updated_at=_now(), run_id=run.run_id)
    elif mark is not None:
        watermarks[run.experiment_id] = mark
    store.write_model(MONITOR_RUNS_FILE, MonitorState(watermarks=watermarks, runs=[*state.runs, run][-HISTORY:]))
    return run


def describe(run: MonitorRun) -> list[str]:
    """What the run did, one sentence a line (for the console and the job's log)."""
    since, until = _when(run.window_start_ms), _when(run.window_end_ms)
    lines = []
    if run.traces == 0:
        lines.append(f"No traces in experiment {run.experiment_id} since {since}: nothing to score.")
    else:
        lines.append(f"{run.traces} traces in experiment {run.experiment_id} since {since} (up to {until})"
                     + ("; more are waiting: the next run continues from there" if run.more_waiting else "") + ".")
    lines += [f"note: {n}" for n in run.notes]
    if run.ok and run.traces:
        lines.append(f"Gate {run.gate} (evaluation run {run.run_name} {run.run_id}, {run.seconds:.0f} s): "
                     + ("every gate scorer met its threshold." if run.gate == "PASS" else "a gate scorer missed its threshold or could not run."))
    if run.error:
        lines.append(f"The suite did not score the window: {run.error}")
    if run.advanced:
        lines.append(f"Watermark moved to {until}.")
    elif not run.ok:
        lines.append(f"Watermark unchanged ({since}): the next run scores the same window again.")
    return lines


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

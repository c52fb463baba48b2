"""Child-process runner for custom scorer code: `python _custom_runner.py job.json`.

Runs with a clean environment and a timeout set by the parent (`custom.py`). It loads the code,
calls the scorer function on each trace the way `mlflow.genai.evaluate` would (inputs, outputs,
expectations, trace), and prints one JSON event per line so the parent can tell which trace a
hang or an exception happened on. Standard library and mlflow only.
"""

import json
import signal
import sys
import traceback
import types

CODE_FILENAME = "<custom scorer>"


class CallTimeout(BaseException):
    """Raised inside a scorer call that runs past its time limit (BaseException: not caught by
    the scorer's own `except Exception`)."""


def _on_alarm(signum, frame):
    raise CallTimeout()


def call_with_limit(func, kwargs, seconds):
    """Call func(**kwargs), interrupting it after `seconds` where the platform has interval timers."""
    if not hasattr(signal, "setitimer"):
        return func(**kwargs)  # the parent's whole-process timeout still applies
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return func(**kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def scorer_arguments(trace, wanted):
    root = next((s for s in trace.data.spans if not s.parent_id), None)
    values = {
        "inputs": root.inputs if root is not None else None,
        "outputs": root.outputs if root is not None else None,
        "expectations": {a.name: a.value for a in (trace.info.assessments or []) if a.expectation is not None},
        "trace": trace,
    }
    return {name: values[name] for name in wanted}


def verdict(value):
    """(passed, None) for bool / "yes" / "no" / Feedback of those; (None, problem) otherwise."""
    feedback_value = getattr(value, "value", value) if type(value).__name__ == "Feedback" else value
    if isinstance(feedback_value, bool):
        return feedback_value, None
    if isinstance(feedback_value, str) and feedback_value.strip().lower() in ("yes", "no"):
        return feedback_value.strip().lower() == "yes", None
    shown = repr(feedback_value)
    return None, f"returned {shown[:80]} ({type(feedback_value).__name__})"


def error_line(exc):
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == CODE_FILENAME]
    return frames[-1].lineno if frames else None


def emit(**event):
    print(json.dumps(event), flush=True)


def main(job_path):
    from mlflow.entities import Trace

    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    module = types.ModuleType("custom_scorer")
    try:
        exec(compile(job["code"], CODE_FILENAME, "exec"), module.__dict__)
    except Exception as exc:
        emit(event="load_error", error=f"{type(exc).__name__}: {exc}", line=error_line(exc))
        return
    func = module.__dict__[job["function"]]
    for raw in job["traces"]:
        trace = Trace.from_json(raw)
        trace_id = trace.info.trace_id
        emit(event="start", trace_id=trace_id)
        try:
            value = call_with_limit(func, scorer_arguments(trace, job["params"]), job["per_call_timeout_s"])
        except CallTimeout:
            emit(event="timeout", trace_id=trace_id)
            return
        except Exception as exc:
            emit(event="raised", trace_id=trace_id, error=f"{type(exc).__name__}: {exc}", line=error_line(exc))
            continue
        passed, problem = verdict(value)
        if problem:
            emit(event="bad_value", trace_id=trace_id, error=problem)
        else:
            emit(event="result", trace_id=trace_id, passed=passed, rationale=str(getattr(value, "rationale", "") or "")[:300])


if __name__ == "__main__":
    main(sys.argv[1])

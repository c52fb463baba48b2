"""Checks on time and tokens: a trace latency budget, a per-span budget, a token budget."""

from ._registry import check
from ._trace import duration_ms, spans_of, trace_duration_ms


def _span_known(params, facts):
    name = params.get("span_name")
    if name not in facts.span_names:
        return f"no span named {name!r} in the dataset's traces (span names: {facts.known(facts.span_names)})"
    return None


@check(reads=("trace",))
def latency_budget(max_ms: float):
    """Fails when the whole trace took longer than the budget.

    Args:
        max_ms: Longest acceptable trace execution time in milliseconds, e.g. from the profile's
            latency percentiles.
    """

    def run(trace, outputs):
        took = trace_duration_ms(trace)
        if took is None:
            return True, "trace duration unknown (no end time)"
        if took > max_ms:
            return False, f"took {took:.0f} ms, over the {max_ms:.0f} ms budget"
        return True, f"took {took:.0f} ms (budget {max_ms:.0f} ms)"

    return run


@check(reads=("trace",), requires=_span_known)
def span_latency_budget(span_name: str, max_ms: float):
    """Fails when any span with this name took longer than the budget (one slow tool or model call).

    Args:
        span_name: Name of the span to time, exactly as in the traces.
        max_ms: Longest acceptable duration of one such span in milliseconds.
    """

    def run(trace, outputs):
        times = [d for d in (duration_ms(s) for s in spans_of(trace) if s.name == span_name) if d is not None]
        if not times:
            return True, f"no finished {span_name} span"
        slowest = max(times)
        if slowest > max_ms:
            return False, f"{span_name} took {slowest:.0f} ms, over the {max_ms:.0f} ms budget"
        return True, f"slowest {span_name} took {slowest:.0f} ms (budget {max_ms:.0f} ms)"

    return run


@check(reads=("trace",))
def token_budget(max_tokens: int):
    """Fails when the trace used more tokens (input + output, as MLflow recorded them) than allowed.

    Args:
        max_tokens: Most total tokens one trace may use. Traces without token usage pass.
    """

    def run(trace, outputs):
        usage = getattr(getattr(trace, "info", None), "token_usage", None) or {}
        total = usage.get("total_tokens")
        if total is None:
            return True, "no token usage recorded"
        if total > max_tokens:
            return False, f"{total} tokens, over the budget of {max_tokens}"
        return True, f"{total} tokens (budget {max_tokens})"

    return run

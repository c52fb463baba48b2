"""Exact nearest-rank percentiles with compact storage.

Nearest-rank: for n sorted values v[1..n], the q-th percentile is v[ceil(q/100 * n)] (v[1] for
q = 0). It is always one of the observed values, so "p99 = 4,812 ms" means some trace took
exactly that long.

Exactness needs every value, so memory cannot be constant. We keep it small instead: each
latency is one signed 64-bit integer in an `array('q')` (8 bytes, no Python object per value),
and small-integer distributions (LLM calls per trace, spans per trace, traces per session) are
counters of distinct values, which stay tiny however many traces there are. Quantiles are
selected with numpy's partition on a zero-copy view, so finishing does not copy the values into
Python objects either.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

QUANTILES = (50, 90, 99)


def rank_index(q: int, n: int) -> int:
    """Zero-based index of the nearest-rank q-th percentile among n sorted values (n > 0)."""
    if n <= 0:
        raise ValueError("no values")
    return max(1, -(-q * n // 100)) - 1


def nearest_rank(values: Sequence[float] | Iterable[float], q: int) -> float:
    """The q-th nearest-rank percentile of `values` (a reference implementation for small inputs)."""
    ordered = sorted(values)
    return ordered[rank_index(q, len(ordered))]


class ExactValues:
    """Integer values (durations in ns or ms) kept at 8 bytes each for exact percentiles."""

    __slots__ = ("_values", "add")

    def __init__(self) -> None:
        self._values = array("q")
        self.add = self._values.append  # the bound C method: no Python frame per value

    def __len__(self) -> int:
        return len(self._values)

    def nbytes(self) -> int:
        return self._values.buffer_info()[1] * self._values.itemsize

    def summary(self, scale: float = 1.0, digits: int = 3) -> dict[str, float | None]:
        """p50/p90/p99/max divided by `scale` (1e6 turns ns into ms); None when empty."""
        n = len(self._values)
        if n == 0:
            return {f"p{q}": None for q in QUANTILES} | {"max": None}
        view = np.frombuffer(self._values, dtype=np.int64)
        ranks = [rank_index(q, n) for q in QUANTILES]
        picked = np.partition(view, sorted(set(ranks)))  # one copy of the raw array, not of objects
        out: dict[str, float | None] = {f"p{q}": _scaled(int(picked[r]), scale, digits) for q, r in zip(QUANTILES, ranks)}
        out["max"] = _scaled(int(view.max()), scale, digits)
        return out


def histogram(values: ExactValues, bins: int = 24) -> list[tuple[float, float, int]]:
    """(lower, upper, count) over `bins` bins from the smallest to the largest value; log-spaced when
    the values span more than a factor of 20 (latencies usually do), else even. Every value is in
    exactly one bin (a bin holds lower <= v < upper; the last one includes its upper edge)."""
    n = len(values)
    if n == 0:
        return []
    view = np.frombuffer(values._values, dtype=np.int64).astype(np.float64)
    low, high = float(view.min()), float(view.max())
    if high <= low:
        return [(low, high, n)]
    if low > 0 and high / low > 20:
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(view, bins=edges)
    return [(round(float(edges[i]), 3), round(float(edges[i + 1]), 3), int(c)) for i, c in enumerate(counts)]


class CountDistribution:
    """A distribution of small non-negative integers, kept as a counter of distinct values."""

    __slots__ = ("_counts", "_n", "_total")

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._n = 0
        self._total = 0

    def add(self, value: int) -> None:
        self._counts[value] += 1
        self._n += 1
        self._total += value

    def __len__(self) -> int:
        return self._n

    def summary(self) -> dict[str, float | int | None]:
        """mean, p50, p90, max (nearest-rank); None when empty."""
        if self._n == 0:
            return {"mean": None, "p50": None, "p90": None, "max": None}
        ordered = sorted(self._counts.items())
        wanted = {q: rank_index(q, self._n) for q in (50, 90)}
        found: dict[int, int] = {}
        seen = 0
        for value, count in ordered:
            for q, index in wanted.items():
                if q not in found and index < seen + count:
                    found[q] = value
            seen += count
        return {"mean": round(self._total / self._n, 3), "p50": found[50], "p90": found[90], "max": ordered[-1][0]}


def _scaled(value: int, scale: float, digits: int) -> float:
    return round(value / scale, digits) if scale != 1.0 else float(value)

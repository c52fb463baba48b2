"""How far each scorer agrees with people, and whether it may fail a build.

For one scorer: its verdicts per trace (run_eval.py's `per_trace`) against labels, which are the
HUMAN assessments of the same name on those traces (reviewers in the MLflow UI, or
`import --with-labels`) or, where there are none, the suite's evidence traces (must-fail and
must-pass). "Positive" is a failing trace: a true positive is a trace both the scorer and the
label fail. Out of it come the confusion matrix, precision and recall, Cohen's kappa and
Matthews' correlation with 95% bootstrap intervals, the disagreeing trace ids (false accepts
first: the label fails the trace, the scorer lets it through), and agreement between annotators
where several people labelled the same traces.

The tier decides what the scorer may do (docs/checks.md, "Tiers"):
- `gate`: it can fail run_eval.py. Against human labels: at least GATE_MIN_LABELS labelled
  traces with both outcomes present, kappa >= GATE_MIN_KAPPA and the interval's lower bound
  >= GATE_MIN_KAPPA_LOW. A deterministic code check without human labels gates when it
  reproduces every evidence trace: its verdict is a definition (the pattern occurred or it did
  not), not an estimate, so its evidence checks the implementation, not a rate.
- `monitor`: reported every run and suited to production monitoring, never fails a build:
  labels exist and kappa >= MONITOR_MIN_KAPPA (or labels and verdicts are all one outcome, so
  kappa is undefined), but not enough for `gate`.
- `explore`: nothing to measure it against, or it disagrees with the labels; shown, not trusted.
Pure computation: no MLflow, no I/O; the seed of the bootstrap comes from the scorer's name, so
the same verdicts give the same intervals.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

Tier = Literal["gate", "monitor", "explore"]
LabelSource = Literal["human", "evidence", "none"]

GATE_MIN_LABELS = 10
GATE_MIN_KAPPA = 0.6  # "substantial" agreement on Landis & Koch's scale
GATE_MIN_KAPPA_LOW = 0.4  # lower bound of the 95% bootstrap interval
MONITOR_MIN_KAPPA = 0.2
BOOTSTRAP_SAMPLES = 1000
MAX_LISTED = 20  # disagreeing trace ids kept per list

Pair = tuple[bool, bool]  # (scorer failed the trace, label failed the trace)


class Confusion(BaseModel):
    tp: int = Field(0, description="both fail the trace")
    fp: int = Field(0, description="the scorer fails it, the label passes it (false reject)")
    fn: int = Field(0, description="the label fails it, the scorer passes it (false accept)")
    tn: int = Field(0, description="both pass it")

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


class Interval(BaseModel):
    low: float
    high: float


class AnnotatorAgreement(BaseModel):
    annotators: int = 0
    pairs: int = Field(0, description="annotator pairs that labelled at least two traces in common")
    shared_traces: int = Field(0, description="traces labelled by more than one annotator")
    kappa: float | None = Field(None, description="mean pairwise Cohen's kappa")
    agreement: float | None = Field(None, description="share of pairwise label comparisons that agree")
    ties: int = Field(0, description="traces whose annotators split evenly (left out of the scorer's agreement)")


class Agreement(BaseModel):
    labels_from: LabelSource = "none"
    n: int = 0
    confusion: Confusion = Field(default_factory=Confusion)
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    kappa: float | None = None
    kappa_ci: Interval | None = None
    mcc: float | None = None
    mcc_ci: Interval | None = None
    false_accepts: list[str] = Field(default_factory=list, description="the label fails the trace, the scorer passes it")
    false_rejects: list[str] = Field(default_factory=list, description="the scorer fails the trace, the label passes it")
    annotators: AnnotatorAgreement = Field(default_factory=AnnotatorAgreement)
    tier: Tier = "explore"
    reason: str = ""

    def line(self) -> str:
        """One line for a table: n, kappa [interval], MCC, tier."""
        if not self.n:
            return f"{self.tier}: {self.reason}"
        k = "-" if self.kappa is None else f"{self.kappa:.2f}"
        ki = f" [{self.kappa_ci.low:.2f}, {self.kappa_ci.high:.2f}]" if self.kappa_ci else ""
        m = "-" if self.mcc is None else f"{self.mcc:.2f}"
        return f"{self.tier}: {self.n} {self.labels_from} labels, kappa {k}{ki}, MCC {m} ({self.reason})"


# --- statistics ---------------------------------------------------------------------------------


def confusion(pairs: Sequence[Pair]) -> Confusion:
    c = Confusion()
    for scorer_fails, label_fails in pairs:
        if scorer_fails and label_fails:
            c.tp += 1
        elif scorer_fails:
            c.fp += 1
        elif label_fails:
            c.fn += 1
        else:
            c.tn += 1
    return c


def cohen_kappa(c: Confusion) -> float | None:
    """Cohen's kappa of two binary raters; None when chance agreement is total (one outcome only)."""
    n = c.n
    if not n:
        return None
    observed = (c.tp + c.tn) / n
    expected = ((c.tp + c.fp) * (c.tp + c.fn) + (c.fn + c.tn) * (c.fp + c.tn)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def matthews(c: Confusion) -> float | None:
    """Matthews' correlation; None when a margin is zero (one rater gave one outcome only)."""
    denominator = math.sqrt((c.tp + c.fp) * (c.tp + c.fn) * (c.tn + c.fp) * (c.tn + c.fn))
    return None if denominator == 0 else (c.tp * c.tn - c.fp * c.fn) / denominator


def bootstrap(pairs: Sequence[Pair], statistic: Callable[[Confusion], float | None], seed: int, samples: int = BOOTSTRAP_SAMPLES) -> Interval | None:
    """95% percentile interval of `statistic` over resamples of the pairs (resamples where it is
    undefined are left out; None when fewer than half of them are defined)."""
    if len(pairs) < 2:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(samples):
        value = statistic(confusion([pairs[rng.randrange(len(pairs))] for _ in pairs]))
        if value is not None:
            values.append(value)
    if len(values) < samples / 2:
        return None
    values.sort()
    return Interval(low=round(values[int(0.025 * (len(values) - 1))], 4), high=round(values[int(0.975 * (len(values) - 1))], 4))


def annotator_agreement(labels: Mapping[str, Mapping[str, bool]]) -> AnnotatorAgreement:
    """Agreement between people: `labels` is {trace_id: {annotator: trace passed}}."""
    annotators = sorted({a for by in labels.values() for a in by})
    shared = sum(1 for by in labels.values() if len(by) > 1)
    ties = sum(1 for by in labels.values() if len(by) > 1 and sum(by.values()) * 2 == len(by))
    kappas, agree, compared, pairs = [], 0, 0, 0
    for i, a in enumerate(annotators):
        for b in annotators[i + 1 :]:
            common = [(not by[a], not by[b]) for by in labels.values() if a in by and b in by]
            if len(common) < 2:
                continue
            pairs += 1
            agree += sum(1 for x, y in common if x == y)
            compared += len(common)
            if (k := cohen_kappa(confusion(common))) is not None:
                kappas.append(k)
    return AnnotatorAgreement(
        annotators=len(annotators), pairs=pairs, shared_traces=shared, ties=ties,
        kappa=round(sum(kappas) / len(kappas), 4) if kappas else None, agreement=round(agree / compared, 4) if compared else None,
    )


# --- one scorer ---------------------------------------------------------------------------------


def measure_agreement(
    name: str,
    outcomes: Mapping[str, str],
    *,
    human: Mapping[str, Mapping[str, bool]] | None = None,
    must_fail: Sequence[str] = (),
    must_pass: Sequence[str] = (),
    deterministic: bool = False,
    measured: bool = True,
) -> Agreement:
    """Agreement of one scorer's `outcomes` ({trace_id: "pass" | "fail" | other}) with the human
    labels ({trace_id: {annotator: passed}}) or, without any, with its evidence traces.
    `measured` False: the scorer did not run (a skipped judge); its tier is `explore`."""
    if not measured:
        return Agreement(tier="explore", reason="not run, so not measured")
    human = {t: dict(by) for t, by in (human or {}).items() if by}
    people = annotator_agreement(human) if human else AnnotatorAgreement()
    if human:
        source: LabelSource = "human"
        truth = {t: _majority(by) for t, by in human.items()}
        truth = {t: v for t, v in truth.items() if v is not None}
    elif must_fail or must_pass:
        source = "evidence"
        truth = {**{t: True for t in must_pass}, **{t: False for t in must_fail}}  # passed?
    else:
        return Agreement(tier="explore", reason="no human labels and no evidence traces to measure it against")
    ids = sorted(t for t in truth if outcomes.get(t) in ("pass", "fail"))
    pairs = [(outcomes[t] == "fail", not truth[t]) for t in ids]
    c = confusion(pairs)
    seed = zlib.crc32(name.encode("utf-8"))
    result = Agreement(
        labels_from=source, n=c.n, confusion=c,
        accuracy=_ratio(c.tp + c.tn, c.n), precision=_ratio(c.tp, c.tp + c.fp), recall=_ratio(c.tp, c.tp + c.fn),
        kappa=_round(cohen_kappa(c)), kappa_ci=bootstrap(pairs, cohen_kappa, seed),
        mcc=_round(matthews(c)), mcc_ci=bootstrap(pairs, matthews, seed + 1),
        false_accepts=[t for t in ids if not truth[t] and outcomes[t] == "pass"][:MAX_LISTED],
        false_rejects=[t for t in ids if truth[t] and outcomes[t] == "fail"][:MAX_LISTED],
        annotators=people,
    )
    tier, reason = _tier(result, deterministic, unjudged=len(truth) - len(ids))
    return result.model_copy(update={"tier": tier, "reason": reason})


def _tier(a: Agreement, deterministic: bool, unjudged: int) -> tuple[Tier, str]:
    if not a.n:
        return "explore", f"no verdict on any of its {unjudged} labelled traces"
    exact = a.confusion.fp == a.confusion.fn == 0
    if a.labels_from == "evidence" and deterministic:
        if exact and not unjudged:
            return "gate", f"a deterministic check that reproduces all {a.n} evidence traces"
        return "explore", f"a deterministic check that disagrees with {a.confusion.fp + a.confusion.fn + unjudged} of its evidence traces"
    failing = a.confusion.tp + a.confusion.fn
    both = 0 < failing < a.n
    if a.kappa is None:  # labels and verdicts all one outcome: agreement by chance is total
        return "monitor", f"its {a.n} {a.labels_from} labels and verdicts are all {'failing' if failing else 'passing'}: kappa is undefined"
    low = a.kappa_ci.low if a.kappa_ci else None
    if a.labels_from == "human" and a.n >= GATE_MIN_LABELS and both and a.kappa >= GATE_MIN_KAPPA and low is not None and low >= GATE_MIN_KAPPA_LOW:
        return "gate", f"kappa {a.kappa:.2f} on {a.n} human labels, interval from {low:.2f}"
    if a.kappa >= MONITOR_MIN_KAPPA:
        short = []
        if a.labels_from != "human":
            short.append("no human labels")
        if a.n < GATE_MIN_LABELS:
            short.append(f"{a.n} labels (gate needs {GATE_MIN_LABELS})")
        if a.kappa < GATE_MIN_KAPPA:
            short.append(f"kappa {a.kappa:.2f} < {GATE_MIN_KAPPA}")
        elif low is None or low < GATE_MIN_KAPPA_LOW:
            short.append(f"interval reaches {'?' if low is None else f'{low:.2f}'} (gate needs {GATE_MIN_KAPPA_LOW})")
        return "monitor", "; ".join(short) or "not enough for gate"
    return "explore", f"kappa {a.kappa:.2f} on {a.n} {a.labels_from} labels (monitor needs {MONITOR_MIN_KAPPA})"


def _majority(by_annotator: Mapping[str, bool]) -> bool | None:
    passed = sum(1 for v in by_annotator.values() if v)
    failed = len(by_annotator) - passed
    return None if passed == failed else passed > failed


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)

"""report.html shows each scorer's agreement with people (kappa/MCC with intervals, the tier, the
disagreeing traces with false accepts first), what the judges covered (judged N of M traces), the
cost forecast and alignment before/after (issue 15, item 3); trace ids are escaped."""

from __future__ import annotations

import re

import pytest

from mlflow_eval_agent.report.page import render
from mlflow_eval_agent.suite.agreement import measure_agreement
from mlflow_eval_agent.suite.cost import CostForecast, JudgeCost
from tests.test_report import HOSTILE, sample_input, scorer


def _input():
    data = sample_input()
    latest = data.validation.latest
    # a judge with 12 human labels: 2 false accepts (one a hostile id), 1 false reject
    outcomes = {f"tr-{i:02d}": ("fail" if i < 4 else "pass") for i in range(12)}
    labels = {f"tr-{i:02d}": {"ann": i >= 3} for i in range(12)}  # tr-00..02 failed by people
    outcomes["tr-10"], labels["tr-10"] = "pass", {"ann": False}
    outcomes[HOSTILE], labels[HOSTILE] = "pass", {"ann": False}
    judged = measure_agreement("helpful", outcomes, human=labels)
    no_timeouts = measure_agreement("no_timeouts", {"tr-a": "fail", "tr-b": "fail", "tr-c": "pass"}, must_fail=["tr-a", "tr-b"],
                                    must_pass=["tr-c"], deterministic=True)
    scorers = dict(latest.scorers)
    scorers["no_timeouts"] = scorers["no_timeouts"].model_copy(update={"agreement": no_timeouts})
    scorers["helpful"] = scorer("helpful", 0.7, None, "REPORT", agreement=judged).model_copy(update={"passed": 9, "failed": 4, "needs_judge": True})
    alignment = {"helpful": {"name": "helpful", "status": "kept", "reason": "higher kappa", "labels": 12, "train": ["tr-00"], "held_out": ["tr-01", "tr-02"],
                             "examples": 1, "before": measure_agreement("helpful", {"tr-01": "pass", "tr-02": "fail"}, human={"tr-01": {"a": False}, "tr-02": {"a": True}}).model_dump(),
                             "after": measure_agreement("helpful", {"tr-01": "fail", "tr-02": "pass"}, human={"tr-01": {"a": False}, "tr-02": {"a": True}}).model_dump()}}
    cost = CostForecast(model="openai:/gpt-4o-mini", traces=40, judges=[JudgeCost(name="helpful", calls=40, input_tokens=40000, output_tokens=8000)],
                        input_tokens=40000, output_tokens=8000, usd=0.0108, priced_as="gpt-4o-mini")
    latest = latest.model_copy(update={"scorers": scorers, "alignment": alignment, "judge_cost": cost})
    results = {**data.results, "per_trace": {**data.results["per_trace"], "helpful": {**outcomes, "tr-x": "error"}}}
    return data.__class__(**{**data.__dict__, "validation": data.validation.model_copy(update={"latest": latest}), "results": results}), judged


def test_the_report_shows_agreement_coverage_and_alignment():
    data, judged = _input()
    page = render(data)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    section = text[text.index("Agreement with people"):]
    c = judged.confusion
    assert f"TP {c.tp} · FP {c.fp} · FN {c.fn} · TN {c.tn}" in section and f"{judged.kappa:.2f} [{judged.kappa_ci.low:.2f}, {judged.kappa_ci.high:.2f}]" in section
    assert f"{judged.mcc:.2f} [{judged.mcc_ci.low:.2f}, {judged.mcc_ci.high:.2f}]" in section
    assert f"helpful {judged.tier} {judged.n} human" in section and "no_timeouts gate 3 evidence" in section
    assert "safety explore" in section  # never measured (default agreement)
    # disagreements: false accepts first, then false rejects, as links
    where = page[page.index("Where scorers and labels disagree"):]
    helpful = where[where.index("<strong>helpful</strong>"):where.index("</li>", where.index("<strong>helpful</strong>"))]
    assert helpful.index("false accept") < helpful.index("false reject")
    assert 'selectedEvaluationId=tr-10"' in helpful and 'selectedEvaluationId=tr-03"' in helpful
    assert HOSTILE not in page and "&lt;script&gt;alert" in page
    # coverage: judged N of M, the skipped judge 0 of M with its reason; the forecast
    assert f"helpful : judged 13 of {len(outcomes_of(data))} traces" in text
    assert "safety : judged 0 of" in text and "needs OPENAI_API_KEY" in text
    assert "Judge cost forecast: 1 judges x 40 traces = 40 calls" in text
    assert "alignment of helpful: on 2 held-out human labels kappa" in text and "kept" in text


def outcomes_of(data) -> dict:
    return data.results["per_trace"]["helpful"]


@pytest.mark.slow
def test_the_agreement_table_renders_in_headless_chromium(tmp_path):
    from tests.chromium import browser, require_chromium

    require_chromium()
    data, judged = _input()
    path = tmp_path / "report.html"
    path.write_text(render(data), encoding="utf-8")
    with browser(width=1100, height=900) as b:
        load = b.load(path.as_uri())
        assert load.errors() == [] and [u for u in load.requests if u != path.as_uri()] == []
        rows = b.evaluate("""[...document.querySelectorAll('h3')].filter(h => h.textContent === 'Agreement with people')
            .map(h => { let t = h.nextElementSibling; while (t && t.tagName !== 'TABLE') t = t.nextElementSibling;
                        const r = t.getBoundingClientRect(); return [t.querySelectorAll('tbody tr').length, Math.round(r.width), Math.round(r.height),
                        getComputedStyle(t.querySelector('.tier.gate')).backgroundColor]; })""")
    assert len(rows) == 1, rows
    count, width, height, gate_colour = rows[0]
    assert count >= 4 and width > 600 and height > 60 and gate_colour == "rgb(218, 251, 225)", rows

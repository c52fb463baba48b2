"""report.html: what it says about a session, that it is one self-contained file, and that it renders
with its charts in headless Chromium (no console errors, nothing requested from the network)."""

from __future__ import annotations

import re

import pytest

from mlflow_eval_agent.report import ui_links
from mlflow_eval_agent.report.page import ReportInput, render
from mlflow_eval_agent.suite.validate import ScorerValidation, ValidationReport, ValidationRun
from mlflow_eval_agent.traces.profile_model import (
    ErrorSignature,
    HiddenFailures,
    HistogramBin,
    LatencyStats,
    OddCount,
    ProfileSource,
    SpanCount,
    TimeBucket,
    TokenTotals,
    ToolStats,
    TraceProfile,
    Trajectory,
)

HOSTILE = '<script>alert("x")</script><img src="http://evil.example/x.png">'


def scorer(name: str, rate: float | None, threshold: float | None, status: str, **extra) -> ScorerValidation:
    counted = 40 if rate is not None else 0
    passed = round((rate or 0) * counted)
    return ScorerValidation(name=name, kind="check", needs_judge=status == "SKIPPED", status=status, pass_rate=rate, threshold=threshold,
                            passed=passed, failed=counted - passed, summary=extra.pop("summary", "meets its evidence"), **extra)


def sample_input(tracking_uri: str = "sqlite:////tmp/x/mlflow.db") -> ReportInput:
    t0 = 1_790_000_000_000
    profile = TraceProfile(
        experiment_id="7", experiment_name="support-agent", generated_at="2026-12-01T00:00:00+00:00", source=ProfileSource(path="sql"),
        trace_count=60, span_count=240, status_counts={"OK": 52, "ERROR": 8},
        latency_ms=LatencyStats(p50=800, p90=2400, p99=9000, max=12000),
        latency_histogram=[HistogramBin(lower_ms=100 * 1.5**i, upper_ms=100 * 1.5 ** (i + 1), count=c) for i, c in enumerate([2, 5, 9, 14, 12, 8, 4, 3, 2, 1])],
        timeline=[TimeBucket(start_ms=t0 + i * 60_000, end_ms=t0 + (i + 1) * 60_000, states={"OK": 5, **({"ERROR": 2} if i % 3 == 0 else {})}) for i in range(12)],
        error_signatures=[ErrorSignature(id="sig-1", signature=f"TimeoutError: {HOSTILE}", exception_type="TimeoutError", span_name="get_order",
                                         count=6, trace_count=5, trace_ids=["tr-a", "tr-b"], example_message=HOSTILE)],
        hidden_failures=HiddenFailures(count=4, trace_ids=["tr-h1", "tr-h2"], by_span=[SpanCount(span_name="check_inventory", count=4)]),
        tools=[ToolStats(name="get_order", calls=20, errors=6, trace_count=18, latency_ms=LatencyStats()),
               ToolStats(name="search_docs", calls=30, errors=0, trace_count=30, latency_ms=LatencyStats())],
        tokens=TokenTotals(input=4000, output=1200, total=5200, traces_with_usage=50),
        trajectory=Trajectory(scanned=60, unrecovered_errors=OddCount(count=8, trace_ids=["tr-u1"]), no_tool=OddCount(count=19, trace_ids=["tr-n1"])),
    )
    baseline = ValidationRun(validated_at="2026-12-01T00:00:00+00:00", ok=True, exit_code=0, seconds=9, run_id="run-base", run_name="eval-agent-s-20261201-0000",
                             gate="PASS", calibrated=True, data="40 traces", scorers={
                                 "no_timeouts": scorer("no_timeouts", 0.9, 0.9, "PASS"), "answered": scorer("answered", 0.8, 0.8, "PASS"),
                                 "safety": scorer("safety", None, None, "SKIPPED", reason="skipped: no judge model")})
    latest = baseline.model_copy(update={"run_id": "run-new", "run_name": "eval-agent-s-20261202-0900", "gate": "FAIL", "calibrated": False,
                                         "validated_at": "2026-12-02T09:00:00+00:00", "summary": "3 scorers on 40 traces: 2 meet their evidence", "scorers": {
        "no_timeouts": scorer("no_timeouts", 0.75, 0.9, "FAIL", summary="meets its evidence: caught 5/5"),
        "answered": scorer("answered", 0.85, 0.8, "PASS"),
        "safety": scorer("safety", None, None, "SKIPPED", reason="skipped: judge model 'openai:/gpt-4.1-mini' needs OPENAI_API_KEY")}})
    results = {"run_id": "run-new", "per_trace": {"no_timeouts": {"tr-a": "fail", "tr-b": "fail", "tr-c": "pass"}, "answered": {"tr-a": "pass", "tr-d": "error"}}}
    return ReportInput(session_id="s", tracking_uri=tracking_uri, links=ui_links(tracking_uri, "7"), profile=profile,
                       validation=ValidationReport(latest=latest, baseline=baseline), results=results)


def test_the_report_says_what_happened_and_escapes_trace_text():
    page = render(sample_input())
    text = re.sub(r"<[^>]+>", " ", page)
    assert "eval-agent-s-20261202-0900" in page and "gate FAIL" in text and "thresholds calibrated from it" in text
    assert "Pass rate per scorer" in page and "baseline 90.0%" in page and "threshold 90%" in page  # markers carry their values
    assert "skipped: judge model &#x27;openai:/gpt-4.1-mini&#x27; needs OPENAI_API_KEY" in page
    failing = page[page.index("Failing traces per scorer"):]
    assert "no_timeouts</strong>: 2 failed" in failing and "answered</strong>: 0 failed; 1 without a verdict" in failing
    assert 'href="http://127.0.0.1:5000/#/experiments/7/traces?selectedEvaluationId=tr-a"' in page
    assert 'href="http://127.0.0.1:5000/#/experiments/7/runs/run-new"' in page
    for part in ("Trace states over time", "Latency distribution", "p99 9,000 ms", "Error signatures", "Hidden failures", "Tool error rates",
                 "6/20 calls failed", "What the trajectories show", "error never recovered from", "5,200 total"):
        assert part in page, part
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert page.count("<svg") >= 5


def test_the_report_is_one_file_that_loads_nothing():
    page = render(sample_input())
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page and "url(" not in page
    tags = re.findall(r"<[a-zA-Z][^>]*>", page)
    assert not [t for t in tags if re.search(r"\s(src|srcset|data|poster)\s*=", t)], "no images, frames or scripts from anywhere"
    assert not [t for t in tags if t.lower().startswith(("<img", "<iframe", "<object", "<embed", "<video", "<audio"))]
    external = {m for m in re.findall(r'href="([^"]+)"', page)}
    assert all(u.startswith("http://127.0.0.1:5000/#/experiments/7/") for u in external), external  # links, never loaded on open


def test_links_never_carry_credentials_and_databricks_has_none():
    links = ui_links("https://alice:s3cret@mlflow.example.com:8443/base/", "7")
    assert links.ui_base == "https://mlflow.example.com:8443/base" and "s3cret" not in links.run("r1")
    assert ui_links("databricks", "7").ui_base is None and "<a " not in ui_links("databricks", "7").trace("tr-a")


@pytest.mark.slow
def test_the_report_renders_with_its_charts_in_headless_chromium(tmp_path):
    from tests.chromium import browser, colour_share, require_chromium

    require_chromium()
    path = tmp_path / "report.html"
    path.write_text(render(sample_input()), encoding="utf-8")
    with browser(width=1100, height=900) as b:
        load = b.load(path.as_uri())
        assert load.errors() == [], load.errors()
        assert [u for u in load.requests if u != path.as_uri()] == [], "the report loaded something besides itself"
        charts = b.evaluate("""[...document.querySelectorAll('figure.chart svg')].map(s => {
            const r = s.getBoundingClientRect(); return [s.getAttribute('aria-label'), Math.round(r.width), Math.round(r.height),
            s.querySelectorAll('rect, line, path').length]; })""")
        names = [c[0] for c in charts]
        assert names == ["Pass rate per scorer", "Trace states over time", "Latency distribution", "Error signatures", "Tool error rates",
                         "What the trajectories show"], names
        assert all(w > 600 and h > 40 and shapes > 5 for _, w, h, shapes in charts), charts
        shot = b.screenshot(tmp_path / "report.png")
    # The screenshot shows the charts: the bars' blue, the failures' red and the OK green, not a blank page.
    assert colour_share(shot, (0x15, 0x65, 0xC0)) > 0.002
    assert colour_share(shot, (0xC6, 0x28, 0x28)) > 0.002
    assert colour_share(shot, (0x2E, 0x7D, 0x32)) > 0.001


@pytest.mark.slow
def test_the_browser_check_can_fail(tmp_path):
    """The same checks see a console error, a thrown exception and a network request when a page has them."""
    from tests.chromium import browser, require_chromium

    require_chromium()
    path = tmp_path / "bad.html"
    path.write_text('<html><body><script>console.error("broken"); throw new Error("boom")</script><img src="http://127.0.0.1:9/x.png"></body></html>')
    with browser() as b:
        load = b.load(path.as_uri())
    assert any("broken" in e for e in load.errors()) and any("boom" in e for e in load.errors())
    assert "http://127.0.0.1:9/x.png" in load.requests


def test_summary_commands_use_uv_in_a_checkout_and_this_interpreter_elsewhere(tmp_path, monkeypatch):
    from mlflow_eval_agent import summary
    from tests.conftest import REPO_ROOT

    monkeypatch.chdir(REPO_ROOT)
    assert summary.ui_command("sqlite:////x/mlflow.db") == "uv run mlflow ui --backend-store-uri sqlite:////x/mlflow.db"
    assert summary.cli_command() == "uv run python -m src.cli"
    monkeypatch.chdir(tmp_path)
    assert summary.ui_command("sqlite:////x/mlflow.db").endswith(" -m mlflow ui --backend-store-uri sqlite:////x/mlflow.db")
    assert summary.cli_command() == "mlflow-eval-agent"
    assert summary.ui_command("http://127.0.0.1:5000") is None and summary.ui_command("databricks") is None


def test_a_run_against_the_agent_shows_its_regression_view():
    data = sample_input()
    results = {"run_id": "run-agent", "run_name": "eval-agent-s-20261202-1000", "mode": "agent", "gate": "FAIL", "agent": "predict_fn my_app:predict",
               "data": "3 records", "baseline": "evaluation run run-base", "max_new_failures": 0,
               "records": {"tr-a": f"Where is my order 1? {HOSTILE}", "tr-b": "Refund?"}, "fresh_traces": {"tr-a": "tr-fresh-a", "tr-b": "tr-fresh-b"},
               "scorers": [{"scorer": "tools_seen", "status": "N/A", "reason": "not applicable: the agent recorded no TOOL span(s) on any of the 2 records"}],
               "regression": {"no_timeouts": {"baseline": True, "newly_failing": ["tr-a"], "newly_passing": [], "unchanged": 1, "not_comparable": 0, "regressed": True},
                              "answered": {"baseline": True, "newly_failing": [], "newly_passing": ["tr-b"], "unchanged": 1, "not_comparable": 0, "regressed": False},
                              "safety": {"baseline": False, "newly_failing": [], "newly_passing": [], "unchanged": 0, "not_comparable": 2, "regressed": False}}}
    page = render(ReportInput(**{**data.__dict__, "results": results}))
    section = page[page.index("Against the agent"):]
    text = re.sub(r"<[^>]+>", " ", section)
    assert "predict_fn my_app:predict" in text and "gate FAIL" in text and "REGRESSED" in text
    assert "no_timeouts: newly failing records" in text and "selectedEvaluationId=tr-fresh-a" in section
    assert "not applicable: the agent recorded no TOOL span(s)" in text and "not in the baseline" in text
    assert HOSTILE not in page
    assert "Against the agent" not in render(sample_input()), "no such section for a run on the stored traces"

"""The agent's profile fits its budget in bytes of the text actually sent (indented UTF-8), also
when span, tool and error names are not ASCII (3 bytes a character, and the compact JSON that
was measured before has no indentation)."""

from __future__ import annotations

from pathlib import Path

from mlflow_eval_agent.settings import Settings
from mlflow_eval_agent.store import SessionStore
from mlflow_eval_agent.tools import ToolContext, tools_for
from mlflow_eval_agent.tools._base import render_result, run_tool
from mlflow_eval_agent.tools.profile import PROFILE_FILE
from mlflow_eval_agent.traces.profile import ProfileBuilder
from mlflow_eval_agent.traces.profile_model import ProfileSource, TraceProfile
from mlflow_eval_agent.traces.profile_summary import BUDGET_BYTES, compact_profile, sent_bytes
from mlflow_eval_agent.traces.records import TraceRecord
from tests.fakes.trace_writer import SpanSpec, TraceSpec, span_dicts


def _non_ascii_profile(traces: int = 1_200, names: int = 300) -> TraceProfile:
    builder = ProfileBuilder()
    for i in range(traces):
        tool = SpanSpec(f"検索ツール_{i % names}_注文の状態を確認する_配送業者に問い合わせる", "TOOL", start_ms=1, duration_ms=1 + i % 13)
        if i % 2:
            tool.status = "ERROR"
            tool.error = (f"エラー{i % 40}", f"注文サービスが応答しませんでした 種類{i % 40} " + "再試行してください " * 8)
        llm = SpanSpec(f"モデル呼び出し_{i % 50}_日本語の応答を生成する", "CHAT_MODEL", start_ms=2, duration_ms=5,
                       attributes={"mlflow.llm.model": f"モデル-{i % 30}-大規模言語"})
        root = SpanSpec(f"エージェント_{i % 40}_カスタマーサポート", "AGENT", duration_ms=50, inputs={"質問": i}, outputs="答え", children=[tool, llm])
        spec = TraceSpec(root=root, start_ms=1_700_000_000_000 + i, session_id=f"セッション-{i % 7}")
        builder.add(TraceRecord(spec.mlflow_id, "OK", spec.start_ms, 50, spans=list(span_dicts(spec))))
    return builder.finish("1", ProfileSource(path="api"))


def test_compact_profile_counts_utf8_bytes_of_the_indented_text():
    profile = _non_ascii_profile()
    view = compact_profile(profile)
    assert sent_bytes(view) <= BUDGET_BYTES
    assert len(render_result(view).encode("utf-8")) == sent_bytes(view)  # measured as the tools render it
    assert view["omitted_rows"]["spans"] > 0 and view["trace_count"] == 1_200


def test_profile_tool_result_fits_the_budget_in_bytes(tmp_path: Path):
    profile = _non_ascii_profile()
    ctx = ToolContext(settings=Settings(tracking_uri="http://127.0.0.1:9", experiment_id="1"), store=SessionStore(tmp_path / "session", "s1"))
    ctx.store.write_model(PROFILE_FILE, profile)  # the saved profile answers: nothing is read from the (absent) server
    tool = next(t for t in tools_for("worker", ctx) if t.name == "profile")
    text, is_error = run_tool(tool, ctx, {})
    assert not is_error, text
    assert len(text.encode("utf-8")) <= BUDGET_BYTES
    assert "検索ツール_" in text and "omitted_rows" in text

"""The API path reads each trace's spans once per profile: the trajectory scan that follows the pass
takes the spans of the newest traces the pass just loaded (api_reader.MEMO) instead of batch-getting
them again, pairs them with the trace info its own search returned, and the profile is the same as
with the second read."""

from __future__ import annotations

from mlflow_eval_agent.traces import api_reader
from mlflow_eval_agent.traces.profile import build_profile
from tests.fakes.profile_fixtures import SeededStore, ServerHandle


def _numbers(profile) -> dict:
    return profile.model_dump(exclude={"source", "generated_at"})


def test_the_trajectory_scan_reuses_the_spans_of_the_pass(mlflow_server: ServerHandle, seeded_store: SeededStore, monkeypatch, batch_gets):
    """Over HTTP (a real `mlflow server` over a copy of the seeded store), where the scan reads through the API."""
    calls = batch_gets
    once = build_profile(mlflow_server.url, seeded_store.support_id, path="api")
    assert once.trace_count == 200 and sum(calls) == 200  # every trace's spans read once, the scan's included
    assert not api_reader.MEMO._data  # nothing is held past the profile

    monkeypatch.setattr(api_reader, "MEMO", api_reader.SpanMemo(limit=0))  # nothing kept: the scan reads again
    calls.clear()
    twice = build_profile(mlflow_server.url, seeded_store.support_id, path="api")
    assert sum(calls) == 400
    assert _numbers(once) == _numbers(twice)


def test_the_memo_holds_finished_traces_only_and_each_once(seeded_store: SeededStore):
    from types import SimpleNamespace

    memo = api_reader.SpanMemo(limit=2)
    done = [SimpleNamespace(info=SimpleNamespace(trace_id=f"tr-{i}", state="OK"), data=f"data-{i}") for i in range(3)]
    running = SimpleNamespace(info=SimpleNamespace(trace_id="tr-run", state="IN_PROGRESS"), data="partial")
    for trace in [running, *done]:
        memo.keep("uri", trace)
    assert memo.take("uri", "tr-run") is None  # its spans may still change
    assert memo.take("uri", "tr-0") == "data-0" and memo.take("uri", "tr-0") is None
    assert memo.take("uri", "tr-2") is None  # over the limit
    assert memo.take("other-uri", "tr-1") is None and memo.take("uri", "tr-1") == "data-1"
    memo.keep("uri", done[0])
    memo.start("uri")  # a new pass drops what an earlier one kept
    assert memo.take("uri", "tr-0") is None

"""The loop's bounds and decisions, with a stand-in session runner (no CLI, milliseconds per test)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mlflow_eval_agent.budget import BUDGET_FILE, SessionBudget
from mlflow_eval_agent.loop import AutonomousLoop
from mlflow_eval_agent.plan import PLAN_FILE, PlanDraft, TaskPlan
from mlflow_eval_agent.session import SessionOutcome
from mlflow_eval_agent.settings import resolve_settings
from mlflow_eval_agent.store import open_session_store

DRAFT = PlanDraft.model_validate({"tasks": [
    {"id": "a", "name": "A", "type": "scorer"},
    {"id": "b", "name": "B", "type": "scorer"},
    {"id": "v", "name": "V", "type": "validation"},
]})


def make_loop(tmp_path: Path, behaviour, **flags):
    settings = resolve_settings({"experiment_id": "1", **flags}, {})
    store = open_session_store(str(tmp_path), "s")
    calls = []

    async def runner(settings, store, request, config_dir):
        calls.append(request)
        return behaviour(store, request, len(calls))

    loop = AutonomousLoop(settings, store, tmp_path, runner=runner, backoff_s=lambda n: 0)
    return loop, store, calls


def outcome(request, cost=0.5, error=None, retryable=False):
    return SessionOutcome(role=request.role, task_id=request.task_id, started_at=time.time(), cost_usd=cost, error=error, retryable=retryable)


def productive(store, request, n):
    if request.role == "initializer":
        store.write_model(PLAN_FILE, DRAFT.to_plan("1"))
    else:
        plan = store.read_model(PLAN_FILE, TaskPlan)
        store.write_model(PLAN_FILE, plan.complete(request.task_id, "done well"))
    return outcome(request, cost=0.01)


def test_happy_path_completes_every_task_once(tmp_path: Path) -> None:
    loop, store, calls = make_loop(tmp_path, productive)
    report = asyncio.run(loop.run())
    assert report.stop_reason == "completed" and report.exit_code == 0
    assert [c.task_id for c in calls] == [None, "a", "b", "v"]
    assert len(store.read_json("state/sessions.json")) == 4


def test_budget_stops_before_the_next_session(tmp_path: Path) -> None:
    loop, _, calls = make_loop(tmp_path, lambda s, r, n: productive(s, r, n) and outcome(r, cost=0.6), max_budget_usd=1.0)
    report = asyncio.run(loop.run())
    assert report.stop_reason == "budget" and report.exit_code == 3  # stopped at a limit, not a failure
    assert len(calls) == 2
    assert calls[1].budget_usd == 0.4  # the session gets what is left, not the whole budget


def test_max_iterations_bounds_sessions(tmp_path: Path) -> None:
    loop, _, calls = make_loop(tmp_path, productive, max_iterations=2)
    report = asyncio.run(loop.run())
    assert report.stop_reason == "max_iterations" and len(calls) == 2
    assert report.plan.counts() == {"pending": 2, "in_progress": 0, "completed": 1, "failed": 0}


def test_api_errors_do_not_use_up_task_attempts(tmp_path: Path) -> None:
    def flaky(store, request, n):
        if request.role == "worker" and n in (2, 3):
            return outcome(request, error="success: API Error: 529 Overloaded", retryable=True)
        return productive(store, request, n)

    loop, store, calls = make_loop(tmp_path, flaky, max_attempts=1)
    report = asyncio.run(loop.run())
    assert report.stop_reason == "completed"
    assert store.read_model(PLAN_FILE, TaskPlan).get("a").attempts == 1


def test_api_error_storm_stops_the_run(tmp_path: Path) -> None:
    loop, _, calls = make_loop(tmp_path, lambda s, r, n: outcome(r, error="overloaded", retryable=True))
    report = asyncio.run(loop.run())
    assert report.stop_reason == "api_errors" and len(calls) == 4
    assert "overloaded" in report.message


def test_corrupt_plan_is_reported_and_replanned(tmp_path: Path) -> None:
    notices = []
    loop, store, calls = make_loop(tmp_path, productive)
    loop.hooks.notice = notices.append
    store.write_text(PLAN_FILE, "{not json")
    report = asyncio.run(loop.run())
    assert report.stop_reason == "completed"
    assert calls[0].role == "initializer"
    assert any("kept aside" in n for n in notices)
    assert any(".corrupt-" in p for p in store.list())


# --- limits over the session's whole life (resumes and job retries) ------------------------------
def costly(cost):
    return lambda store, request, n: productive(store, request, n) and outcome(request, cost=cost)


def test_a_retried_run_continues_with_what_is_left_of_the_budget(tmp_path: Path) -> None:
    first, store, calls = make_loop(tmp_path, costly(0.6), max_budget_usd=1.0)
    assert asyncio.run(first.run()).stop_reason == "budget" and len(calls) == 2

    # The job retries the task: a new process, the same session, fresh counters in memory.
    retry, _, retry_calls = make_loop(tmp_path, costly(0.6), max_budget_usd=1.0)
    report = asyncio.run(retry.run())
    assert report.stop_reason == "budget" and not retry_calls, "a retry must not get the whole budget again"
    assert "over 2 run(s)" in report.message
    saved = store.read_model(BUDGET_FILE, SessionBudget)
    assert (saved.iterations, saved.runs, saved.last_stop) == (2, 2, "budget") and round(saved.spent_usd, 6) == 1.2

    # A higher limit on the next resume gives exactly the difference.
    more, _, more_calls = make_loop(tmp_path, costly(0.6), max_budget_usd=1.5)
    asyncio.run(more.run())
    assert len(more_calls) == 1 and round(more_calls[0].budget_usd, 6) == 0.3


def test_iterations_count_over_runs_including_one_killed_mid_session(tmp_path: Path) -> None:
    def crash_in_second(store, request, n):
        if n == 2:
            raise RuntimeError("the node went away")
        return productive(store, request, n)

    first, store, _ = make_loop(tmp_path, crash_in_second, max_iterations=3)
    try:
        asyncio.run(first.run())
    except RuntimeError:
        pass
    assert store.read_model(BUDGET_FILE, SessionBudget).iterations == 2  # the killed session counts

    retry, _, calls = make_loop(tmp_path, productive, max_iterations=3)
    report = asyncio.run(retry.run())
    assert len(calls) == 1 and report.stop_reason == "max_iterations" and report.exit_code == 3
    assert report.budget.iterations == 3 and report.budget.runs == 2


def test_a_stop_at_a_limit_exits_3_or_0_with_limit_stop_ok_and_errors_still_exit_1(tmp_path: Path) -> None:
    loop, _, _ = make_loop(tmp_path / "a", productive, max_iterations=1)
    assert asyncio.run(loop.run()).exit_code == 3
    loop, _, _ = make_loop(tmp_path / "b", productive, max_iterations=1, limit_stop_ok=True)
    report = asyncio.run(loop.run())
    assert report.stop_reason == "max_iterations" and report.exit_code == 0
    storm, _, _ = make_loop(tmp_path / "c", lambda s, r, n: outcome(r, error="overloaded", retryable=True), limit_stop_ok=True)
    assert asyncio.run(storm.run()).exit_code == 1  # an error is a failure whatever the flag


def test_a_session_from_before_the_budget_file_is_rebuilt_from_its_history(tmp_path: Path) -> None:
    loop, store, calls = make_loop(tmp_path, productive, max_budget_usd=1.0)
    store.write_json("state/sessions.json", [{"role": "initializer", "cost_usd": 0.7}, {"role": "worker", "cost_usd": 0.3}])
    report = asyncio.run(loop.run())
    assert report.stop_reason == "budget" and not calls
    store.write_text(BUDGET_FILE, "{broken")
    notices = []
    loop, _, _ = make_loop(tmp_path, productive, max_budget_usd=1.0)
    loop.hooks.notice = notices.append
    assert asyncio.run(loop.run()).stop_reason == "budget"
    assert any("rebuilt from state/sessions.json" in n for n in notices)

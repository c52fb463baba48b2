"""Settings, plan, session store and file guard: the pieces every run relies on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mlflow_eval_agent.guard import FileGuard
from mlflow_eval_agent.plan import PLAN_FILE, PlanDraft, TaskPlan, TaskStatus
from mlflow_eval_agent.settings import ConfigError, require_model_access, resolve_settings
from mlflow_eval_agent.store import CorruptStateError, StoreError, open_session_store


# --- settings -------------------------------------------------------------------------------
def test_flags_beat_environment_beat_dotenv_beat_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_eval_agent.settings import read_environment

    (tmp_path / ".env").write_text("MODEL=from-dotenv\nEVAL_AGENT_MAX_ITERATIONS=7\nMLFLOW_EXPERIMENT_ID=11\n")
    env = read_environment(environ={"MODEL": "from-env"}, dotenv_path=tmp_path / ".env")
    settings = resolve_settings({"experiment_id": "42", "model": None}, env)
    assert settings.experiment_id == "42"  # flag
    assert settings.model == "from-env"  # environment over .env
    assert settings.max_iterations == 7  # .env over default
    assert settings.max_attempts == 3  # default


def test_invalid_setting_is_a_config_error_sentence() -> None:
    with pytest.raises(ConfigError, match="max_iterations"):
        resolve_settings({}, {"EVAL_AGENT_MAX_ITERATIONS": "lots"})


def test_missing_credentials_message_names_the_variables() -> None:
    with pytest.raises(ConfigError) as err:
        require_model_access(resolve_settings({}, {}))
    assert "ANTHROPIC_API_KEY" in str(err.value) and "ANTHROPIC_AUTH_TOKEN" in str(err.value)


def test_gateway_token_disables_betas_and_never_prints() -> None:
    settings = resolve_settings({}, {"ANTHROPIC_BASE_URL": "https://host/serving-endpoints/anthropic", "ANTHROPIC_AUTH_TOKEN": "dapi-very-secret"})
    require_model_access(settings)
    env = settings.access.cli_env()
    assert env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1" and env["ANTHROPIC_AUTH_TOKEN"] == "dapi-very-secret"
    assert "dapi-very-secret" not in repr(settings) and "dapi-very-secret" not in settings.model_dump_json()
    assert settings.redactions() == ["dapi-very-secret"]


def test_bedrock_passthrough_counts_as_credentials() -> None:
    settings = resolve_settings({}, {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1"})
    require_model_access(settings)
    assert settings.access.cli_env()["CLAUDE_CODE_USE_BEDROCK"] == "1"


# --- plan -----------------------------------------------------------------------------------
def _plan() -> TaskPlan:
    draft = PlanDraft.model_validate({"tasks": [
        {"id": "ds", "name": "Dataset", "type": "dataset"},
        {"id": "sc", "name": "Scorer", "type": "scorer"},
        {"id": "val", "name": "Validate", "type": "validation"},
    ]})
    return draft.to_plan("1")


def test_plan_draft_rejections_are_precise() -> None:
    with pytest.raises(ValueError, match="last task must have type 'validation'"):
        PlanDraft.model_validate({"tasks": [{"id": "a", "name": "A", "type": "dataset"}]})
    with pytest.raises(ValueError, match="repeated: a"):
        TaskPlan.model_validate({"tasks": [{"id": "a", "name": "A", "type": "dataset"}, {"id": "a", "name": "B", "type": "validation"}]})
    with pytest.raises(ValueError, match="pattern"):
        PlanDraft.model_validate({"tasks": [{"id": "../x", "name": "A", "type": "validation"}]})


def test_attempts_then_failed_for_good() -> None:
    plan = _plan().start("ds").record_failure("ds", "boom", max_attempts=2)
    assert plan.get("ds").status == TaskStatus.PENDING and plan.get("ds").attempts == 1
    plan = plan.start("ds").record_failure("ds", "boom again", max_attempts=2)
    assert plan.get("ds").status == TaskStatus.FAILED
    assert plan.get("ds").failure_reason == "boom again (gave up after 2 attempts)"
    assert plan.next_task().id == "sc"


def test_rewriting_the_plan_keeps_completed_tasks() -> None:
    plan = _plan().start("ds").complete("ds", "made it")
    redraft = PlanDraft.model_validate({"tasks": [
        {"id": "ds", "name": "Dataset again", "type": "dataset"},
        {"id": "val", "name": "Validate", "type": "validation"},
    ]})
    new = redraft.to_plan("1", previous=plan)
    assert new.get("ds").status == TaskStatus.COMPLETED and new.get("ds").summary == "made it"
    assert new.next_task().id == "val"


# --- store ----------------------------------------------------------------------------------
def test_store_refuses_paths_outside_the_session(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path), "s1")
    for bad in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(StoreError):
            store.write_text(bad, "x")
    (tmp_path / "outside").mkdir()
    (store.root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(StoreError, match="outside"):
        store.write_text("link/evil.txt", "x")
    with pytest.raises(StoreError, match="not usable"):
        open_session_store(str(tmp_path), "../escape")


def test_corrupt_state_is_kept_aside_and_reported(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path), "s1")
    store.write_text(PLAN_FILE, '{"tasks": [ broken')
    with pytest.raises(CorruptStateError) as err:
        store.read_model(PLAN_FILE, TaskPlan)
    assert "not valid JSON" in str(err.value) and ".corrupt-" in err.value.kept_as
    assert not store.exists(PLAN_FILE) and store.exists(err.value.kept_as)
    store.write_text(PLAN_FILE, json.dumps({"tasks": []}))
    with pytest.raises(CorruptStateError, match="validation error"):
        store.read_model(PLAN_FILE, TaskPlan)


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_session_store(str(tmp_path), "s1")
    store.write_text("state/a.json", "old")

    def exploding_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("mlflow_eval_agent.store.base.os.replace", exploding_replace)
    with pytest.raises(StoreError, match="Could not write state/a.json"):  # one sentence, not an OSError
        store.write_text("state/a.json", "new")
    assert store.read_text("state/a.json") == "old"
    assert [p.name for p in (store.root / "state").iterdir()] == ["a.json"]  # no temp litter


# --- guard ----------------------------------------------------------------------------------
def test_guard_confines_builtins_to_the_session(tmp_path: Path) -> None:
    root = (tmp_path / "session").resolve()
    root.mkdir()
    guard = FileGuard(root=root, allowed_prefixes=("mcp__eval__",))
    assert guard.check("Read", {"file_path": str(root / "a.txt")}) is None
    assert guard.check("Read", {"file_path": "notes/a.md"}) is None
    assert "refused" in guard.check("Read", {"file_path": "/etc/passwd"})
    assert "refused" in guard.check("Read", {"file_path": "../../x"})
    assert "refused" in guard.check("Grep", {"pattern": "x", "path": "/"})
    assert "outside" in guard.check("Glob", {"pattern": "../**/*.env"})
    assert "not available" in guard.check("Bash", {"command": "ls"})
    assert "not available" in guard.check("Write", {"file_path": "a.txt", "content": ""})
    assert guard.check("mcp__eval__get_trace", {"trace_id": "tr-1"}) is None
    decision = asyncio.run(guard.pre_tool_use({"tool_name": "Read", "tool_input": {"file_path": "/root/.ssh/id_rsa"}}, None, None))
    assert decision["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_release_gives_the_attempt_back() -> None:
    plan = _plan().start("ds").release("ds")
    assert plan.get("ds").status == TaskStatus.PENDING and plan.get("ds").attempts == 0
    assert plan.next_task().id == "ds"

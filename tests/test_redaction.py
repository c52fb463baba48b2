"""Secrets never leave the process: by value (settings, credential variables, `.env`) and by shape.

Unit tests for each place text leaves (store, console and run.log, tool records, self-tracing, the
Claude Code environment), and one run of the real CLI whose scripted model echoes canaries into
every tool it can reach.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from rich.console import Console

from mlflow_eval_agent.redaction import REDACTED, Redactor, credential_name, scrub
from mlflow_eval_agent.settings import ModelAccess, Settings, read_environment, resolve_settings
from mlflow_eval_agent.store import open_session_store

# By-value canaries are shaped like nothing in SECRET_PATTERNS, so only knowing the value hides them.
DB_TOKEN = "canary-databricks-4f9a1c7e"
PASSWORD = "canary-password-8b2d6e0f"
DOTENV_VALUE = "canary-dotenv-3c5e7a9b"
SHAPED_KEY = "sk-ant-api03-canaryShape0123456789abcdef"  # known to nobody: caught by its shape
CANARIES = (DB_TOKEN, PASSWORD, DOTENV_VALUE, SHAPED_KEY)


def _redactor() -> Redactor:
    return Redactor([DB_TOKEN, PASSWORD, DOTENV_VALUE])


def _assert_clean(text: str, where: str = "") -> None:
    found = [c for c in CANARIES if c in text]
    assert not found, f"{found} in {where}: {text[:2000]}"


# --- names, shapes, values -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["DATABRICKS_TOKEN", "MY_SERVICE_PASSWORD", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
                                  "DATABRICKS_CLIENT_SECRET", "MLFLOW_TRACKING_PASSWORD", "GOOGLE_APPLICATION_CREDENTIALS"])
def test_credential_names(name: str) -> None:
    assert credential_name(name) and credential_name(name.lower())


@pytest.mark.parametrize("name", ["MODEL", "DATABRICKS_HOST", "EVAL_AGENT_SECRET_KEY", "EVAL_AGENT_SECRET_SCOPE", "TOKENIZERS_PARALLELISM"])
def test_ordinary_names(name: str) -> None:
    assert not credential_name(name)


@pytest.mark.parametrize("secret", [
    "sk-ant-api03-" + "a1B2" * 8,
    "sk-proj-" + "Z9y8" * 6,
    "dapi" + "0123456789abcdef" * 2,
    "dapi" + "0123456789abcdef" * 2 + "-2",
])
def test_key_shapes_are_redacted(secret: str) -> None:
    assert scrub(f"the key is {secret}.") == f"the key is {REDACTED}."


def test_bearer_headers_and_url_passwords_are_redacted() -> None:
    assert scrub("Authorization: Bearer abc.DEF-123_456789") == f"Authorization: Bearer {REDACTED}"
    assert scrub("authorization: bearer abcdefghijklmnop") == f"authorization: bearer {REDACTED}"
    assert scrub("https://me:hunter2hunter2@mlflow.example.com/") == f"https://{REDACTED}@mlflow.example.com/"


def test_ordinary_text_is_left_alone() -> None:
    text = "TimeoutError: timed out after 30s for order 1234 (trace tr-0123456789abcdef, model claude-sonnet-4-5)"
    assert scrub(text, ["true", "short"]) == text


def test_values_are_redacted_raw_and_json_escaped() -> None:
    tricky = 'pa"ss\\word-1234'
    redactor = Redactor([tricky])
    assert redactor.text(f"x {tricky} y") == f"x {REDACTED} y"
    assert redactor.text(json.dumps({"v": f"x {tricky} y"})) == json.dumps({"v": f"x {REDACTED} y"})
    assert redactor.data({"a": [{"b": (tricky, 3)}], tricky: None}) == {"a": [{"b": [REDACTED, 3]}], REDACTED: None}


# --- settings ----------------------------------------------------------------------------------
def _dotenv(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        f"INTERNAL_WEBHOOK={DOTENV_VALUE}\n"
        "ANTHROPIC_API_KEY=\n"
        "MODEL=databricks-claude-sonnet-4-5\n"
        "MLFLOW_TRACKING_URI=sqlite:///tmp/store/mlflow.db\n"
        "MLFLOW_GENAI_JUDGE_DEFAULT_MODEL=openai:/gpt-4.1-mini\n"
        "DATABRICKS_HOST=https://adb-42.azuredatabricks.net\n"
        "EVAL_AGENT_MAX_ITERATIONS=12345678\n"
        "CLAUDE_CODE_USE_BEDROCK=0\n"
        "AWS_REGION=eu-central-1\n"
        "REPORT_FILE=/var/reports/latest-report.json\n"
        "FEATURE_ENABLED=true\n"
    )
    return path


def test_redactions_cover_credential_variables_and_dotenv_secrets(tmp_path: Path) -> None:
    environ = {"DATABRICKS_TOKEN": DB_TOKEN, "MY_SERVICE_PASSWORD": PASSWORD, "HOME": "/home/someone-long"}
    settings = resolve_settings({}, read_environment(environ, _dotenv(tmp_path)))
    values = settings.redactions()
    assert {DB_TOKEN, PASSWORD, DOTENV_VALUE} <= set(values)
    ordinary = ("databricks-claude-sonnet-4-5", "sqlite:///tmp/store/mlflow.db", "openai:/gpt-4.1-mini",
                "https://adb-42.azuredatabricks.net", "12345678", "eu-central-1", "/var/reports/latest-report.json", "/home/someone-long")
    assert not set(ordinary) & set(values)
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        _assert_clean(shown, "the settings' own text")
    assert settings.redactor().text(f"{DB_TOKEN} {PASSWORD} {DOTENV_VALUE} {SHAPED_KEY}").count(REDACTED) == 4


def test_process_environment_wins_but_the_dotenv_value_stays_secret(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"SERVICE_API_KEY={DOTENV_VALUE}\n")
    settings = resolve_settings({}, read_environment({"SERVICE_API_KEY": PASSWORD}, path))
    assert {PASSWORD, DOTENV_VALUE} <= set(settings.redactions())


def test_tracking_uri_password_and_model_access_are_redacted() -> None:
    settings = resolve_settings({"tracking_uri": "https://me:tracking-pass-1234@mlflow.example.com"},
                                {"ANTHROPIC_API_KEY": "plain-api-key-5678"})
    assert {"tracking-pass-1234", "plain-api-key-5678"} <= set(settings.redactions())


# --- session store -----------------------------------------------------------------------------
class _Inner(BaseModel):
    note: str
    items: list[str]


class _Doc(BaseModel):
    title: str
    inner: _Inner
    embedded_json: str


def test_store_writes_are_redacted_and_json_stays_valid(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path), "s1", _redactor())
    doc = _Doc(title=f"uses {DB_TOKEN}", inner=_Inner(note=f"pw={PASSWORD}", items=[SHAPED_KEY, "ok"]),
               embedded_json=json.dumps({"webhook": DOTENV_VALUE}))
    store.write_model("state/doc.json", doc)
    store.write_json("state/raw.json", {"nested": [{"v": f'"{PASSWORD}"'}]})
    store.write_text("notes/n.md", f"# Notes\n{DB_TOKEN}\n")
    store.append_log(f"tool Read {{'file_path': '{DOTENV_VALUE}'}}")
    for rel in ("state/doc.json", "state/raw.json", "notes/n.md", "run.log"):
        text = (store.root / rel).read_text()
        _assert_clean(text, rel)
        assert REDACTED in text, rel
    saved = store.read_model("state/doc.json", _Doc)
    assert saved.inner.items == [REDACTED, "ok"] and json.loads(saved.embedded_json) == {"webhook": REDACTED}
    assert store.read_json("state/raw.json") == {"nested": [{"v": f'"{REDACTED}"'}]}


def test_a_store_without_redactor_still_hides_key_shapes(tmp_path: Path) -> None:
    store = open_session_store(str(tmp_path), "s2")
    store.write_text("notes/n.md", f"{SHAPED_KEY} {DB_TOKEN}")
    assert (store.root / "notes/n.md").read_text() == f"{REDACTED} {DB_TOKEN}"


# --- console, run.log, tool records --------------------------------------------------------------
def _record(**overrides: Any) -> Any:
    from mlflow_eval_agent.tools import ToolCallRecord

    values = {"name": "write_artifact", "arguments": {}, "started_ns": 1, "ended_ns": 2_000_001, "is_error": True,
              "result_chars": 10, "error": f"Cannot write 'state/{DB_TOKEN}'"}
    return ToolCallRecord(**(values | overrides))


def test_progress_lines_and_run_log_are_redacted(tmp_path: Path) -> None:
    from mlflow_eval_agent.progress import ConsoleHooks
    from mlflow_eval_agent.session import SessionOutcome, SessionRequest

    buffer = io.StringIO()
    store = open_session_store(str(tmp_path), "s1", _redactor())
    hooks = ConsoleHooks(Console(file=buffer, width=300), store, verbose=True, max_iterations=3)
    request = SessionRequest(role="initializer", system_prompt="sys", prompt="go")
    hooks.session_started(request, 1)
    [observer] = hooks.session_observers(request, 1)
    observer.on_text(f"I found {PASSWORD} in a trace")
    observer.on_tool_use("Read", {"file_path": f"notes/{DB_TOKEN}.md", "deep": {"list": [DOTENV_VALUE]}})
    observer.on_tool_use("mcp__eval__write_artifact", {"path": "notes/a.md", "content": SHAPED_KEY})
    observer.on_tool_call(_record())
    hooks.notice(f"Model API error (key {PASSWORD} rejected); retrying")
    hooks.session_finished(request, SessionOutcome(role="initializer", started_at=0, error=f"error_during_execution: {DB_TOKEN}"))
    shown, log = buffer.getvalue(), (store.root / "run.log").read_text()
    _assert_clean(shown, "console")
    _assert_clean(log, "run.log")
    assert shown.count(REDACTED) >= 6 and log.count(REDACTED) >= 3


def test_tool_records_and_results_are_redacted_before_anyone_sees_them(tmp_path: Path) -> None:
    from mlflow_eval_agent.tools import ToolContext
    from mlflow_eval_agent.tools._base import AgentTool, bind

    class Args(BaseModel):
        payload: dict[str, Any]

    def echo(ctx: Any, args: Args) -> dict[str, Any]:
        return {"echo": args.payload, "env": DB_TOKEN}

    settings = Settings(known_secrets=tuple(SecretStr(v) for v in (DB_TOKEN, PASSWORD, DOTENV_VALUE)))
    seen: list[Any] = []
    ctx = ToolContext(settings, open_session_store(str(tmp_path), "s1"), observers=[seen.append])
    tool = bind(AgentTool("echo", "echo", Args, echo, frozenset({"initializer"})), ctx)
    result = asyncio.run(tool.handler({"payload": {"nested": [{"pw": PASSWORD}, SHAPED_KEY], "why": DOTENV_VALUE}}))
    _assert_clean(json.dumps(result), "the tool result")
    [record] = seen
    _assert_clean(record.model_dump_json(), "the tool record")
    assert record.arguments["payload"]["nested"] == [{"pw": REDACTED}, REDACTED]


def test_guard_refusals_are_redacted(tmp_path: Path) -> None:
    from mlflow_eval_agent.guard import FileGuard

    guard = FileGuard(root=tmp_path, allowed_prefixes=("mcp__eval__",), redact=_redactor().text)
    reason = guard.check("Read", {"file_path": f"../{DB_TOKEN}.txt"})
    assert reason and "refused" in reason and DB_TOKEN not in reason


def test_builtin_tool_inputs_are_redacted_for_observers() -> None:
    from claude_agent_sdk import AssistantMessage, ToolResultBlock, ToolUseBlock, UserMessage

    from mlflow_eval_agent.session import SessionOutcome, _Collector

    class Seen:
        def __init__(self) -> None:
            self.uses: list[Any] = []
            self.calls: list[Any] = []

        def on_text(self, text: str) -> None: ...
        def on_tool_use(self, name: str, tool_input: dict[str, Any]) -> None:
            self.uses.append(tool_input)

        def on_tool_call(self, record: Any) -> None:
            self.calls.append(record)

    seen = Seen()
    collector = _Collector(SessionOutcome(role="worker", started_at=0), [seen], _redactor())
    collector.handle(AssistantMessage(content=[ToolUseBlock(id="t1", name="Grep", input={"pattern": PASSWORD, "path": "."})], model="m"))
    collector.handle(UserMessage(content=[ToolResultBlock(tool_use_id="t1", content=f"no match for {PASSWORD}", is_error=True)]))
    assert seen.uses == [{"pattern": REDACTED, "path": "."}]
    _assert_clean(seen.calls[0].model_dump_json(), "the built-in tool record")


# --- the Claude Code environment -------------------------------------------------------------------
def test_cli_environment_blanks_inherited_credentials(tmp_path: Path) -> None:
    from mlflow_eval_agent.session import cli_environment

    settings = Settings(access=ModelAccess(api_key=SecretStr("the-model-key-1234")))
    inherited = {"DATABRICKS_TOKEN": DB_TOKEN, "MY_SERVICE_PASSWORD": PASSWORD, "ANTHROPIC_API_KEY": "stale-key-0000",
                 "GITHUB_TOKEN": "ghp_x", "HOME": "/root", "DATABRICKS_HOST": "https://adb-1.net"}
    env = cli_environment(settings, tmp_path, inherited)
    assert env["DATABRICKS_TOKEN"] == "" and env["MY_SERVICE_PASSWORD"] == "" and env["GITHUB_TOKEN"] == ""
    assert env["ANTHROPIC_API_KEY"] == "the-model-key-1234"  # what the CLI needs is set on purpose
    assert "DATABRICKS_HOST" not in env  # ordinary variables are inherited untouched
    assert Path(env["HOME"]).is_relative_to(tmp_path)  # except HOME: the CLI's caches stay in its private folder


def test_cli_environment_keeps_the_provider_passthrough(tmp_path: Path) -> None:
    from mlflow_eval_agent.session import cli_environment

    settings = resolve_settings({}, {"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1", "AWS_SECRET_ACCESS_KEY": "aws-secret-1234"})
    env = cli_environment(settings, tmp_path, {"AWS_SECRET_ACCESS_KEY": "aws-secret-1234", "DATABRICKS_TOKEN": DB_TOKEN})
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws-secret-1234" and env["DATABRICKS_TOKEN"] == ""


# --- self-tracing ------------------------------------------------------------------------------
def test_self_tracing_redacts_nested_inputs_and_outputs(tracking_uri: str) -> None:
    import mlflow

    from mlflow_eval_agent.loop import RunReport
    from mlflow_eval_agent.session import SessionOutcome, SessionRequest
    from mlflow_eval_agent.tracing import RunTracer

    experiment_id = mlflow.create_experiment("agent-self")
    tracer = RunTracer(experiment_id, "s1", "7", _redactor())
    request = SessionRequest(role="worker", system_prompt="sys", prompt=f"Task details: use {DB_TOKEN}", task_id="t1")
    tracer.session_started(request, 1)
    tracer.tool_span(_record(arguments={"findings": [{"description": f"password {PASSWORD}", "trace_ids": [SHAPED_KEY]}],
                                        "summary": {"deep": {"deeper": DOTENV_VALUE}}}))
    tracer.session_finished(request, SessionOutcome(role="worker", started_at=0, result_text=f"done {PASSWORD}", error=f"x {DB_TOKEN}"))
    tracer.finish(RunReport(session_id="s1", plan=None, stop_reason="tasks_failed"), f"boom {DOTENV_VALUE}")
    [trace] = mlflow.search_traces(locations=[experiment_id], return_type="list")
    spans = json.dumps([s.to_dict() for s in trace.data.spans], default=str)
    _assert_clean(spans, "the agent's own trace")
    assert spans.count(REDACTED) >= 6


# --- the whole agent path --------------------------------------------------------------------------
@pytest.mark.slow
def test_no_canary_leaves_an_agent_run(fake_anthropic, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from tests.agent_harness import INITIALIZER, WORKER, cli_env
    from tests.fakes.anthropic_server import text, tool_use

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("target")
    agent_experiment = client.create_experiment("agent-self")
    from tests.fakes.trace_writer import SpanSpec, TraceSpec, write_traces

    # one trace: an empty experiment is refused before any session (issue 11)
    write_traces(uri, experiment_id, [TraceSpec(SpanSpec("agent", "AGENT", inputs={"q": "hi"}, outputs={"a": "hello"}), start_ms=1_767_225_600_000)])
    all_of_them = f"{DB_TOKEN} {PASSWORD} {DOTENV_VALUE} {SHAPED_KEY}"
    fake_anthropic.script(
        tool_use("mcp__eval__save_analysis", {
            "summary": f"The application echoes credentials such as {DB_TOKEN}.",
            "findings": [{"title": "Leaked credential", "description": f"found {all_of_them}", "severity": "high",
                          "trace_ids": [DOTENV_VALUE], "evidence": f"{PASSWORD} in 3 of 10 traces"}],
        }, say=f"I can see {all_of_them}."),
        tool_use("mcp__eval__write_plan", {"tasks": [
            {"id": "notes", "name": "Write notes", "type": "analysis", "details": f"Explain where {all_of_them} appear."},
            {"id": "validate", "name": "Run the suite", "type": "validation", "details": f"Check {SHAPED_KEY}."},
        ]}),
        tool_use("mcp__eval__write_artifact", {"path": "notes/leak.md", "content": f"# Leak\n{all_of_them}\n"}),
        tool_use("mcp__eval__write_artifact", {"path": f"state/{DB_TOKEN}.md", "content": "reserved path"}),
        tool_use("Read", {"file_path": f"../{PASSWORD}/{DOTENV_VALUE}.txt"}),
        tool_use("Read", {"file_path": "notes/leak.md"}),
        tool_use("mcp__eval__read_state", {"name": "analysis"}),
        text(f"Plan saved. {all_of_them}"),
        match=INITIALIZER,
    )
    fake_anthropic.script(
        tool_use("mcp__eval__complete_task", {"task_id": "notes", "summary": f"Notes written about {PASSWORD}."}),
        text("done"),
        tool_use("mcp__eval__fail_task", {"task_id": "validate", "reason": f"No suite in this test; {DOTENV_VALUE}."}),
        text(f"stop {DB_TOKEN}"),
        match=WORKER,
    )
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"INTERNAL_WEBHOOK={DOTENV_VALUE}\nEVAL_AGENT_MAX_ATTEMPTS=1\n")
    env = cli_env(fake_anthropic, uri, tmp_path, DATABRICKS_TOKEN=DB_TOKEN, MY_SERVICE_PASSWORD=PASSWORD)
    args = ["-a", "-v", "-e", experiment_id, "--volume-path", str(tmp_path / "v"), "--session-id", "leak",
            "--agent-experiment-id", agent_experiment]
    proc = subprocess.run([sys.executable, "-c", "from mlflow_eval_agent.cli import main; raise SystemExit(main())", *args],
                          cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1 and "some tasks failed" in proc.stdout, proc.stdout + proc.stderr
    fake_anthropic.assert_script_finished()

    _assert_clean(proc.stdout, "stdout")
    _assert_clean(proc.stderr, "stderr")
    assert REDACTED in proc.stdout
    session = tmp_path / "v" / "sessions" / "leak"
    for rel in ("state/analysis.json", "eval_tasks.json", "notes/leak.md", "run.log"):
        assert REDACTED in (session / rel).read_text(), rel
    json.loads((session / "eval_tasks.json").read_text())
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".env"]
    assert any(p.name == "mlflow.db" for p in files)
    for path in files:
        _assert_clean(path.read_bytes().decode("utf-8", "replace"), str(path))

    traces = MlflowClient(tracking_uri=uri).search_traces(locations=[agent_experiment])
    assert len(traces) == 1 and any(s.span_type == "TOOL" for s in traces[0].data.spans)
    for request in fake_anthropic.requests:
        body = request.body if isinstance(request.body, dict) else {"raw": request.body}
        # The model's own messages come back verbatim in later requests: its words, not our leak.
        sent = {**body, "messages": [m for m in body.get("messages", []) if m.get("role") != "assistant"]}
        _assert_clean(json.dumps(sent), f"a request to the model ({request.kind})")
        _assert_clean(json.dumps(request.headers), "request headers")
    results = [r for req in fake_anthropic.main_requests() for r in fake_anthropic.tool_results_in(req, latest_only=True)]
    assert any(REDACTED in r.text and r.tool_name == "Read" for r in results)  # the guard's refusal, and the notes

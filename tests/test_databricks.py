"""Databricks runtime settings: secret-scope token, FM API URL, config folder, event loop in notebooks."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from pathlib import Path

import pytest
from pydantic import SecretStr

from mlflow_eval_agent.cli import main
from mlflow_eval_agent.databricks import (
    adapt_settings,
    claude_config_dir,
    cli_args,
    fm_api_base_url,
    on_databricks,
    read_secret,
    run_coroutine,
)
from mlflow_eval_agent.settings import ConfigError, ModelAccess, Settings
from tests.fakes.databricks_api import FakeDatabricks

TOKEN = "dapi-model-token-0123456789"
ON_DATABRICKS = {"DATABRICKS_RUNTIME_VERSION": "client.4.1"}


@pytest.fixture
def fake():
    with FakeDatabricks() as server:
        server.put_secret("mlflow-eval-agent", "fm-api-token", TOKEN)
        yield server


class StandInDbutils:
    """The slice of a notebook's dbutils that the code touches."""

    def __init__(self, secrets: dict[tuple[str, str], str]):
        outer = self
        self.reads: list[tuple[str, str]] = []

        class Secrets:
            def get(self, scope: str, key: str) -> str:
                outer.reads.append((scope, key))
                if (scope, key) not in secrets:
                    raise RuntimeError(f"Secret does not exist with scope: {scope} and key: {key}")
                return secrets[(scope, key)]

        self.secrets = Secrets()


def no_client():
    raise AssertionError("no WorkspaceClient should be needed here")


def test_runtime_detection_and_fm_api_url():
    assert on_databricks(ON_DATABRICKS) and not on_databricks({}) and not on_databricks({"DATABRICKS_RUNTIME_VERSION": " "})
    assert fm_api_base_url("https://adb-1.2.azuredatabricks.net/") == "https://adb-1.2.azuredatabricks.net/serving-endpoints/anthropic"
    assert fm_api_base_url("dbc-123.cloud.databricks.com") == "https://dbc-123.cloud.databricks.com/serving-endpoints/anthropic"
    with pytest.raises(ConfigError, match="host is unknown"):
        fm_api_base_url(" ")


def test_off_databricks_without_secrets_nothing_changes_but_blanks_are_unset():
    settings = Settings(experiment_id="7", agent_experiment_id="", model=" ", tracking_uri="sqlite:///x.db")
    adapted = adapt_settings(settings, {}, client_factory=no_client)
    assert adapted.agent_experiment_id is None and adapted.model is None
    assert adapted.tracking_uri == "sqlite:///x.db" and adapted.access == settings.access
    assert adapted.claude_config_dir is None
    assert settings.agent_experiment_id == ""  # the input is not changed


def test_on_databricks_the_token_comes_from_the_secret_scope(fake, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    settings = Settings(experiment_id="7", secret_scope="mlflow-eval-agent", secret_key="fm-api-token")
    adapted = adapt_settings(settings, ON_DATABRICKS, client_factory=fake.client)

    assert adapted.tracking_uri == "databricks"
    assert adapted.access.base_url == f"{fake.url}/serving-endpoints/anthropic"  # host from the SDK's config
    env = adapted.access.cli_env()
    assert env["ANTHROPIC_AUTH_TOKEN"] == TOKEN
    assert env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1" and env["ANTHROPIC_API_KEY"] == ""
    assert TOKEN in adapted.redactions() and TOKEN not in adapted.redactor().text(f"Authorization: {TOKEN}")
    for shown in (repr(adapted), str(adapted), adapted.model_dump_json(), str(adapted.model_dump())):
        assert TOKEN not in shown

    config = Path(adapted.claude_config_dir)
    assert config.is_dir() and config.is_relative_to(tmp_path) and (config.stat().st_mode & 0o077) == 0
    assert [r.path for r in fake.calls("GET", "/api/2.0/secrets/get")] == ["/api/2.0/secrets/get"]


def test_notebook_dbutils_is_used_before_the_api(monkeypatch):
    dbutils = StandInDbutils({("s", "k"): TOKEN})
    shell = types.SimpleNamespace(user_ns={"dbutils": dbutils})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    env = {**ON_DATABRICKS, "DATABRICKS_HOST": "adb-42.azuredatabricks.net"}
    adapted = adapt_settings(Settings(secret_scope="s", secret_key="k"), env, client_factory=no_client)
    assert dbutils.reads == [("s", "k")]
    assert adapted.access.auth_token.get_secret_value() == TOKEN
    assert adapted.access.base_url == "https://adb-42.azuredatabricks.net/serving-endpoints/anthropic"


def test_given_base_url_wins_then_the_environment_then_the_derived_one():
    dbutils = StandInDbutils({("s", "k"): TOKEN})
    from_flag = adapt_settings(Settings(secret_scope="s", secret_key="k"), ON_DATABRICKS,
                               base_url="https://gateway.example/anthropic", dbutils=dbutils, client_factory=no_client)
    assert from_flag.access.base_url == "https://gateway.example/anthropic"
    from_env = Settings(secret_scope="s", secret_key="k", access=ModelAccess(base_url="https://env.example"))
    assert adapt_settings(from_env, ON_DATABRICKS, dbutils=dbutils, client_factory=no_client).access.base_url == "https://env.example"
    # Off Databricks the flag alone only sets the URL.
    plain = adapt_settings(Settings(), {}, base_url="https://gw.example", client_factory=no_client)
    assert plain.access.base_url == "https://gw.example" and plain.tracking_uri is None


def test_an_auth_token_without_url_on_databricks_gets_the_derived_url():
    settings = Settings(access=ModelAccess(auth_token=SecretStr(TOKEN)))
    env = {**ON_DATABRICKS, "DATABRICKS_HOST": "https://adb-9.net/"}
    assert adapt_settings(settings, env, client_factory=no_client).access.base_url == "https://adb-9.net/serving-endpoints/anthropic"


def test_a_given_tracking_uri_and_config_dir_are_kept():
    settings = Settings(tracking_uri="databricks://profile", claude_config_dir="/tmp/mine")
    adapted = adapt_settings(settings, ON_DATABRICKS, client_factory=no_client)
    assert adapted.tracking_uri == "databricks://profile" and adapted.claude_config_dir == "/tmp/mine"


def test_missing_secret_is_a_clear_error_that_names_the_fix(fake):
    settings = Settings(secret_scope="mlflow-eval-agent", secret_key="other-key")
    with pytest.raises(ConfigError) as err:
        adapt_settings(settings, ON_DATABRICKS, client_factory=fake.client)
    message = str(err.value)
    assert "'mlflow-eval-agent'" in message and "'other-key'" in message
    assert "databricks secrets put-secret mlflow-eval-agent other-key" in message and TOKEN not in message


def test_half_a_secret_reference_is_refused():
    with pytest.raises(ConfigError, match="both --secret-scope and --secret-key"):
        adapt_settings(Settings(secret_scope="s"), {}, client_factory=no_client)


def test_empty_secret_is_refused():
    with pytest.raises(ConfigError, match="is empty"):
        read_secret("s", "k", dbutils=StandInDbutils({("s", "k"): "  "}), client_factory=no_client)


def test_offline_runs_read_no_secret():
    adapted = adapt_settings(Settings(secret_scope="s", secret_key="k", offline=True), ON_DATABRICKS, client_factory=no_client)
    assert adapted.access.auth_token is None and adapted.tracking_uri == "databricks"


def test_no_databricks_credentials_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "none.cfg"))
    with pytest.raises(ConfigError, match="Cannot connect to Databricks.*DATABRICKS_HOST and DATABRICKS_TOKEN"):
        adapt_settings(Settings(secret_scope="s", secret_key="k"), {})


def test_config_dir_is_private_and_writable(tmp_path):
    path = Path(claude_config_dir(tmp_path))
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700
    assert claude_config_dir(tmp_path) == str(path)  # stable across runs on one machine


def test_run_coroutine_with_and_without_a_running_loop():
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert run_coroutine(where()) == threading.current_thread().name

    async def notebook_cell() -> str:  # a cell runs inside the kernel's loop
        return run_coroutine(where())

    assert asyncio.run(notebook_cell()).startswith("mlflow-eval-agent-loop")

    async def boom() -> None:
        raise ValueError("inside")

    async def failing_cell() -> None:
        run_coroutine(boom())

    with pytest.raises(ValueError, match="inside"):
        asyncio.run(failing_cell())


def test_cli_args_from_widget_values_leave_out_blanks():
    values = {"experiment_id": " 123 ", "volume_path": "/Volumes/a/b/c", "max_iterations": "5", "model": "",
              "session_id": "", "secret_scope": "s", "secret_key": "k", "agent_experiment_id": " "}
    assert cli_args(values) == ["-a", "-e", "123", "--volume-path", "/Volumes/a/b/c", "--max-iterations", "5",
                                "--secret-scope", "s", "--secret-key", "k", "--limit-stop-ok"]


# --- through the CLI ---------------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch):
    """Replace the autonomous runner: record the settings the CLI resolved."""
    seen: list[Settings] = []

    def run_autonomous(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setitem(sys.modules, "mlflow_eval_agent.runner", types.SimpleNamespace(run_autonomous=run_autonomous))
    return seen


def test_cli_on_databricks_reads_the_secret_and_never_prints_it(fake, captured, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.1")
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
    code = main(["-a", "-e", "42", "--volume-path", "/Volumes/c/s/v", "--secret-scope", "mlflow-eval-agent",
                 "--secret-key", "fm-api-token", "--agent-experiment-id=", "--anthropic-base-url="])
    assert code == 0
    (settings,) = captured
    assert settings.experiment_id == "42" and settings.agent_experiment_id is None
    assert settings.tracking_uri == "databricks"
    assert settings.access.base_url == f"{fake.url}/serving-endpoints/anthropic"
    assert settings.access.auth_token.get_secret_value() == TOKEN
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err


def test_cli_missing_secret_exits_2_with_one_sentence(fake, captured, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
    code = main(["-a", "-e", "42", "--secret-scope", "nope", "--secret-key", "k"])
    err = capsys.readouterr().err
    assert code == 2 and not captured
    assert err.startswith("Error: Cannot read the model token from secret scope 'nope'") and "Traceback" not in err


# --- a credential for the validation child -----------------------------------------------------
RUNTIME_TOKEN = "runtime-issued-short-lived-token-7f3a9c"


class RuntimeAuth:
    """Stands in for serverless compute's own auth: headers from the runtime, nothing in the environment."""

    def __init__(self, token: str = RUNTIME_TOKEN):
        self.token = token

    def auth_type(self) -> str:
        return "runtime"

    def __call__(self, cfg):
        return lambda: {"Authorization": f"Bearer {self.token}"}


def runtime_config(fake):
    from databricks.sdk.core import Config

    return lambda: Config(host=fake.url, credentials_strategy=RuntimeAuth())


def test_a_child_credential_is_derived_from_the_sdk_config_and_redacted(fake):
    from mlflow_eval_agent.databricks import child_credential
    from mlflow_eval_agent.redaction import NO_REDACTION, Redactor

    derived = child_credential("databricks", dict(ON_DATABRICKS), config_factory=runtime_config(fake))
    assert derived == {"DATABRICKS_HOST": fake.url, "DATABRICKS_TOKEN": RUNTIME_TOKEN}
    # Known to every redactor of this process from now on, those built before included.
    for redactor in (NO_REDACTION, Redactor(), Settings().redactor()):
        assert RUNTIME_TOKEN not in redactor.text(f"child said: token={RUNTIME_TOKEN}")
        assert RUNTIME_TOKEN not in str(redactor.data({"env": {"DATABRICKS_TOKEN": RUNTIME_TOKEN}}))


def test_no_credential_is_derived_when_the_child_has_one_or_needs_none(fake):
    from mlflow_eval_agent.databricks import child_credential

    config = runtime_config(fake)
    assert child_credential("databricks", {"DATABRICKS_TOKEN": "dapi-own"}, config_factory=config) == {}
    assert child_credential("databricks", {"DATABRICKS_CLIENT_ID": "id", "DATABRICKS_CLIENT_SECRET": "s"}, config_factory=config) == {}
    for uri in ("sqlite:///x.db", "http://localhost:5000", "databricks://my-profile", None):
        assert child_credential(uri, {}, config_factory=config) == {}

    def broken():
        raise ValueError("default auth: cannot configure default credentials")

    assert child_credential("databricks", {}, config_factory=broken) == {}


@pytest.mark.slow
def test_the_validation_child_reaches_the_workspace_with_the_derived_credential(fake, monkeypatch):
    """Serverless: no DATABRICKS_HOST/TOKEN anywhere; the child authenticates with what the parent derived."""
    from mlflow_eval_agent import databricks
    from mlflow_eval_agent.child import child_env, run_child

    fake.extra_tokens.add(RUNTIME_TOKEN)
    fake.add_experiment("7", "support-agent")
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.1")
    code = "from mlflow import MlflowClient; print(MlflowClient('databricks').get_experiment('7').name)"

    monkeypatch.setattr(databricks, "sdk_config", runtime_config(fake))
    env = child_env("databricks")
    assert env["DATABRICKS_HOST"] == fake.url and env["DATABRICKS_TOKEN"] == RUNTIME_TOKEN
    result = run_child(["-c", code], timeout_s=180, env=env)
    assert result.returncode == 0, result.tail()
    assert result.stdout.strip().splitlines()[-1] == "support-agent"
    assert [r.authorized for r in fake.calls("GET", "/api/2.0/mlflow/experiments/get")] == [True]

    # Without the derived credential the same child cannot authenticate: what serverless did before.
    def nothing():
        raise ValueError("default auth: cannot configure default credentials")

    monkeypatch.setattr(databricks, "sdk_config", nothing)
    bare = child_env("databricks")
    assert "DATABRICKS_TOKEN" not in bare
    failed = run_child(["-c", code], timeout_s=180, env=bare)
    assert failed.returncode != 0


# --- Foundation Model API: coding-agent header, model aliases, a token that refreshes ----------
def test_the_fm_api_gets_the_coding_agent_header_and_the_model_aliases():
    settings = Settings(model="databricks-claude-sonnet-4-5", access=ModelAccess(auth_token=SecretStr(TOKEN)))
    env = adapt_settings(settings, {**ON_DATABRICKS, "DATABRICKS_HOST": "https://adb-9.net"}, client_factory=no_client).access.cli_env()
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "x-databricks-use-coding-agent-mode: true"
    assert env["ANTHROPIC_DEFAULT_OPUS_MODEL"] == env["ANTHROPIC_DEFAULT_SONNET_MODEL"] == env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "databricks-claude-sonnet-4-5"
    # Off Databricks too, whenever the gateway is the FM API (here from ANTHROPIC_BASE_URL).
    local = Settings(model="databricks-claude-opus-4-1", access=ModelAccess(auth_token=SecretStr(TOKEN), base_url="https://adb-9.net/serving-endpoints/anthropic/"))
    assert adapt_settings(local, {}, client_factory=no_client).access.cli_env()["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "databricks-claude-opus-4-1"
    # Another gateway gets neither; no model means the header only.
    other = Settings(model="claude-sonnet-4-5", access=ModelAccess(auth_token=SecretStr(TOKEN), base_url="https://gateway.example/anthropic"))
    assert "ANTHROPIC_CUSTOM_HEADERS" not in adapt_settings(other, {}, base_url="https://gateway.example/anthropic", client_factory=no_client).access.cli_env()
    bare = adapt_settings(Settings(access=ModelAccess(auth_token=SecretStr(TOKEN))), {**ON_DATABRICKS, "DATABRICKS_HOST": "h"}, client_factory=no_client)
    assert "ANTHROPIC_DEFAULT_HAIKU_MODEL" not in bare.access.cli_env() and "ANTHROPIC_CUSTOM_HEADERS" in bare.access.cli_env()


def test_model_auth_job_uses_the_jobs_own_credentials_through_a_token_command(fake, tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    settings = Settings(model="databricks-claude-sonnet-4-5", model_auth="job", secret_scope="mlflow-eval-agent", secret_key="fm-api-token")
    adapted = adapt_settings(settings, ON_DATABRICKS, client_factory=fake.client)
    access = adapted.access
    assert access.kind == "token-command" and access.auth_token is None and access.configured
    assert access.base_url == f"{fake.url}/serving-endpoints/anthropic"
    assert not fake.calls("GET", "/api/2.0/secrets/get"), "with the job's identity no secret is read"
    env = access.cli_env()
    assert env["ANTHROPIC_AUTH_TOKEN"] == "" and env["ANTHROPIC_API_KEY"] == "" and env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] == "1"
    assert access.cli_settings() == {"apiKeyHelper": access.token_command}
    # The command holds no token; run as Claude Code runs it (/bin/sh), it prints the job's current one.
    assert fake.token not in access.token_command and fake.token not in adapted.model_dump_json()
    printed = subprocess.run(["/bin/sh", "-c", access.token_command], capture_output=True, text=True, timeout=30, env={})
    assert printed.returncode == 0 and printed.stdout == fake.token
    assert fake.token not in Settings().redactor().text(f"header {fake.token}")


def test_a_token_feed_hands_out_what_its_source_holds_now(tmp_path, monkeypatch):
    import subprocess

    from mlflow_eval_agent.token_feed import TokenFeed

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    current = ["first-token-0123456789"]
    feed = TokenFeed(lambda: current[0]).start()
    try:
        assert (feed.path.parent.stat().st_mode & 0o077) == 0  # only this user reaches the socket
        run = lambda: subprocess.run(["/bin/sh", "-c", feed.command()], capture_output=True, text=True, timeout=30)  # noqa: E731
        assert run().stdout == "first-token-0123456789"
        current[0] = "refreshed-token-9876543210"
        assert run().stdout == "refreshed-token-9876543210"
        current[0] = ""
        failed = run()
        assert failed.returncode != 0 and "no token" in failed.stderr
    finally:
        feed.stop()
    assert not feed_path_exists(feed)


def feed_path_exists(feed) -> bool:
    try:
        return feed.path.exists()
    except AssertionError:  # stopped: the folder is gone
        return False

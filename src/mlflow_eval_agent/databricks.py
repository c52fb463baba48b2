"""Running on Databricks: runtime detection, the model token from a secret scope, the Foundation
Model API URL, a writable Claude Code config folder, an event loop that works in notebooks, and a
short-lived credential for the child process that validates a suite against the workspace's store.

Settings are adapted in one place, `adapt_settings()`, called once by the CLI after flags, the
environment and defaults are resolved. The token is read here, in code, and kept as a `SecretStr`:
it never travels as a job parameter, widget default, log line, trace attribute or error message.
`databricks-sdk` is imported only when needed (`import databricks.sdk.runtime` raises off-cluster).
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from .aio import run_sync as run_coroutine  # one implementation; re-exported for notebook callers
from .redaction import remember
from .settings import ConfigError, Settings, read_environment

T = TypeVar("T")

RUNTIME_VERSION_VAR = "DATABRICKS_RUNTIME_VERSION"
DATABRICKS_TRACKING_URI = "databricks"
FM_API_PATH = "/serving-endpoints/anthropic"
FM_API_HEADERS = "x-databricks-use-coding-agent-mode: true"

# Optional text settings where an empty value means "not set": job parameters and notebook widgets
# always pass something, so an empty `--agent-experiment-id=` must not turn into an experiment "".
_BLANK_MEANS_UNSET = (
    "experiment_id",
    "session_id",
    "model",
    "tracking_uri",
    "agent_experiment_id",
    "secret_scope",
    "secret_key",
    "model_auth",
)


def on_databricks(env: Mapping[str, str]) -> bool:
    """True inside Databricks compute (clusters, serverless jobs and notebooks)."""
    return bool(env.get(RUNTIME_VERSION_VAR, "").strip())


def fm_api_base_url(host: str) -> str:
    """`https://<workspace-host>/serving-endpoints/anthropic` for a workspace host or URL."""
    host = host.strip().rstrip("/")
    if not host:
        raise ConfigError("The Databricks workspace host is unknown: set DATABRICKS_HOST or --anthropic-base-url.")
    if "://" not in host:
        host = f"https://{host}"
    return f"{host}{FM_API_PATH}"


def is_fm_api(url: str | None) -> bool:
    """True for a Databricks Foundation Model API URL (`.../serving-endpoints/anthropic`)."""
    return bool(url) and url.strip().rstrip("/").endswith(FM_API_PATH)


def fm_api_env(model: str | None) -> dict[str, str]:
    """What Databricks' own Claude Code setups send to the Foundation Model API: the coding-agent
    header, and the serving endpoint for each model alias Claude Code uses (background calls name
    the haiku or opus alias; the gateway serves only its endpoints)."""
    env = {"ANTHROPIC_CUSTOM_HEADERS": FM_API_HEADERS}
    if model:
        env |= {f"ANTHROPIC_DEFAULT_{alias}_MODEL": model for alias in ("OPUS", "SONNET", "HAIKU")}
    return env


def job_token_command(config: Callable[[], Any]) -> str:
    """The apiKeyHelper command for the job's own identity: a token feed (token_feed.py) in this
    process answering with a bearer token from `config()` (a Databricks SDK config, which refreshes
    its OAuth tokens itself). The feed lives as long as this process."""
    from .token_feed import TokenFeed, TokenFeedError

    def token() -> str:
        scheme, _, value = str((config().authenticate() or {}).get("Authorization", "")).partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""

    try:
        feed = TokenFeed(token).start()
    except TokenFeedError as exc:
        raise ConfigError(f"{exc} Use --secret-scope/--secret-key for the model token instead.") from None
    atexit.register(feed.stop)
    return feed.command()


def workspace_client() -> Any:
    """A `WorkspaceClient` from the standard Databricks auth chain, or a ConfigError saying what to set."""
    from databricks.sdk import WorkspaceClient

    try:
        return WorkspaceClient()
    except Exception as exc:  # the SDK raises ValueError for every kind of missing configuration
        raise ConfigError(
            f"Cannot connect to Databricks ({_reason(exc)}). Run on Databricks, or set DATABRICKS_HOST and "
            "DATABRICKS_TOKEN (or DATABRICKS_CONFIG_PROFILE for a profile in ~/.databrickscfg)."
        ) from None


def notebook_dbutils() -> Any | None:
    """The `dbutils` of the running notebook, when there is one."""
    try:
        import IPython
    except ImportError:
        return None
    shell = IPython.get_ipython()
    return None if shell is None else shell.user_ns.get("dbutils")


def read_secret(
    scope: str,
    key: str,
    *,
    dbutils: Any | None = None,
    client_factory: Callable[[], Any] = workspace_client,
) -> SecretStr:
    """Read a secret: the notebook's dbutils when available, else `WorkspaceClient().dbutils`
    (the runtime's dbutils on a cluster, the Secrets API off it)."""
    try:
        utils = dbutils or notebook_dbutils() or client_factory().dbutils
        value = utils.secrets.get(scope, key)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"Cannot read the model token from secret scope {scope!r}, key {key!r} ({_reason(exc)}). "
            f"Create it with `databricks secrets put-secret {scope} {key}` and give the identity that runs "
            "the job READ permission on the scope."
        ) from None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"The secret {scope}/{key} is empty: store the model token in it.")
    return SecretStr(value.strip())


def workspace_host(env: Mapping[str, str], client_factory: Callable[[], Any] = workspace_client) -> str:
    """The workspace URL: DATABRICKS_HOST, else what the SDK's auth chain resolved."""
    host = env.get("DATABRICKS_HOST", "").strip()
    if host:
        return host
    host = getattr(client_factory().config, "host", None) or ""
    if not host:
        raise ConfigError("The Databricks workspace host is unknown: set DATABRICKS_HOST or --anthropic-base-url.")
    return host


def sdk_config() -> Any:
    """A fresh Databricks SDK config from the standard auth chain (the runtime's own on Databricks)."""
    from databricks.sdk.core import Config

    return Config()


def child_credential(
    tracking_uri: str | None,
    env: Mapping[str, str] | None = None,
    *,
    config_factory: Callable[[], Any] | None = None,
) -> dict[str, str]:
    """DATABRICKS_HOST and a short-lived DATABRICKS_TOKEN for a child process that uses the
    workspace's tracking store (`databricks`), derived from this process's Databricks SDK config.

    Serverless compute authenticates this process through the runtime, and that does not reach a
    child: it inherits no DATABRICKS_HOST/TOKEN. A fresh SDK config yields a bearer token (the
    runtime's own, or a new OAuth token, which lasts an hour); it goes into that child's
    environment only, never into a log, a file or a job parameter, and is remembered by this
    process's redaction, so it is scrubbed from the child's output we store.

    Empty when the environment already carries a credential for the child (a token, or an OAuth
    client id and secret), for other stores and `databricks://<profile>`, and when no credential
    can be derived (the child then reports the missing credential itself).
    """
    env = os.environ if env is None else env
    if (tracking_uri or "").strip().lower() != DATABRICKS_TRACKING_URI:
        return {}
    if env.get("DATABRICKS_TOKEN") or (env.get("DATABRICKS_CLIENT_ID") and env.get("DATABRICKS_CLIENT_SECRET")):
        return {}
    try:
        config = (config_factory or sdk_config)()
        headers = config.authenticate() or {}
        host = (getattr(config, "host", None) or "").strip()
    except Exception:  # no credential here either: the child's own error says what is missing
        return {}
    scheme, _, token = str(headers.get("Authorization", "")).partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not host:
        return {}
    remember(token.strip())
    return {"DATABRICKS_HOST": host, "DATABRICKS_TOKEN": token.strip()}


def with_child_credential(tracking_uri: str | None, base: Mapping[str, str] | None = None, **kwargs: Any) -> Mapping[str, str]:
    """`base` (default: our environment) plus `child_credential()`, for `child.child_env(base=...)`."""
    base = os.environ if base is None else base
    derived = child_credential(tracking_uri, base, **kwargs)
    return {**base, **derived} if derived else base


def claude_config_dir(base: str | Path | None = None) -> str:
    """A private, writable local folder for Claude Code's config (the CLI hangs on a read-only one).

    Stable per user, so repeated runs on one machine reuse it; never the workspace or a volume.
    """
    root = Path(base) if base else Path(tempfile.gettempdir())
    path = root / f"mlflow-eval-agent-{_user_tag()}" / "claude-config"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"Cannot create a writable Claude Code config folder at {path} ({exc.strerror}).") from None
    return str(path)


def adapt_settings(
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
    dbutils: Any | None = None,
    client_factory: Callable[[], Any] = workspace_client,
) -> Settings:
    """Settings for Databricks, returned as a new object (the input is not changed).

    Always: empty optional values become unset. On Databricks, or when a secret scope/key or
    `--model-auth job` is given: tracking URI `databricks` (unless one is set), the model token (from
    the secret scope; with `job`, fetched afresh by Claude Code from this process's own Databricks
    credentials) with the Foundation Model API URL (`base_url`, else ANTHROPIC_BASE_URL, else derived
    from the workspace host), and a writable Claude Code config folder. `base_url`
    (--anthropic-base-url) always wins. Whenever the gateway is the Foundation Model API: its
    coding-agent header and the model aliases mapped to the serving endpoint (`--model`).
    """
    env = read_environment() if env is None else env
    settings = _blank_to_unset(settings)
    base_url = (base_url or "").strip() or None
    databricks = on_databricks(env)
    wants_job = settings.model_auth == "job"
    wants_secret = bool(settings.secret_scope or settings.secret_key) and not wants_job
    if not (databricks or wants_secret or wants_job or base_url or is_fm_api(settings.access.base_url)):
        return settings

    client = _once(client_factory)
    update: dict[str, Any] = {}
    access = settings.access
    if base_url:
        access = access.model_copy(update={"base_url": base_url})
    if wants_job and not settings.offline:
        # The job's own identity, with a token Claude Code fetches afresh (it outlives a 1-hour OAuth token).
        url = access.base_url or fm_api_base_url(workspace_host(env, client))
        command = job_token_command(lambda: client().config)
        access = access.model_copy(update={"token_command": command, "base_url": url, "auth_token": None, "api_key": None})
    elif wants_secret and not settings.offline:
        if not (settings.secret_scope and settings.secret_key):
            raise ConfigError(
                "Give both --secret-scope and --secret-key (or EVAL_AGENT_SECRET_SCOPE and EVAL_AGENT_SECRET_KEY) "
                "to read the model token from a Databricks secret."
            )
        token = read_secret(settings.secret_scope, settings.secret_key, dbutils=dbutils, client_factory=client)
        url = access.base_url or fm_api_base_url(workspace_host(env, client))
        access = access.model_copy(update={"auth_token": token, "base_url": url, "api_key": None})
    elif databricks and access.auth_token and not access.base_url:
        access = access.model_copy(update={"base_url": fm_api_base_url(workspace_host(env, client))})
    if access.base_url and is_fm_api(access.base_url):
        access = access.model_copy(update={"gateway_env": fm_api_env(settings.model)})
    if access is not settings.access:
        update["access"] = access
    if databricks or wants_secret or wants_job:
        if settings.tracking_uri is None:
            update["tracking_uri"] = DATABRICKS_TRACKING_URI
        if settings.claude_config_dir is None:
            update["claude_config_dir"] = claude_config_dir()
    return settings.model_copy(update=update)


def cli_args(values: Mapping[str, str]) -> list[str]:
    """The CLI arguments for an autonomous run from notebook widget values (names as in the bundle).

    Empty optional values are left out, so the CLI applies its own defaults. `--limit-stop-ok` as in
    the wheel job: a stop at --max-iterations or --max-budget-usd ends the notebook normally (the
    summary says so), so the job does not retry it.
    """
    argv = ["-a", "-e", values.get("experiment_id", "").strip()]
    for name, flag in _WIDGET_FLAGS:
        value = values.get(name, "").strip()
        if value:
            argv += [flag, value]
    return argv + ["--limit-stop-ok"]


_WIDGET_FLAGS = (
    ("session_id", "--session-id"),
    ("volume_path", "--volume-path"),
    ("max_iterations", "--max-iterations"),
    ("max_budget_usd", "--max-budget-usd"),
    ("model", "--model"),
    ("agent_experiment_id", "--agent-experiment-id"),
    ("secret_scope", "--secret-scope"),
    ("secret_key", "--secret-key"),
    ("anthropic_base_url", "--anthropic-base-url"),
    ("model_auth", "--model-auth"),
)


def _blank_to_unset(settings: Settings) -> Settings:
    blanks = {name: None for name in _BLANK_MEANS_UNSET if isinstance(getattr(settings, name), str) and not getattr(settings, name).strip()}
    return settings.model_copy(update=blanks) if blanks else settings


def _once(factory: Callable[[], T]) -> Callable[[], T]:
    """The factory, called at most once (one WorkspaceClient for the secret and the host)."""
    made: list[T] = []

    def get() -> T:
        if not made:
            made.append(factory())
        return made[0]

    return get


def _user_tag() -> str:
    try:
        return str(os.getuid())
    except AttributeError:  # Windows
        return "user"


def _reason(exc: BaseException) -> str:
    """A short, single-line reason for an SDK error (its messages never contain secret values)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(". Config:")[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


__all__ = [
    "adapt_settings",
    "fm_api_env",
    "is_fm_api",
    "job_token_command",
    "child_credential",
    "claude_config_dir",
    "cli_args",
    "fm_api_base_url",
    "on_databricks",
    "read_secret",
    "run_coroutine",
    "sdk_config",
    "with_child_credential",
    "workspace_client",
    "workspace_host",
]

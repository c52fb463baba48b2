"""One settings object, resolved once: command-line flags > environment (and `.env`) > defaults.

Nothing else in the package reads `os.environ` for configuration; the resolved `Settings` is passed
down. Secrets are held as `SecretStr` so they never print, log or serialise by accident.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .redaction import Redactor, credential_name, credential_values

DEFAULT_VOLUME_PATH = ".eval-agent"
DEFAULT_MAX_ITERATIONS = 20
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_BUDGET_USD = 10.0

# Variables that route Claude Code to Bedrock or Vertex; passed through to the CLI untouched.
PROVIDER_PASSTHROUGH = (
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
)

# Claude Code's own retry/timeout knobs, passed through when set (tests make them small).
CLI_TUNING = ("CLAUDE_CODE_MAX_RETRIES", "API_TIMEOUT_MS", "CLAUDE_CODE_OVERLOADED_RETRY_MAX_WAIT_MS")

# Environment variable per setting (first one set wins).
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "experiment_id": ("MLFLOW_EXPERIMENT_ID",),
    "session_id": ("EVAL_AGENT_SESSION_ID",),
    "volume_path": ("EVAL_AGENT_VOLUME_PATH", "VOLUME_PATH"),
    "max_iterations": ("EVAL_AGENT_MAX_ITERATIONS",),
    "max_attempts": ("EVAL_AGENT_MAX_ATTEMPTS",),
    "max_budget_usd": ("EVAL_AGENT_MAX_BUDGET_USD",),
    "model": ("MODEL", "ANTHROPIC_MODEL"),
    "tracking_uri": ("MLFLOW_TRACKING_URI",),
    "agent_experiment_id": ("MLFLOW_AGENT_EXPERIMENT_ID",),
    "secret_scope": ("EVAL_AGENT_SECRET_SCOPE",),
    "secret_key": ("EVAL_AGENT_SECRET_KEY",),
    "api_retry_wait_s": ("EVAL_AGENT_API_RETRY_WAIT_S",),
    "limit_stop_ok": ("EVAL_AGENT_LIMIT_STOP_OK",),
    "model_auth": ("EVAL_AGENT_MODEL_AUTH",),
    "trace_location": ("EVAL_AGENT_TRACE_LOCATION",),
    "sql_warehouse_id": ("MLFLOW_TRACING_SQL_WAREHOUSE_ID",),
}

# Traces stored in Unity Catalog are addressed as <catalog>.<schema> or <catalog>.<schema>.<table_prefix>.
UC_TRACE_LOCATION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*){1,2}$")
SQL_WAREHOUSE_VAR = "MLFLOW_TRACING_SQL_WAREHOUSE_ID"


# `.env` entries that are ordinary settings, not secrets: every other value the file holds is redacted
# wherever text leaves the process (credential-named variables are redacted whatever their origin).
ORDINARY_KEYS = frozenset({
    *(name for names in ENV_NAMES.values() for name in names),
    *CLI_TUNING,
    "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "MLFLOW_GENAI_JUDGE_DEFAULT_MODEL",
    "DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_RUNTIME_VERSION",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "ANTHROPIC_VERTEX_PROJECT_ID", "CLOUD_ML_REGION",
})
ORDINARY_PREFIXES = ("CLAUDE_CODE_", "EVAL_AGENT_", "MLFLOW_", "DISABLE_", "OTEL_")
ORDINARY_SUFFIXES = ("_MODEL", "_HOST", "_REGION", "_PROFILE", "_PATH", "_DIR", "_PORT", "_LEVEL")
_ORDINARY_VALUE = re.compile(r"(?i)^(?:true|false|yes|no|on|off|none|null|[+-]?\d+(?:\.\d+)?)$|^(?:/|\./|\.\./|~|[A-Za-z]:\\)")


class ConfigError(Exception):
    """A user configuration mistake; the message says what to change. Exit code 2."""


class ModelAccess(BaseModel):
    """How Claude Code reaches a model. Secrets stay wrapped until `cli_env()` hands them over."""

    model_config = ConfigDict(frozen=True)

    api_key: SecretStr | None = None
    base_url: str | None = None
    auth_token: SecretStr | None = None
    passthrough: dict[str, SecretStr] = Field(default_factory=dict)
    # A shell command that prints a fresh bearer token, run by Claude Code as its `apiKeyHelper`
    # (again every few minutes and after a 401): for tokens that expire, e.g. a Databricks job's own.
    # The command holds no secret; it asks this process for one (token_feed.py).
    token_command: str | None = None
    # Non-secret variables the gateway needs: for the Databricks Foundation Model API its coding-agent
    # header and the model names Claude Code uses for its opus/sonnet/haiku aliases.
    gateway_env: dict[str, str] = Field(default_factory=dict)

    @property
    def uses_provider(self) -> bool:
        return any(k in self.passthrough for k in ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"))

    @property
    def configured(self) -> bool:
        return bool(self.api_key or self.auth_token or self.token_command or self.uses_provider)

    @property
    def kind(self) -> str:
        if self.uses_provider:
            return "bedrock" if "CLAUDE_CODE_USE_BEDROCK" in self.passthrough else "vertex"
        if self.token_command:
            return "token-command"
        if self.auth_token:
            return "auth-token"
        return "api-key" if self.api_key else "none"

    def cli_env(self) -> dict[str, str]:
        """Environment for the Claude Code subprocess (the only place secrets are unwrapped)."""
        env = {k: v.get_secret_value() for k, v in self.passthrough.items()}
        if self.base_url:
            env["ANTHROPIC_BASE_URL"] = self.base_url
        if self.token_command:
            # The token comes from the apiKeyHelper (cli_settings); nothing static may compete with it.
            env |= {"ANTHROPIC_AUTH_TOKEN": "", "ANTHROPIC_API_KEY": "", "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1"}
        elif self.auth_token:
            env["ANTHROPIC_AUTH_TOKEN"] = self.auth_token.get_secret_value()
            # A gateway such as the Databricks Foundation Model API rejects the CLI's beta headers.
            env["CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS"] = "1"
            env["ANTHROPIC_API_KEY"] = ""
        elif self.api_key:
            env["ANTHROPIC_API_KEY"] = self.api_key.get_secret_value()
        env.update(self.gateway_env)
        return env

    def cli_settings(self) -> dict[str, str]:
        """Claude Code settings (`--settings`) for this access: the apiKeyHelper, when there is one."""
        return {"apiKeyHelper": self.token_command} if self.token_command else {}

    def secret_values(self) -> list[str]:
        """Every secret string, for redaction of anything we print or store."""
        values = [s.get_secret_value() for s in (self.api_key, self.auth_token) if s]
        values += [v.get_secret_value() for k, v in self.passthrough.items() if _looks_secret(k)]
        return [v for v in values if len(v) >= 6]


def _looks_secret(name: str) -> bool:
    return any(w in name for w in ("KEY", "TOKEN", "SECRET", "CREDENTIALS"))


# Which variables show that a judge provider can be reached (MLflow's own names): any one of them.
# Rendered into every suite's run_eval.py, which checks them before running its judges.
JUDGE_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "azure": ("AZURE_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "mistral": ("MISTRAL_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "togetherai": ("TOGETHERAI_API_KEY",),
    "bedrock": ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ROLE_ARN"),
    "databricks": ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE"),
}
# What a provider's judge needs beside its credential (the rest of a key pair, endpoints, regions).
_JUDGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "azure": ("AZURE_API_BASE", "AZURE_API_VERSION"),
    "bedrock": ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"),
    "databricks": ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"),
}
# The environment a judge provider needs, and nothing else: only the chosen provider's variables
# reach the suite's child process.
JUDGE_PROVIDER_ENV: dict[str, tuple[str, ...]] = {p: (*names, *_JUDGE_SETTINGS.get(p, ())) for p, names in JUDGE_CREDENTIALS.items()}
DEFAULT_ANTHROPIC_JUDGE = "claude-sonnet-4-5"
DEFAULT_DATABRICKS_JUDGE = "databricks-claude-sonnet-4-5"
MLFLOW_DEFAULT_JUDGE = "openai:/gpt-4.1-mini"
NO_JUDGE = (
    "no judge model is configured: pass --judge-model (or set MLFLOW_GENAI_JUDGE_DEFAULT_MODEL), e.g. "
    f"anthropic:/{DEFAULT_ANTHROPIC_JUDGE} with ANTHROPIC_API_KEY set"
)


class JudgeAccess(BaseModel):
    """The judge model for the suite's LLM judges and the environment its provider needs."""

    model_config = ConfigDict(frozen=True)

    model: str | None = Field(None, description="e.g. anthropic:/claude-sonnet-4-5; None: no judge model (judges are skipped).")
    source: str = Field("", description="Where the choice came from, for messages.")
    env: dict[str, SecretStr] = Field(default_factory=dict, description="The provider's variables, for the suite's child only.")

    @property
    def provider(self) -> str | None:
        return self.model.split(":", 1)[0].strip().lower() if self.model else None

    @property
    def skip_reason(self) -> str | None:
        """Why the judges cannot run, or None when they can be tried."""
        if self.model is None:
            return NO_JUDGE
        needed = JUDGE_PROVIDER_ENV.get(self.provider or "", ())
        if self.provider not in ("databricks", "endpoints") and needed and not any(n in self.env for n in needed[:1]):
            return f"judge model {self.model!r} ({self.source}) needs {needed[0]}, which is not set"
        return None

    def child_env(self) -> dict[str, str]:
        """The variables handed to the suite's child process (the only place they are unwrapped)."""
        return {k: v.get_secret_value() for k, v in self.env.items()}


def judge_access_from(flag: str | None, env: Mapping[str, str], access: ModelAccess, model: str | None, tracking_uri: str | None) -> JudgeAccess:
    """--judge-model, else MLFLOW_GENAI_JUDGE_DEFAULT_MODEL, else the agent's own provider when its
    credential exists (the Databricks serving endpoint on Databricks, Anthropic with ANTHROPIC_API_KEY),
    else MLflow's default (OpenAI) when OPENAI_API_KEY is set, else none."""
    def pick(provider: str) -> dict[str, SecretStr]:
        return {n: SecretStr(env[n]) for n in JUDGE_PROVIDER_ENV.get(provider, ()) if env.get(n, "").strip()}

    explicit = (flag or "").strip() or env.get("MLFLOW_GENAI_JUDGE_DEFAULT_MODEL", "").strip()
    if explicit:
        source = "--judge-model" if (flag or "").strip() else "MLFLOW_GENAI_JUDGE_DEFAULT_MODEL"
        return JudgeAccess(model=explicit, source=source, env=pick(explicit.split(":", 1)[0].strip().lower()))
    on_databricks = bool(env.get("DATABRICKS_RUNTIME_VERSION", "").strip()) or str(tracking_uri or "").startswith("databricks")
    if on_databricks:
        endpoint = model if model and model.startswith("databricks-") else DEFAULT_DATABRICKS_JUDGE
        return JudgeAccess(model=f"databricks:/{endpoint}", source="the Databricks serving endpoint", env=pick("databricks"))
    gateway = re.match(r"^(https://[^/]+)/serving-endpoints/", access.base_url or "")
    if gateway and access.auth_token:  # the agent reaches Claude through a workspace's serving endpoint
        endpoint = model if model and model.startswith("databricks-") else DEFAULT_DATABRICKS_JUDGE
        return JudgeAccess(model=f"databricks:/{endpoint}", source="the agent's Databricks serving endpoint",
                           env={"DATABRICKS_HOST": SecretStr(gateway.group(1)), "DATABRICKS_TOKEN": access.auth_token})
    if access.api_key:
        name = model if model and model.startswith("claude") else DEFAULT_ANTHROPIC_JUDGE
        return JudgeAccess(model=f"anthropic:/{name}", source="the agent's Anthropic credential", env={"ANTHROPIC_API_KEY": access.api_key})
    if env.get("OPENAI_API_KEY", "").strip():
        return JudgeAccess(model=MLFLOW_DEFAULT_JUDGE, source="MLflow's default judge (OPENAI_API_KEY is set)", env=pick("openai"))
    return JudgeAccess(source="none configured")


class Settings(BaseModel):
    """Everything a run needs to know, resolved once."""

    model_config = ConfigDict(frozen=True)

    experiment_id: str | None = None
    session_id: str | None = None
    volume_path: str = DEFAULT_VOLUME_PATH
    max_iterations: int = Field(DEFAULT_MAX_ITERATIONS, ge=1)
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1)
    max_budget_usd: float | None = Field(DEFAULT_MAX_BUDGET_USD, gt=0)
    model: str | None = None
    tracking_uri: str | None = None
    agent_experiment_id: str | None = None
    verbose: bool = False
    allow_annotate: bool = False
    offline: bool = False
    # A stop at --max-iterations or --max-budget-usd exits 0 instead of 3 (the bundle's jobs set it,
    # so Databricks does not retry a run that reached its limits; the summary still says so).
    limit_stop_ok: bool = False
    secret_scope: str | None = None
    secret_key: str | None = None
    # How the model token is obtained on Databricks: "secret" (the secret scope, the default) or
    # "job" (the job's own identity, a token Claude Code fetches afresh; databricks.adapt_settings).
    model_auth: Literal["secret", "job"] | None = None
    access: ModelAccess = Field(default_factory=ModelAccess)
    # The suite's LLM judges: model and the provider variables handed to the suite (judge_access_from).
    judge: JudgeAccess = Field(default_factory=JudgeAccess)
    # Where Claude Code keeps its config for our runs; None means a private temp folder per run.
    claude_config_dir: str | None = None
    # First wait before a session that hit a model-API error is retried (doubles each time).
    api_retry_wait_s: float = Field(5.0, ge=0)
    # Extra environment for the Claude Code subprocess (its retry and timeout knobs).
    cli_env_extra: dict[str, str] = Field(default_factory=dict)
    # Secrets known by value beyond the model access: credential-named variables and `.env` values.
    known_secrets: tuple[SecretStr, ...] = ()
    # Traces stored in Unity Catalog: read from this location (`<catalog>.<schema>[.<table_prefix>]`)
    # instead of the experiment's own, through the SQL warehouse MLflow needs for UC reads
    # (MLFLOW_TRACING_SQL_WAREHOUSE_ID; `apply_tracing_environment` hands it to MLflow and the children).
    trace_location: str | None = None
    sql_warehouse_id: str | None = None

    @field_validator("model_auth", "sql_warehouse_id", mode="before")
    @classmethod
    def _blank_model_auth(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("trace_location", mode="before")
    @classmethod
    def _uc_trace_location(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not UC_TRACE_LOCATION.match(value.strip()):
            raise ValueError("a Unity Catalog trace location is <catalog>.<schema> or <catalog>.<schema>.<table_prefix>")
        return value.strip() if isinstance(value, str) else value

    @property
    def sessions_root(self) -> str:
        return f"{self.volume_path.rstrip('/')}/sessions"

    def redactions(self) -> list[str]:
        """Every secret value known to this run, for redaction of anything we print, store or send."""
        values = self.access.secret_values() + [s.get_secret_value() for s in self.known_secrets]
        password = _url_password(self.tracking_uri)
        return list(dict.fromkeys(values + ([password] if password else [])))

    def redactor(self) -> Redactor:
        return Redactor(self.redactions())


class Environment(dict[str, str]):
    """The merged environment, remembering what the `.env` file itself held (`dotenv`)."""

    def __init__(self, merged: Mapping[str, str], dotenv: Mapping[str, str] | None = None):
        super().__init__(merged)
        self.dotenv: dict[str, str] = dict(dotenv or {})


def read_environment(environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> Environment:
    """The process environment over a `.env` file (the environment wins, as with dotenv)."""
    dotenv: dict[str, str] = {}
    if dotenv_path and Path(dotenv_path).is_file():
        dotenv = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
    return Environment({**dotenv, **(os.environ if environ is None else environ)}, dotenv)


def ordinary_setting(name: str, value: str) -> bool:
    """True for `.env` entries that configure rather than authenticate (models, hosts, flags, paths)."""
    upper = name.upper()
    if credential_name(upper):
        return False
    return (
        upper in ORDINARY_KEYS
        or upper.startswith(ORDINARY_PREFIXES)
        or upper.endswith(ORDINARY_SUFFIXES)
        or bool(_ORDINARY_VALUE.match(value.strip()))
    )


def environment_secrets(env: Mapping[str, str]) -> list[str]:
    """Values to redact: credential-named variables, and what `.env` held unless an ordinary setting."""
    dotenv = env.dotenv if isinstance(env, Environment) else {}
    values = credential_values(env) + [v.strip() for k, v in dotenv.items() if not ordinary_setting(k, v)]
    return list(dict.fromkeys(v for v in values if v))


def _url_password(uri: str | None) -> str | None:
    try:
        return urlsplit(uri).password if uri and "@" in uri else None
    except ValueError:
        return None


def model_access_from_env(env: Mapping[str, str]) -> ModelAccess:
    def secret(name: str) -> SecretStr | None:
        value = env.get(name, "").strip()
        return SecretStr(value) if value else None

    passthrough = {k: SecretStr(env[k]) for k in PROVIDER_PASSTHROUGH if env.get(k, "").strip()}
    return ModelAccess(
        api_key=secret("ANTHROPIC_API_KEY"),
        base_url=env.get("ANTHROPIC_BASE_URL", "").strip() or None,
        auth_token=secret("ANTHROPIC_AUTH_TOKEN"),
        passthrough=passthrough,
    )


def apply_tracing_environment(settings: Settings, environ: Any = None) -> None:
    """Hand the SQL warehouse to MLflow, which reads it from the environment only (and so do the
    validation children: child.py passes MLFLOW_TRACING_SQL_WAREHOUSE_ID to the workspace's store)."""
    environ = os.environ if environ is None else environ
    if settings.sql_warehouse_id:
        environ[SQL_WAREHOUSE_VAR] = settings.sql_warehouse_id


def resolve_settings(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Merge flags (None = not given) over the environment over defaults, and validate."""
    env = read_environment() if env is None else env
    values: dict[str, Any] = {}
    for field, names in ENV_NAMES.items():
        found = next((env[n] for n in names if env.get(n, "").strip()), None)
        if found is not None:
            values[field] = found.strip()
    judge_flag = flags.get("judge_model")
    values.update({k: v for k, v in flags.items() if v is not None and k != "judge_model"})
    values.setdefault("access", model_access_from_env(env))
    values.setdefault("judge", judge_access_from(judge_flag, env, values["access"], values.get("model"), values.get("tracking_uri")))
    values.setdefault("cli_env_extra", {k: env[k] for k in CLI_TUNING if env.get(k, "").strip()})
    values.setdefault("known_secrets", tuple(SecretStr(v) for v in environment_secrets(env)))
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"Invalid setting ({problems}). Check the flags and your .env file.") from None
    return with_trace_location(settings, flags)


def with_trace_location(settings: Settings, flags: Mapping[str, Any]) -> Settings:
    """Traces stored in Unity Catalog, for every command (analyze, -a, validate): with no experiment
    given, the location takes the experiment's place (MLflow searches `locations=[<catalog>.<schema>...]`);
    with one (flag or environment), the experiment is kept: it is the one bound to that location, read
    through the workspace's binding and the one the evaluation run is logged to, and the location names
    its tables (the Spark engine reads them directly)."""
    if settings.trace_location and not settings.experiment_id:
        return settings.model_copy(update={"experiment_id": settings.trace_location})
    return settings


def needs_experiment_for_runs(settings: Settings) -> str | None:
    """Why a command that logs an evaluation run cannot run on these settings (None when it can)."""
    if settings.trace_location and settings.experiment_id == settings.trace_location:
        return ("--trace-location needs -e/--experiment-id too for a suite: the evaluation run is logged to an experiment "
                "(pass the one bound to that location).")
    return None


MISSING_CREDENTIALS = (
    "No Claude credential found. Set ANTHROPIC_API_KEY, or ANTHROPIC_BASE_URL with "
    "ANTHROPIC_AUTH_TOKEN (e.g. the Databricks Foundation Model API), or CLAUDE_CODE_USE_BEDROCK / "
    "CLAUDE_CODE_USE_VERTEX with their cloud settings - see .env.example. "
    "To build a suite without a model, add --offline."
)


def require_model_access(settings: Settings) -> None:
    """Fail before any session starts when no model can be reached."""
    if not settings.access.configured:
        raise ConfigError(MISSING_CREDENTIALS)
    if (settings.access.auth_token or settings.access.token_command) and not settings.access.base_url:
        raise ConfigError("ANTHROPIC_AUTH_TOKEN is set but ANTHROPIC_BASE_URL is not: set the gateway URL too.")

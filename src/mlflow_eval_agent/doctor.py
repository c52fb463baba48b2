"""`doctor`: what a first run on a real workspace needs, checked one point at a time, each with a
verdict and, when it fails, the fix. Nothing here builds a suite or starts an agent session.

Points: the model token's secret (when one is configured), reading a few traces with their spans
from the store (each batch get at its location), the validation child reaching the same store
with the credential it would get, one small model request through the configured gateway (its
headers and token as Claude Code would send them), and writing and reading back a file in the
session volume. A point that cannot apply is skipped with the reason.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

from .child import child_env, run_child
from .settings import Settings
from .store import StoreError, open_session_store

Verdict = Literal["ok", "fail", "skipped"]
SAMPLE_TRACES = 10
CHILD_TIMEOUT_S = 180.0
MODEL_TIMEOUT_S = 60.0
DOCTOR_SESSION = "doctor-check"
DEFAULT_PROBE_MODEL = "claude-sonnet-4-5"


class Check(BaseModel):
    name: str
    verdict: Verdict
    detail: str
    fix: str | None = None


def run_checks(settings: Settings, secret_problem: str | None = None) -> list[Check]:
    """Every point, in the order a first run meets them. `secret_problem` is why reading the model
    token's secret failed while the settings were resolved (they were then resolved without it)."""
    redact = settings.redactor().text
    checks = [secret_check(settings, secret_problem)]
    for check in (traces_check, child_check, model_check, volume_check):
        try:
            checks.append(check(settings))
        except Exception as exc:  # a check must report, never stop the others
            checks.append(Check(name=check.__name__.removesuffix("_check"), verdict="fail", detail=f"{type(exc).__name__}: {exc}"))
    return [c.model_copy(update={"detail": redact(c.detail), "fix": redact(c.fix) if c.fix else None}) for c in checks]


def secret_check(settings: Settings, problem: str | None) -> Check:
    if problem:
        return Check(name="secret", verdict="fail", detail=problem, fix="Create the secret or grant READ on its scope (docs/databricks.md, step 2), or use --model-auth job.")
    if settings.secret_scope and settings.secret_key and settings.model_auth != "job":
        return Check(name="secret", verdict="ok", detail=f"read the model token from {settings.secret_scope}/{settings.secret_key}")
    return Check(name="secret", verdict="skipped", detail="no secret scope configured" + (" (--model-auth job)" if settings.model_auth == "job" else ""))


def traces_check(settings: Settings) -> Check:
    from .traces.api_reader import with_spans
    from .traces.source import TraceSourceError, mlflow_client, resolve_experiment

    if not settings.experiment_id:
        return Check(name="traces", verdict="fail", detail="no experiment given", fix="Pass -e/--experiment-id.")
    try:
        client = mlflow_client(settings.tracking_uri)
        ref = resolve_experiment(settings.tracking_uri, settings.experiment_id, client)
        page = client.search_traces(locations=[ref.experiment_id], max_results=SAMPLE_TRACES, include_spans=False)
        traces = with_spans(client.tracking_uri, page)
    except TraceSourceError as exc:
        return Check(name="traces", verdict="fail", detail=str(exc), fix="Check --experiment-id and --tracking-uri, and that this identity can read the experiment.")
    except Exception as exc:  # MLflow's own errors from the search or the batch get
        message = getattr(exc, "message", None) or str(exc)
        return Check(name="traces", verdict="fail", detail=_first_line(message), fix="Check that this identity can read the experiment's traces.")
    if not traces:
        return Check(name="traces", verdict="fail", detail=f"experiment {ref.name!r} ({ref.experiment_id}) has no traces", fix="Log traces into it first, or choose the experiment that has them.")
    spans = sum(len(t.data.spans) for t in traces)
    if spans == 0:
        return Check(name="traces", verdict="fail", detail=f"read {len(traces)} traces but none of their spans", fix="Check read access to the traces' location (for Unity Catalog traces, the tables and MLFLOW_TRACING_SQL_WAREHOUSE_ID).")
    return Check(name="traces", verdict="ok", detail=f"read {len(traces)} traces with {spans} spans from experiment {ref.name!r} ({ref.experiment_id})")


_CHILD_CODE = """
import sys
from mlflow import MlflowClient
page = MlflowClient().search_traces(locations=[sys.argv[1]], max_results=1, include_spans=False)
print("traces:", len(page))
"""


def child_check(settings: Settings) -> Check:
    """The validation child's environment (child.child_env), a one-trace search from it."""
    from .traces.source import effective_tracking_uri

    if not settings.experiment_id:
        return Check(name="validation child", verdict="skipped", detail="no experiment given")
    uri = effective_tracking_uri(settings.tracking_uri)
    result = run_child(["-c", _CHILD_CODE, str(settings.experiment_id)], timeout_s=CHILD_TIMEOUT_S, env=child_env(uri))
    if result.returncode == 0 and "traces:" in result.stdout:
        return Check(name="validation child", verdict="ok", detail=f"a least-privilege child read the store at {uri}")
    return Check(
        name="validation child", verdict="fail", detail=f"the child {result.exit_reason()}: {_first_line(result.tail(400))}",
        fix="The suite's validation would fail the same way: check the store's credentials a child gets (docs/databricks.md, 'How the jobs authenticate').",
    )


def model_check(settings: Settings, opener: Callable[..., object] = urllib.request.urlopen) -> Check:
    """One small Messages API request through the configured gateway, as Claude Code would send it."""
    access = settings.access
    if settings.offline:
        return Check(name="model", verdict="skipped", detail="--offline: no model is used")
    if access.uses_provider:
        return Check(name="model", verdict="skipped", detail=f"{access.kind}: not checked by doctor")
    if not access.configured:
        return Check(name="model", verdict="fail", detail="no model credential", fix="Set ANTHROPIC_API_KEY, or --secret-scope/--secret-key, or --model-auth job on Databricks.")
    base = (access.base_url or "https://api.anthropic.com").rstrip("/")
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    headers |= _custom_headers(access.gateway_env.get("ANTHROPIC_CUSTOM_HEADERS", ""))
    if access.token_command:
        token = subprocess.run(["/bin/sh", "-c", access.token_command], capture_output=True, text=True, timeout=60).stdout.strip()
        if not token:
            return Check(name="model", verdict="fail", detail="the token command gave no token", fix="Check this identity's Databricks credentials (the SDK's auth chain).")
        headers["authorization"] = f"Bearer {token}"
    elif access.auth_token:
        headers["authorization"] = f"Bearer {access.auth_token.get_secret_value()}"
    elif access.api_key:
        headers["x-api-key"] = access.api_key.get_secret_value()
    model = settings.model or DEFAULT_PROBE_MODEL
    body = json.dumps({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "Reply with OK."}]}).encode()
    request = urllib.request.Request(f"{base}/v1/messages", data=body, headers=headers, method="POST")
    try:
        with opener(request, timeout=MODEL_TIMEOUT_S):  # type: ignore[call-arg]
            pass
    except urllib.error.HTTPError as exc:
        return Check(name="model", verdict="fail", detail=f"{base} answered {exc.code} for model {model!r}: {_first_line(_error_text(exc))}", fix=_model_fix(exc.code))
    except (urllib.error.URLError, OSError) as exc:
        return Check(name="model", verdict="fail", detail=f"cannot reach {base}: {getattr(exc, 'reason', exc)}", fix="Check --anthropic-base-url (or ANTHROPIC_BASE_URL) and the network.")
    return Check(name="model", verdict="ok", detail=f"model {model!r} answered at {base}")


def volume_check(settings: Settings) -> Check:
    probe = "notes/doctor-probe.txt"
    try:
        store = open_session_store(settings.volume_path, DOCTOR_SESSION, settings.redactor())
        store.write_text(probe, "written by mlflow-eval-agent doctor\n")
        fresh = open_session_store(settings.volume_path, DOCTOR_SESSION, settings.redactor())  # read back what was stored
        if fresh.read_text(probe) is None:
            raise StoreError(f"the probe file written to {store.description} could not be read back")
    except StoreError as exc:
        return Check(name="volume", verdict="fail", detail=str(exc), fix="Create the volume and grant READ VOLUME and WRITE VOLUME to this identity (docs/databricks.md, step 1).")
    return Check(name="volume", verdict="ok", detail=f"wrote and read back {store.description}/{probe}")


def _custom_headers(text: str) -> dict[str, str]:
    """ANTHROPIC_CUSTOM_HEADERS: `Name: value` lines."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read().decode("utf-8", "replace")
        data = json.loads(raw)
        return str((data.get("error") or {}).get("message") or data.get("message") or raw)
    except Exception:
        return str(exc.reason)


def _model_fix(status: int) -> str:
    if status in (401, 403):
        return "The gateway refused the token: give this identity CAN QUERY on the serving endpoint, or store a valid token in the secret."
    if status == 404:
        return "No such model or endpoint: check --model (a serving endpoint name such as databricks-claude-sonnet-4-5) and the gateway URL."
    return "Retry later, or check the gateway's status."


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), str(text))[:300]

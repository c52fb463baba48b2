"""A local fake of the Databricks REST endpoints we use, for `WorkspaceClient(host=fake.url, token=...)`
and for MLflow's Databricks tracking store (`MLFLOW_TRACKING_URI=databricks`, `DATABRICKS_HOST=fake.url`).

Endpoints (the shapes databricks-sdk and mlflow 3.17's `DatabricksTracingRestStore` send and parse):
  Files API  PUT/GET/HEAD/DELETE /api/2.0/fs/files/<path>      upload (raw body, ?overwrite=), download
             PUT/GET/HEAD         /api/2.0/fs/directories/<path> create (with parents), list (paged), exists
  Secrets    GET /api/2.0/secrets/get?scope=&key=              value base64-encoded
  MLflow     GET  /api/2.0/mlflow/experiments/get?experiment_id=, /get-by-name?experiment_name=
             POST /api/4.0/mlflow/traces/search-long-running    trace infos (v4 protos), done at once, paged;
                  filters: none, `trace.timestamp_ms >= N`, `attributes.status = 'X'`; order by
                  timestamp (default) or `execution_time_ms DESC`
             GET  /api/4.0/mlflow/traces/<location>/batchGet?trace_ids=...  full traces (info + OTel
                  spans) stored at that location: an experiment id or `<catalog>.<schema>`; any other
                  location (`None`, say) is 404, as a workspace answers for a location it does not know
             GET  /api/{2,3}.0/mlflow/traces/<id>                   a trace's v3 info (experiment traces)
             GET  /api/2.0/mlflow/traces/<id>/credentials-for-data-download  a presigned URL for the spans of
                  a trace stored in the artifact repository (`spans="artifacts"`), served at /presigned/...
                  without a bearer token, as a cloud store answers
             POST /api/{2,3}.0/mlflow/traces/<id>/assessments, DELETE .../assessments/<assessment id>, PATCH .../tags,
                  POST /api/2.0/mlflow/traces/link-to-run
             POST /api/2.0/mlflow/runs/create|update|log-batch|log-parameter|log-metric|set-tag|delete-tag|log-inputs|outputs,
                  GET /api/2.0/mlflow/runs/get; run artifacts go through the Files API under
                  /WorkspaceInternal/Mlflow/Artifacts/<experiment>/Runs/<run>/artifacts (MLflow's SDK artifact repo)
             POST /api/2.0/agents/evaluation-client-usage-events   mlflow.genai.evaluate's usage event (accepted)
  SQL        GET  /api/2.0/sql/warehouses/<id>                   a warehouse's state (`warehouses`: id -> state)
             POST /api/2.0/sql/statements                        the Statement Execution API on a running warehouse:
                  the statement really runs, on the local SparkSession `sql_spark` (over the tables the spark
                  tests build); the result comes back as Databricks documents it for INLINE + JSON_ARRAY
                  (manifest.schema.columns with type_name/type_text, result.data_array of strings with JSON
                  null, arrays/maps/structs as JSON text), `statement_chunk_rows` rows per chunk
             GET  /api/2.0/sql/statements/<id>, .../result/chunks/<n>, POST .../cancel   polling, chunks, cancel;
                  `statement_polls` answers PENDING/RUNNING that many times first; `statement_states` forces the
                  final state of the next statements (FAILED, CANCELED, CLOSED); `statements_run` records each
  FM API     POST /serving-endpoints/anthropic/v1/messages      a short reply from a served endpoint (`serving_endpoints`)
             POST /serving-endpoints/chat/completions           MLflow's `databricks` judges: every verdict "yes"
Paths must lie inside a registered volume (`add_volume`); anything else is 404, as for a volume that
does not exist. Every request is recorded; `fail_next` injects HTTP errors (e.g. a 500) for retries.
Requests authenticate with `Bearer <token>` or any of `extra_tokens` (a credential derived elsewhere);
each request records which (`Request.credential`: a short hash of the token, `credential_id(token)`).
Endpoints not listed answer 404 ENDPOINT_NOT_FOUND, and `unserved()` lists the requests that got it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from posixpath import dirname, normpath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FILES = "/api/2.0/fs/files"
DIRECTORIES = "/api/2.0/fs/directories"
SECRETS_GET = "/api/2.0/secrets/get"
WELL_KNOWN = "/.well-known/databricks-config"
EXPERIMENTS = "/api/2.0/mlflow/experiments"
TRACES_V4 = "/api/4.0/mlflow/traces"
SEARCH_TRACES = f"{TRACES_V4}/search-long-running"
FM_API_MESSAGES = "/serving-endpoints/anthropic/v1/messages"
CHAT_COMPLETIONS = "/serving-endpoints/chat/completions"
RUNS = "/api/2.0/mlflow/runs"
TRACES_V3 = ("/api/2.0/mlflow/traces", "/api/3.0/mlflow/traces")
LINK_TO_RUN = "/api/2.0/mlflow/traces/link-to-run"
EVAL_USAGE_EVENTS = "/api/2.0/agents/evaluation-client-usage-events"
WAREHOUSES = "/api/2.0/sql/warehouses"
STATEMENTS = "/api/2.0/sql/statements"
PRESIGNED = "/presigned"
RUN_ARTIFACTS = "/WorkspaceInternal/Mlflow/Artifacts"
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"
ARTIFACT_LOCATION_TAG = "mlflow.artifactLocation"


def credential_id(token: str) -> str:
    """How a request's bearer token is recorded: a short hash, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorized: bool
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased, Authorization left out
    credential: str | None = None  # credential_id of the bearer token, None without one
    status: int | None = None  # what the fake answered
    unserved: bool = False  # no endpoint for it here (404 ENDPOINT_NOT_FOUND)


@dataclass
class StoredTrace:
    """One trace in the fake workspace: where it lives (experiment id or `catalog.schema`), the
    MLflow `Trace` it answers with, and where its spans are kept: `tracking_store` (served by the v4
    batch get) or `artifacts` (the trace data file MLflow's client uploads for a trace it logs to an
    experiment, downloaded through a presigned URL; the batch get does not return those)."""

    location: str
    trace: Any
    spans: str = "tracking_store"
    runs: set[str] = field(default_factory=set)

    @property
    def info(self) -> Any:
        return self.trace.info


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    times: int


class _QuietServer(ThreadingHTTPServer):
    """A client that drops its kept-alive connection (the SDK's pool at exit) is not an error of the fake."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass
class FakeDatabricks:
    token: str = "fake-workspace-token"
    page_size: int = 1000
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    extra_tokens: set[str] = field(default_factory=set)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    traces: dict[str, StoredTrace] = field(default_factory=dict)
    search_page_size: int = 50
    serving_endpoints: set[str] = field(default_factory=lambda: {"databricks-claude-sonnet-4-5"})
    warehouses: dict[str, str] = field(default_factory=dict)
    sql_spark: Any = None  # the SparkSession statements run on (None: the statement API answers FAILED)
    statement_chunk_rows: int = 1000
    statement_polls: int = 0
    statement_states: list[str] = field(default_factory=list)
    statements_run: list[str] = field(default_factory=list)
    _statements: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # --- setup ------------------------------------------------------------------------------
    def add_volume(self, path: str) -> None:
        self.volumes.add(path.rstrip("/"))
        self.dirs.add(path.rstrip("/"))

    def put_secret(self, scope: str, key: str, value: str) -> None:
        self.secrets[(scope, key)] = value

    def add_experiment(self, experiment_id: str, name: str, tags: dict[str, str] | None = None) -> None:
        self.experiments[str(experiment_id)] = {
            "experiment_id": str(experiment_id), "name": name, "lifecycle_stage": "active",
            "artifact_location": f"dbfs:/databricks/mlflow-tracking/{experiment_id}",
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        self.add_volume(f"{RUN_ARTIFACTS}/{experiment_id}")  # run artifacts, through the Files API

    def add_traces(self, location: str, traces: list[Any], spans: str = "tracking_store") -> None:
        """Serve these MLflow `Trace` objects (infos and spans) as stored at `location`; `spans` says
        where their spans are kept (`tracking_store` or `artifacts`, see StoredTrace)."""
        from mlflow.entities import Trace

        for trace in traces:
            info = copy.deepcopy(trace.info)
            if spans == "artifacts":  # as the workspace tags a trace the MLflow client logged
                info.tags.pop(SPANS_LOCATION_TAG, None)
                info.tags[ARTIFACT_LOCATION_TAG] = f"dbfs:/databricks/mlflow-tracking/{location}/{info.trace_id}/artifacts"
            else:
                info.tags[SPANS_LOCATION_TAG] = "TRACKING_STORE"
            self.traces[info.trace_id] = StoredTrace(str(location), Trace(info=info, data=trace.data), spans)

    def unserved(self) -> list[Request]:
        """Requests the fake had no endpoint for (404 ENDPOINT_NOT_FOUND)."""
        return [r for r in self.requests if r.unserved]

    def assessments(self, trace_id: str) -> list[Any]:
        return list(self.traces[trace_id].info.assessments or [])

    def batch_get_locations(self) -> list[str]:
        """The location of every batch-get call so far, as it appeared in the path."""
        return [r.path[len(TRACES_V4) + 1 : -len("/batchGet")] for r in self.requests if r.path.endswith("/batchGet")]

    def fail_next(self, method: str, path_prefix: str, status: int = 500, times: int = 1) -> None:
        """The next `times` requests of `method` under `path_prefix` (a /Volumes path) get `status`."""
        self._failures.append(_Failure(method, path_prefix, status, times))

    def client(self, **config: Any) -> Any:
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient(host=self.url, token=self.token, **config)

    def calls(self, method: str, prefix: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    # --- server -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeDatabricks:
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-databricks", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDatabricks:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- behaviour ----------------------------------------------------------------------------
    def volume_of(self, path: str) -> str | None:
        return next((v for v in self.volumes if path == v or path.startswith(v + "/")), None)

    def take_failure(self, method: str, path: str) -> int | None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method and path.startswith(failure.path_prefix) and failure.times > 0:
                    failure.times -= 1
                    return failure.status
        return None

    def make_dirs(self, path: str) -> None:
        while path and self.volume_of(path) and path not in self.dirs:
            self.dirs.add(path)
            path = dirname(path)

    def children(self, path: str) -> list[dict[str, Any]]:
        entries = [
            {"path": d, "name": d.rsplit("/", 1)[-1], "is_directory": True}
            for d in self.dirs
            if dirname(d) == path and d != path
        ]
        entries += [
            {"path": f, "name": f.rsplit("/", 1)[-1], "is_directory": False, "file_size": len(data), "last_modified": 0}
            for f, data in self.files.items()
            if dirname(f) == path
        ]
        return sorted(entries, key=lambda e: e["path"])


class _Handler(BaseHTTPRequestHandler):
    state: FakeDatabricks
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # --- plumbing ---------------------------------------------------------------------------
    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        lists = parse_qs(parts.query)
        query = {k: v[-1] for k, v in lists.items()}
        header = self.headers.get("Authorization") or ""
        bearer = header[len("Bearer "):] if header.startswith("Bearer ") else None
        authorized = bearer is not None and bearer in {self.state.token, *self.state.extra_tokens}
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "authorization"}
        self._request = Request(method, unquote(parts.path), query, authorized, body, headers, credential_id(bearer) if bearer else None)
        with self.state._lock:
            self.state.requests.append(self._request)
        if parts.path == WELL_KNOWN and method == "GET":  # host metadata, asked before any auth
            return self._json(200, {"oidc_endpoint": f"{self.state.url}/oidc", "workspace_id": "1234567890"})
        path = unquote(parts.path)
        if path.startswith(PRESIGNED + "/") and method == "GET":  # a cloud store's URL: the signature is the credential
            return self._presigned(path[len(PRESIGNED) + 1 :])
        if not authorized:
            return self._error(401, "UNAUTHENTICATED", "Invalid access token.")
        for prefix, handler in ((FILES, self._files), (DIRECTORIES, self._directories)):
            if path.startswith(prefix + "/"):
                target = normpath(path[len(prefix):])
                status = self.state.take_failure(method, target)
                if status:
                    return self._injected(status)
                if not self.state.volume_of(target):
                    return self._error(404, "NOT_FOUND", f"Volume for path {target} does not exist.")
                return handler(method, target, query, body)
        if path == SECRETS_GET and method == "GET":
            return self._secret(query)
        if path.startswith(EXPERIMENTS + "/") and method == "GET":
            return self._experiment(path[len(EXPERIMENTS) + 1 :], query)
        if path == SEARCH_TRACES and method == "POST":
            return self._search_traces(json.loads(body or b"{}"))
        if path == FM_API_MESSAGES and method == "POST":
            return self._message(json.loads(body or b"{}"))
        if path == CHAT_COMPLETIONS and method == "POST":
            return self._judge(json.loads(body or b"{}"))
        if path.startswith(TRACES_V4 + "/") and path.endswith("/batchGet") and method == "GET":
            return self._batch_get(path[len(TRACES_V4) + 1 : -len("/batchGet")], lists.get("trace_ids", []), query)
        if path.startswith(RUNS + "/"):
            return self._runs(method, path[len(RUNS) + 1 :], query, json.loads(body or b"{}"))
        if path == LINK_TO_RUN and method == "POST":
            return self._link_to_run(json.loads(body or b"{}"))
        for prefix in TRACES_V3:
            if path.startswith(prefix + "/tr-"):
                return self._trace_v3(method, path[len(prefix) + 1 :], json.loads(body or b"{}") if method != "GET" else {})
        if path == EVAL_USAGE_EVENTS and method == "POST":
            return self._json(200, {})
        if path.startswith(WAREHOUSES + "/") and method == "GET":
            return self._warehouse(path[len(WAREHOUSES) + 1 :])
        if path == STATEMENTS and method == "POST":
            return self._execute_statement(json.loads(body or b"{}"))
        if path.startswith(STATEMENTS + "/"):
            return self._statement(method, path[len(STATEMENTS) + 1 :])
        self._request.unserved = True
        return self._error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        if getattr(self, "_request", None) is not None:
            self._request.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._reply(status, json.dumps(payload).encode())

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error_code": code, "message": message})

    def _injected(self, status: int) -> None:
        codes = {403: "PERMISSION_DENIED", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}
        if status in codes:
            return self._error(status, codes[status], "Injected failure.")
        # Gateways answer 502/504 with a page, not a JSON error.
        return self._reply(status, f"<html><body>{status} Gateway error</body></html>".encode(), "text/html")

    # --- endpoints --------------------------------------------------------------------------
    def _files(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        state = self.state
        if method == "PUT":
            if path in state.dirs:
                return self._error(409, "ALREADY_EXISTS", f"{path} is a directory.")
            if path in state.files and query.get("overwrite", "true").lower() == "false":
                return self._error(409, "ALREADY_EXISTS", f"The file being created already exists: {path}")
            state.make_dirs(dirname(path))  # the Files API creates missing parent directories
            state.files[path] = body
            return self._reply(204)
        if path not in state.files:
            return self._error(404, "NOT_FOUND", f"The file being accessed is not found: {path}")
        if method == "GET":
            return self._reply(200, state.files[path], "application/octet-stream")
        if method == "HEAD":
            return self._reply(200, b"", "application/octet-stream")
        if method == "DELETE":
            del state.files[path]
            return self._reply(204)
        return self._error(405, "BAD_REQUEST", f"{method} not allowed")

    def _directories(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        state = self.state
        if method == "PUT":
            if path in state.files:
                return self._error(409, "ALREADY_EXISTS", f"{path} is a file.")
            state.make_dirs(path)
            return self._reply(204)
        if path not in state.dirs:
            return self._error(404, "NOT_FOUND", f"The directory being accessed is not found: {path}")
        if method == "HEAD":
            return self._reply(200)
        if method == "GET":
            entries = state.children(path)
            start = int(query.get("page_token") or 0)
            size = min(int(query.get("page_size") or state.page_size), state.page_size)
            page: dict[str, Any] = {"contents": entries[start : start + size]}
            if start + size < len(entries):
                page["next_page_token"] = str(start + size)
            return self._json(200, page)
        return self._error(405, "BAD_REQUEST", f"{method} not allowed")

    def _secret(self, query: dict[str, str]) -> None:
        scope, key = query.get("scope", ""), query.get("key", "")
        if not any(s == scope for s, _ in self.state.secrets):
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")
        if (scope, key) not in self.state.secrets:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Failed to get secret {key} for scope {scope}.")
        value = base64.b64encode(self.state.secrets[(scope, key)].encode()).decode()
        return self._json(200, {"key": key, "value": value})

    # --- MLflow ---------------------------------------------------------------------------------
    def _experiment(self, verb: str, query: dict[str, str]) -> None:
        experiments = self.state.experiments
        if verb == "get":
            found = experiments.get(query.get("experiment_id", ""))
        elif verb == "get-by-name":
            found = next((e for e in experiments.values() if e["name"] == query.get("experiment_name")), None)
        else:
            return self._error(404, "ENDPOINT_NOT_FOUND", f"No API found for 'GET experiments/{verb}'")
        if found is None:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", "Node ID does not exist.")
        return self._json(200, {"experiment": found})

    def _search_traces(self, request: dict[str, Any]) -> None:
        wanted = set()
        for location in request.get("locations", []):
            if "mlflow_experiment" in location:
                wanted.add(str(location["mlflow_experiment"]["experiment_id"]))
            elif "uc_schema" in location:
                wanted.add(f"{location['uc_schema']['catalog_name']}.{location['uc_schema']['schema_name']}")
        if any("uc_schema" in loc for loc in request.get("locations", [])) and (problem := self._warehouse_problem(request.get("sql_warehouse_id"))):
            return problem
        try:
            keep = _trace_filter(request.get("filter"), {t: st.runs for t, st in self.state.traces.items()})
        except ValueError as exc:
            return self._error(400, "INVALID_PARAMETER_VALUE", str(exc))
        found = [s for s in self.state.traces.values() if s.location in wanted and keep(s.info)]
        if any("execution_time_ms DESC" in o for o in request.get("order_by", [])):
            found.sort(key=lambda s: (-(s.info.execution_duration or 0), s.info.trace_id))
        else:
            found.sort(key=lambda s: (-s.info.request_time, s.info.trace_id))
        start = int(request.get("page_token") or 0)
        size = min(int(request.get("max_results") or 100), self.state.search_page_size)
        page = found[start : start + size]
        response: dict[str, Any] = {"trace_infos": [_v4_info(s.info) for s in page]}
        if start + size < len(found):
            response["next_page_token"] = str(start + size)
        return self._json(200, {"name": "operations/search-1", "done": True, "response": response})

    def _message(self, request: dict[str, Any]) -> None:
        """The Foundation Model API's Anthropic endpoint: a one-word reply from any served endpoint."""
        model = request.get("model", "")
        if model not in self.state.serving_endpoints:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"The serving endpoint {model} does not exist.")
        return self._json(200, {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "OK"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 1},
        })

    def _judge(self, request: dict[str, Any]) -> None:
        """The chat-completions endpoint MLflow's `databricks` judges call: every verdict is "yes"."""
        content = json.dumps({"result": "yes", "rationale": "The fake workspace's judge says yes to everything."})
        return self._json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": request.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })

    def _batch_get(self, location: str, trace_ids: list[str], query: dict[str, str]) -> None:
        stored = [s for s in self.state.traces.values() if s.location == location and s.spans == "tracking_store"]
        if not stored and location not in self.state.experiments:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Trace location {location} does not exist.")
        if len(trace_ids) > 10:
            return self._error(400, "INVALID_PARAMETER_VALUE", "At most 10 trace ids per batch get.")
        if "." in location and (problem := self._warehouse_problem(query.get("sql_warehouse_id"))):
            return problem
        by_id = {s.info.trace_id: s for s in stored}
        for s in stored:  # UC-located traces are asked for by their OTel id, without the trace:/ prefix
            by_id.setdefault(s.info.trace_id.rsplit("/", 1)[-1], s)
        traces = [_v4_trace(by_id[t].trace) for t in trace_ids if t in by_id]
        return self._json(200, {"traces": traces})

    # --- SQL warehouses (what MLflow reads UC-located traces through) ----------------------------------
    def _warehouse_problem(self, warehouse_id: str | None) -> Any:
        """None when `warehouse_id` names a running warehouse; else the answer the workspace gives."""
        if not warehouse_id:
            return self._error(400, "INVALID_PARAMETER_VALUE", "Could not resolve a SQL warehouse ID for reading traces in Unity Catalog.")
        if self.state.warehouses.get(warehouse_id) != "RUNNING":
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"SQL warehouse {warehouse_id} does not exist or is not running.")
        return None

    def _warehouse(self, warehouse_id: str) -> None:
        state = self.state.warehouses.get(warehouse_id)
        if state is None:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"SQL warehouse {warehouse_id} does not exist.")
        return self._json(200, {"id": warehouse_id, "name": f"warehouse {warehouse_id}", "state": state})

    # --- the Statement Execution API (a warehouse that really runs the SQL, on local Spark) -------------
    def _execute_statement(self, body: dict[str, Any]) -> None:
        state = self.state
        if problem := self._warehouse_problem(body.get("warehouse_id")):
            return problem
        if body.get("disposition", "INLINE") != "INLINE" or body.get("format", "JSON_ARRAY") != "JSON_ARRAY":
            return self._error(400, "INVALID_PARAMETER_VALUE", "This fake serves only disposition INLINE with format JSON_ARRAY.")
        statement_id = f"stmt-{uuid.uuid4().hex[:16]}"
        text = body.get("statement") or ""
        with state._lock:
            state.statements_run.append(text)
            forced = state.statement_states.pop(0) if state.statement_states else None
        done = _run_statement(state.sql_spark, text, state.statement_chunk_rows, statement_id)
        if forced:
            done = {"status": {"state": forced, **({"error": {"error_code": "BAD_REQUEST", "message": f"Forced {forced} by the test."}}
                                                   if forced == "FAILED" else {})}}
        done["statement_id"] = statement_id
        with state._lock:
            state._statements[statement_id] = {"done": done, "polls": state.statement_polls}
        return self._json(200, self._answer(statement_id))

    def _answer(self, statement_id: str) -> dict[str, Any]:
        """The statement's response now: PENDING/RUNNING while polls remain, then the finished one with its first chunk."""
        with self.state._lock:
            entry = self.state._statements[statement_id]
            if entry["polls"] > 0:
                entry["polls"] -= 1
                return {"statement_id": statement_id, "status": {"state": "RUNNING" if entry["polls"] % 2 else "PENDING"}}
        done = dict(entry["done"])
        chunks = done.pop("chunks", None)
        if chunks is not None:
            done["result"] = chunks[0]
        return done

    def _statement(self, method: str, rest: str) -> None:
        statement_id, _, verb = rest.partition("/")
        if statement_id not in self.state._statements:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} does not exist.")
        if method == "GET" and not verb:
            return self._json(200, self._answer(statement_id))
        if method == "POST" and verb == "cancel":
            with self.state._lock:
                self.state._statements[statement_id] = {"done": {"statement_id": statement_id, "status": {"state": "CANCELED"}}, "polls": 0}
            return self._json(200, {})
        if method == "GET" and verb.startswith("result/chunks/"):
            chunks = self.state._statements[statement_id]["done"].get("chunks")
            index = int(verb.rsplit("/", 1)[-1])
            if chunks is None or not 0 <= index < len(chunks):
                return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} has no result chunk {index}.")
            return self._json(200, chunks[index])
        self._request.unserved = True
        return self._error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {STATEMENTS}/{rest}'")

    # --- traces through the v3 API (experiment traces) ----------------------------------------------
    def _trace_v3(self, method: str, rest: str, body: dict[str, Any]) -> None:
        trace_id, _, verb = rest.partition("/")
        stored = self.state.traces.get(trace_id)
        if stored is None:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Trace with ID {trace_id} is not found.")
        if method == "GET" and verb == "":
            return self._json(200, {"trace": {"trace_info": _v3_info(stored.info)}})
        if method == "GET" and verb == "credentials-for-data-download":
            if stored.spans != "artifacts":
                return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Trace {trace_id} has no trace data in the artifact store.")
            signed = f"{self.state.url}{PRESIGNED}/{trace_id}/traces.json?signature={uuid.uuid4().hex}"
            return self._json(200, {"credential_info": {"signed_uri": signed, "type": "AWS_PRESIGNED_URL"}})
        if method == "POST" and verb == "assessments":
            return self._create_assessment(stored, body.get("assessment") or {})
        if method == "PATCH" and verb == "tags":
            stored.info.tags[body["key"]] = body.get("value", "")
            return self._json(200, {})
        if method == "DELETE" and verb.startswith("assessments/"):  # MLflow's DeleteAssessment (v3 path)
            assessment_id = verb[len("assessments/"):]
            with self.state._lock:
                kept = [a for a in stored.info.assessments or [] if a.assessment_id != assessment_id]
                if len(kept) == len(stored.info.assessments or []):
                    return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Assessment {assessment_id} does not exist.")
                stored.info.assessments = kept
            return self._json(200, {})
        self._request.unserved = True
        return self._error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} traces/{rest}'")

    def _presigned(self, rest: str) -> None:
        trace_id, _, name = rest.partition("/")
        stored = self.state.traces.get(trace_id)
        if stored is None or stored.spans != "artifacts" or name != "traces.json":
            return self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        return self._reply(200, json.dumps(stored.trace.data.to_dict(), default=str).encode(), "application/octet-stream")

    def _create_assessment(self, stored: StoredTrace, payload: dict[str, Any]) -> None:
        from google.protobuf.json_format import MessageToDict, ParseDict
        from mlflow.entities.assessment import Assessment
        from mlflow.protos.assessments_pb2 import Assessment as ProtoAssessment

        proto = ParseDict(payload, ProtoAssessment(), ignore_unknown_fields=True)
        proto.assessment_id = f"a-{uuid.uuid4().hex}"
        proto.trace_id = stored.info.trace_id
        now = int(time.time() * 1000)
        proto.create_time.FromMilliseconds(now)
        proto.last_update_time.FromMilliseconds(now)
        with self.state._lock:
            stored.info.assessments = [*(stored.info.assessments or []), Assessment.from_proto(proto)]
        return self._json(200, {"assessment": MessageToDict(proto, preserving_proto_field_name=True)})

    def _link_to_run(self, body: dict[str, Any]) -> None:
        run_id = body.get("run_id", "")
        if run_id not in self.state.runs:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")
        unknown = [t for t in body.get("trace_ids", []) if t not in self.state.traces]
        if unknown:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Traces {unknown[:3]} do not exist.")
        for trace_id in body.get("trace_ids", []):
            self.state.traces[trace_id].runs.add(run_id)
        return self._json(200, {})

    # --- runs (the MLflow REST API the workspace serves) -----------------------------------------------
    def _runs(self, method: str, verb: str, query: dict[str, str], body: dict[str, Any]) -> None:
        state = self.state
        if verb == "create" and method == "POST":
            experiment_id = str(body.get("experiment_id", ""))
            if experiment_id not in state.experiments:
                return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Experiment {experiment_id} does not exist.")
            run_id = uuid.uuid4().hex
            tags = {t["key"]: t.get("value", "") for t in body.get("tags", [])}
            name = body.get("run_name") or tags.get("mlflow.runName") or f"run-{run_id[:6]}"
            tags.setdefault("mlflow.runName", name)
            with state._lock:
                state.runs[run_id] = {
                    "info": {"run_id": run_id, "run_uuid": run_id, "experiment_id": experiment_id, "run_name": name,
                             "user_id": body.get("user_id", ""), "status": "RUNNING", "start_time": int(body.get("start_time") or time.time() * 1000),
                             "lifecycle_stage": "active",
                             "artifact_uri": f"dbfs:/databricks/mlflow-tracking/{experiment_id}/{run_id}/artifacts"},
                    "params": {}, "tags": tags, "metrics": {}, "inputs": [], "outputs": [],
                }
            return self._json(200, {"run": _run_payload(state.runs[run_id])})
        run_id = query.get("run_id") if method == "GET" else (body.get("run_id") or body.get("run_uuid"))
        run = state.runs.get(run_id or "")
        if run is None:
            return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found.")
        with state._lock:
            if verb == "get" and method == "GET":
                return self._json(200, {"run": _run_payload(run)})
            if verb == "update" and method == "POST":
                run["info"].update({k: body[k] for k in ("status", "end_time", "run_name") if k in body})
                return self._json(200, {"run_info": run["info"]})
            if verb == "log-batch" and method == "POST":
                for p in body.get("params", []):
                    if p["key"] in run["params"] and run["params"][p["key"]] != p.get("value", ""):
                        return self._error(400, "INVALID_PARAMETER_VALUE", f"Changing param values is not allowed. Param with key='{p['key']}' was already logged.")
                    run["params"][p["key"]] = p.get("value", "")
                run["tags"].update({t["key"]: t.get("value", "") for t in body.get("tags", [])})
                for m in body.get("metrics", []):
                    run["metrics"][m["key"]] = m
                return self._json(200, {})
            if verb == "log-parameter" and method == "POST":
                run["params"][body["key"]] = body.get("value", "")
                return self._json(200, {})
            if verb == "log-metric" and method == "POST":
                run["metrics"][body["key"]] = {k: body.get(k) for k in ("key", "value", "timestamp", "step")}
                return self._json(200, {})
            if verb == "set-tag" and method == "POST":
                run["tags"][body["key"]] = body.get("value", "")
                return self._json(200, {})
            if verb == "delete-tag" and method == "POST":
                if body.get("key") not in run["tags"]:
                    return self._error(404, "RESOURCE_DOES_NOT_EXIST", f"No tag with name: {body.get('key')} in run with id {run_id}")
                del run["tags"][body["key"]]
                return self._json(200, {})
            if verb == "log-inputs" and method == "POST":
                run["inputs"] += body.get("datasets", [])
                return self._json(200, {})
            if verb == "outputs" and method == "POST":
                run["outputs"] += body.get("models", [])
                return self._json(200, {})
        self._request.unserved = True
        return self._error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} runs/{verb}'")

    def do_GET(self) -> None:
        self._route("GET")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")


# --- MLflow payloads ---------------------------------------------------------------------------
def _v3_info(info: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(info.to_proto(), preserving_proto_field_name=True)


def _run_payload(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "info": run["info"],
        "data": {
            "params": [{"key": k, "value": v} for k, v in run["params"].items()],
            "tags": [{"key": k, "value": v} for k, v in run["tags"].items()],
            "metrics": list(run["metrics"].values()),
        },
        "inputs": {"dataset_inputs": run["inputs"]},
    }


def _v4_info(info: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict
    from mlflow.utils.databricks_tracing_utils import trace_info_to_v4_proto

    return MessageToDict(trace_info_to_v4_proto(info), preserving_proto_field_name=True)


def _v4_trace(trace: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict
    from mlflow.protos import databricks_tracing_pb2 as pb
    from mlflow.utils.databricks_tracing_utils import trace_info_to_v4_proto

    proto = pb.Trace(trace_info=trace_info_to_v4_proto(trace.info), spans=[s.to_otel_proto() for s in trace.data.spans])
    return MessageToDict(proto, preserving_proto_field_name=True)


_TIMESTAMP = re.compile(r"^\s*(?:trace\.)?timestamp_ms\s*>=\s*(\d+)\s*$")
_STATUS = re.compile(r"^\s*(?:attributes|trace)\.status\s*=\s*'([A-Z_]+)'\s*$")
_RUN = re.compile(r"^\s*(?:attributes?|trace)\.run_id\s*=\s*'([0-9a-f]+)'\s*$")


def _trace_filter(text: str | None, runs: dict[str, set[str]] | None = None) -> Any:
    """The filters the fake understands (AND of timestamp, status and run conditions); others are a 400."""
    runs = runs or {}
    tests = []
    for part in re.split(r"\s+AND\s+", text or "", flags=re.I) if (text or "").strip() else []:
        if match := _TIMESTAMP.match(part):
            tests.append(lambda info, ms=int(match.group(1)): info.request_time >= ms)
        elif match := _STATUS.match(part):
            tests.append(lambda info, state=match.group(1): str(getattr(info.state, "value", info.state)) == state)
        elif match := _RUN.match(part):  # traces linked to a run (mlflow.genai.evaluate reads its own back)
            tests.append(lambda info, run=match.group(1): run in runs.get(info.trace_id, ()))
        else:
            raise ValueError(f"The fake workspace does not understand the filter {part!r}.")
    return lambda info: all(test(info) for test in tests)


_TYPE_NAMES = {"long": "LONG", "integer": "INT", "short": "SHORT", "byte": "BYTE", "double": "DOUBLE", "float": "FLOAT", "decimal": "DECIMAL",
               "boolean": "BOOLEAN", "string": "STRING", "array": "ARRAY", "map": "MAP", "struct": "STRUCT", "date": "DATE",
               "timestamp": "TIMESTAMP", "binary": "BINARY", "void": "NULL"}


def _run_statement(spark: Any, text: str, chunk_rows: int, statement_id: str) -> dict[str, Any]:
    """Run one statement on `spark` and answer as the API does for INLINE + JSON_ARRAY: every value a
    string (NULL as null; arrays, maps and structs as their JSON), the rows in chunks of `chunk_rows`."""
    if spark is None:
        return {"status": {"state": "FAILED", "error": {"error_code": "INTERNAL_ERROR", "message": "The fake warehouse has no SparkSession."}}}
    try:
        df = spark.sql(text)
        fields = df.schema.fields
        renamed = df.toDF(*[f"_c{i}" for i in range(len(fields))])  # the server renders every value as text
        as_text = [f"to_json(_c{i})" if f.dataType.typeName() in ("array", "map", "struct") else f"CAST(_c{i} AS STRING)" for i, f in enumerate(fields)]
        rows = [list(r) for r in renamed.selectExpr(*as_text).collect()]
    except Exception as exc:  # the SQL failed: the API's FAILED answer, with the engine's first line
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
        return {"status": {"state": "FAILED", "sql_state": getattr(exc, "getSqlState", lambda: None)(),
                           "error": {"error_code": "BAD_REQUEST", "message": message}}}
    columns = [{"name": f.name, "position": i, "type_name": _TYPE_NAMES.get(f.dataType.typeName(), f.dataType.typeName().upper()),
                "type_text": f.dataType.simpleString().upper()} for i, f in enumerate(fields)]
    size = max(1, chunk_rows)
    parts = [rows[i:i + size] for i in range(0, len(rows), size)] or [[]]
    chunks = []
    for index, part in enumerate(parts):
        chunk: dict[str, Any] = {"chunk_index": index, "row_offset": index * size, "row_count": len(part)}
        if part:
            chunk["data_array"] = part
        if index + 1 < len(parts):
            chunk["next_chunk_index"] = index + 1
            chunk["next_chunk_internal_link"] = f"{STATEMENTS}/{statement_id}/result/chunks/{index + 1}"
        chunks.append(chunk)
    manifest = {"format": "JSON_ARRAY", "schema": {"column_count": len(columns), "columns": columns}, "total_row_count": len(rows),
                "total_chunk_count": len(chunks), "truncated": False,
                "chunks": [{"chunk_index": c["chunk_index"], "row_offset": c["row_offset"], "row_count": c["row_count"]} for c in chunks]}
    return {"status": {"state": "SUCCEEDED"}, "manifest": manifest, "chunks": chunks}

"""A local fake of the Databricks REST endpoints we use, for `WorkspaceClient(host=fake.url, token=...)`.

Endpoints (the shapes databricks-sdk sends and parses):
  Files API  PUT/GET/HEAD/DELETE /api/2.0/fs/files/<path>      upload (raw body, ?overwrite=), download
             PUT/GET/HEAD         /api/2.0/fs/directories/<path> create (with parents), list (paged), exists
  Secrets    GET /api/2.0/secrets/get?scope=&key=              value base64-encoded
Paths must lie inside a registered volume (`add_volume`); anything else is 404, as for a volume that
does not exist. Every request is recorded; `fail_next` injects HTTP errors (e.g. a 500) for retries.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from posixpath import dirname, normpath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FILES = "/api/2.0/fs/files"
DIRECTORIES = "/api/2.0/fs/directories"
SECRETS_GET = "/api/2.0/secrets/get"
WELL_KNOWN = "/.well-known/databricks-config"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    authorized: bool


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    times: int


@dataclass
class FakeDatabricks:
    token: str = "fake-workspace-token"
    page_size: int = 1000
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        authorized = self.headers.get("Authorization") == f"Bearer {self.state.token}"
        self.state.requests.append(Request(method, unquote(parts.path), query, authorized))
        body = self._read_body()
        if parts.path == WELL_KNOWN and method == "GET":  # host metadata, asked before any auth
            return self._json(200, {"oidc_endpoint": f"{self.state.url}/oidc", "workspace_id": "1234567890"})
        if not authorized:
            return self._error(401, "UNAUTHENTICATED", "Invalid access token.")
        path = unquote(parts.path)
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
        return self._error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
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
        codes = {500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}
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

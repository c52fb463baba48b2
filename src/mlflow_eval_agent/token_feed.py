"""Fresh bearer tokens for Claude Code, from this process: the `apiKeyHelper` behind a token that expires.

Claude Code runs its `apiKeyHelper` command for a token at start-up, again once the value is older
than CLAUDE_CODE_API_KEY_HELPER_TTL_MS (5 minutes by default) and after a 401, and sends the value
as `Authorization: Bearer` (and `x-api-key`). A static token copied into the CLI's environment
would outlive a service principal's 1-hour OAuth token; this feed hands out whatever `source()`
returns now (the Databricks SDK refreshes its own tokens), so a long run keeps working.

The command holds no secret. It is a tiny standard-library Python program that connects to a Unix
socket in a private folder (mode 0700, so only this user can reach it) and prints what the feed
sends: the token, produced when asked and never written to a file. A helper started on serverless
compute could not derive a token itself (the runtime's auth does not reach a child process); the
feed runs in this process, which holds the job's credentials. Every token handed out is remembered
by this process's redaction.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from .redaction import remember

# Runs in the helper process: -I -S keeps it to the standard library and ignores the environment.
HELPER = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "s.settimeout(60)\n"
    "s.connect(sys.argv[1])\n"
    "data = b''\n"
    "while True:\n"
    "    chunk = s.recv(65536)\n"
    "    if not chunk:\n"
    "        break\n"
    "    data += chunk\n"
    "if not data.strip():\n"
    "    sys.exit('no token: the eval agent could not get one from its Databricks credentials')\n"
    "sys.stdout.write(data.decode())\n"
)


class TokenFeedError(Exception):
    """The feed cannot run here (no Unix sockets)."""


class TokenFeed:
    """Serves `source()` to each connection on a private Unix socket, until `stop()`."""

    def __init__(self, source: Callable[[], str]):
        self.source = source
        self.failures = 0
        self._folder: Path | None = None
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        assert self._folder is not None, "start() the feed first"
        return self._folder / "token.sock"

    def start(self) -> TokenFeed:
        if not hasattr(socket, "AF_UNIX"):
            raise TokenFeedError("A refreshing model token needs Unix sockets, which this platform lacks.")
        base = tempfile.gettempdir()
        if len(base) > 60 and os.path.isdir("/tmp"):  # a socket path may hold ~100 bytes at most
            base = "/tmp"
        self._folder = Path(tempfile.mkdtemp(prefix="eval-agent-token-", dir=base))
        os.chmod(self._folder, 0o700)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        os.chmod(self.path, 0o600)
        server.listen(8)
        self._server = server
        self._thread = threading.Thread(target=self._serve, name="eval-agent-token-feed", daemon=True)
        self._thread.start()
        return self

    def command(self) -> str:
        """The shell command Claude Code runs as its apiKeyHelper."""
        return " ".join(shlex.quote(part) for part in (sys.executable, "-I", "-S", "-c", HELPER, str(self.path)))

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
            self._server = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _serve(self) -> None:
        server = self._server
        while server is not None and self._server is server:
            try:
                connection, _ = server.accept()
            except OSError:  # closed by stop()
                return
            with connection:
                try:
                    token = (self.source() or "").strip()
                except Exception:  # the helper then exits non-zero and Claude Code reports the failure
                    self.failures += 1
                    token = ""
                if token:
                    remember(token)
                    with contextlib.suppress(OSError):
                        connection.sendall(token.encode())

"""A session's files: a local working folder, mirrored to durable storage.

The agent and the suite always work on the local folder (`SessionStore.root`). Every state write
is atomic locally (temp file + rename) and then pushed to the backend, so a run killed at any point
leaves either the old or the new file, never half of one, and a resumed run on another machine
pulls what the last one pushed. Text written through the store (state, notes, the suite, the run
log) passes its redactor first; JSON is redacted as data, so it stays valid JSON.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ..redaction import NO_REDACTION, Redactor

M = TypeVar("M", bound=BaseModel)

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LOG_FILE = "run.log"


class StoreError(Exception):
    """Storage could not be read or written; the message says where and what to do."""


class CorruptStateError(StoreError):
    """A state file did not parse or validate. It has been moved aside, not deleted."""

    def __init__(self, rel_path: str, kept_as: str, problem: str):
        self.rel_path, self.kept_as, self.problem = rel_path, kept_as, problem
        super().__init__(f"{rel_path} was unreadable ({problem}); kept aside as {kept_as}.")


class StorageBackend(Protocol):
    """Durable home of a session (a UC Volume, say). The local backend has nothing to do."""

    description: str

    def pull(self, local_root: Path) -> int:
        """Copy the stored session into `local_root`; return the number of files fetched."""

    def push(self, local_root: Path, rel_path: str) -> None:
        """Store one file of the local session (whole-file write; no appends)."""


def check_session_id(session_id: str) -> str:
    if not SESSION_ID_PATTERN.match(session_id):
        raise StoreError(
            f"Session id {session_id!r} is not usable: use letters, digits, '.', '_' or '-' "
            "(at most 128 characters, no slashes)."
        )
    return session_id


def new_session_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SessionStore:
    """Read and write one session's files by relative path; nothing may escape the root."""

    def __init__(self, root: Path, session_id: str, backend: StorageBackend | None = None, redactor: Redactor | None = None):
        self.root = root.resolve()
        self.session_id = check_session_id(session_id)
        self.backend = backend
        self.redactor = redactor or NO_REDACTION
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def description(self) -> str:
        return self.backend.description if self.backend else str(self.root)

    # --- paths ------------------------------------------------------------------------------
    def path(self, rel_path: str) -> Path:
        """The local path of `rel_path`, refusing anything outside the session folder."""
        rel = PurePosixPath(rel_path.replace("\\", "/"))
        if rel.is_absolute() or not rel.parts or ".." in rel.parts:
            raise StoreError(f"{rel_path!r} is not a relative path inside the session folder.")
        full = (self.root / rel).resolve()
        if not full.is_relative_to(self.root):
            raise StoreError(f"{rel_path!r} points outside the session folder.")
        return full

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def exists(self, rel_path: str) -> bool:
        return self.path(rel_path).exists()

    def list(self, rel_dir: str = ".") -> list[str]:
        base = self.root if rel_dir in (".", "") else self.path(rel_dir)
        if not base.is_dir():
            return []
        return sorted(self.relative(p) for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))

    # --- reads ------------------------------------------------------------------------------
    def read_text(self, rel_path: str) -> str | None:
        path = self.path(rel_path)
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def read_model(self, rel_path: str, model: type[M]) -> M | None:
        """Parse a JSON state file; None when absent. A broken file is moved aside and reported."""
        text = self.read_text(rel_path)
        if text is None:
            return None
        try:
            return model.model_validate(json.loads(text))
        except ValidationError as exc:
            problem = f"{exc.error_count()} validation error(s), first: {_first_error(exc)}"
        except ValueError as exc:
            problem = f"not valid JSON: {exc}"
        raise CorruptStateError(rel_path, self._move_aside(rel_path), problem)

    def read_json(self, rel_path: str) -> object | None:
        text = self.read_text(rel_path)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CorruptStateError(rel_path, self._move_aside(rel_path), f"not valid JSON: {exc}") from None

    def _move_aside(self, rel_path: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(2).hex()
        kept = f"{rel_path}.corrupt-{stamp}"
        os.replace(self.path(rel_path), self.path(kept))
        self._push(kept)
        return kept

    # --- writes -----------------------------------------------------------------------------
    def write_bytes(self, rel_path: str, data: bytes) -> Path:
        """Raw bytes, written as given (no redaction: use the text and JSON writers for text)."""
        path = self.path(rel_path)
        atomic_write_bytes(path, data)
        self._push(rel_path)
        return path

    def write_text(self, rel_path: str, text: str) -> Path:
        return self.write_bytes(rel_path, self.redactor.text(text).encode("utf-8"))

    def write_model(self, rel_path: str, value: BaseModel) -> Path:
        return self.write_json(rel_path, json.loads(value.model_dump_json()))

    def write_json(self, rel_path: str, value: object) -> Path:
        data = self.redactor.data(json.loads(json.dumps(value, default=str)))
        return self.write_bytes(rel_path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    def append_log(self, line: str) -> None:
        """The run log is appended locally and pushed whole by `sync()` (volumes cannot append)."""
        with self.path(LOG_FILE).open("a", encoding="utf-8") as handle:
            handle.write(self.redactor.text(line).rstrip("\n") + "\n")

    # --- sync -------------------------------------------------------------------------------
    def pull(self) -> int:
        return self.backend.pull(self.root) if self.backend else 0

    def sync(self, rel_dir: str = ".") -> None:
        """Push every file under `rel_dir` (used at session end and for the run log)."""
        for rel in self.list(rel_dir):
            self._push(rel)

    def _push(self, rel_path: str) -> None:
        if self.backend:
            self.backend.push(self.root, rel_path)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    return f"{loc}: {err['msg']}"

"""A session's files: a local working folder, mirrored to durable storage.

The agent and the suite always work on the local folder (`SessionStore.root`). Every state write
is atomic locally (temp file + rename) and then pushed to the backend, so a run killed at any point
leaves either the old or the new file, never half of one, and a resumed run on another machine
pulls what the last one pushed. Text written through the store (state, notes, the suite, the run
log) passes its redactor first; JSON is redacted as data, so it stays valid JSON.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import EXIT_FAILED, EXIT_USAGE
from ..redaction import NO_REDACTION, Redactor

M = TypeVar("M", bound=BaseModel)

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LOG_FILE = "run.log"


# Folders and files that code owns inside a session; a file where one of these folders belongs (a
# model's write_artifact of a bare 'state', an old bug) is moved aside instead of bricking the session.
RESERVED_DIRS = ("state", "evaluation")


class StoreError(Exception):
    """Storage could not be read or written; the message says where and what to do.

    `code` is the exit code: 2 for a place that cannot be used (configuration), 1 for a fault of the
    storage during the run (a full disk, an I/O error): the state written so far is kept either way."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def os_error(exc: OSError, what: str, where: Path | str) -> StoreError:
    """One sentence for an OS-level storage fault, saying what to do next (never a traceback)."""
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return StoreError(f"Could not {what}: no space left on the device holding {where}. Free some space, then resume "
                          "with the same --session-id (everything saved before this point is kept).", EXIT_FAILED)
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"Could not {what}: {where} is not writable ({exc.strerror}). Use a writable --volume-path, "
                          "or fix the folder's permissions.")
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return StoreError(f"Could not {what}: a file stands where a folder belongs, or the other way round, under {where} "
                          f"({exc.strerror}). Choose another --volume-path, or move that entry away.")
    return StoreError(f"Could not {what} under {where}: {exc.strerror or exc}. Check the storage, then resume with the "
                      "same --session-id.", EXIT_FAILED)


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
    """Temp file beside `path`, fsync, rename: readers see the old or the new file, never half of one."""
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
        self.notices: list[str] = []  # repairs made on the way (entries moved aside); the runner prints them
        self.on_notice: Callable[[str], None] = self.notices.append
        try:
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(self.root))
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot keep sessions under {root}: {exc.strerror or exc} there. Pass a writable folder as --volume-path "
                "(or /Volumes/<catalog>/<schema>/<volume>)."
            ) from None

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
        """Session files below `rel_dir`: hidden names (temp files, the lock) and symlinks are skipped,
        so a link placed in the folder can neither crash a listing nor carry an outside file along."""
        base = self.root if rel_dir in (".", "") else self.path(rel_dir)
        if not base.is_dir() or base.is_symlink():
            return []
        found: list[str] = []
        for folder, dirs, files in os.walk(base, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))]
            for name in files:
                full = Path(folder) / name
                if name.startswith(".") or full.is_symlink() or not full.is_file():
                    continue
                found.append(full.relative_to(self.root).as_posix())
        return sorted(found)

    def repair(self) -> list[str]:
        """Move aside an entry that stands where a code-owned folder belongs (`state`, `evaluation`
        as files or links) so the session keeps working; returns what was done, one line each."""
        done: list[str] = []
        for name in RESERVED_DIRS:
            entry = self.root / name
            if entry.is_symlink() or (entry.exists() and not entry.is_dir()):
                kept = self._set_aside(entry)
                done.append(f"'{name}' in the session folder was not a folder; kept aside as {kept}.")
        for line in done:
            self.on_notice(line)
        return done

    def _set_aside(self, entry: Path) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(2).hex()
        kept = entry.with_name(f"{entry.name}.corrupt-{stamp}")
        os.replace(entry, kept)
        return kept.relative_to(self.root).as_posix()

    # --- reads ------------------------------------------------------------------------------
    def read_text(self, rel_path: str) -> str | None:
        """The file's text; None when absent. A folder (or other non-file) in its place is moved aside
        and reported as corrupt; undecodable bytes are corrupt too."""
        path = self.path(rel_path)
        if not path.exists():
            return None
        if not path.is_file():
            raise CorruptStateError(rel_path, self._move_aside(rel_path), "not a file")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptStateError(rel_path, self._move_aside(rel_path), f"not UTF-8 text: {exc.reason}") from None
        except OSError as exc:
            raise os_error(exc, f"read {rel_path}", self.root) from None

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
        try:
            os.replace(self.path(rel_path), self.path(kept))
        except OSError as exc:
            raise os_error(exc, f"move the unreadable {rel_path} aside", self.root) from None
        if self.path(kept).is_file():
            self._push(kept)
        return kept

    # --- writes -----------------------------------------------------------------------------
    def write_bytes(self, rel_path: str, data: bytes) -> Path:
        """Raw bytes, written as given (no redaction: use the text and JSON writers for text)."""
        self._clear_parents(rel_path)
        path = self.path(rel_path)
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise os_error(exc, f"write {rel_path}", self.root) from None
        self._push(rel_path)
        return path

    def _clear_parents(self, rel_path: str) -> None:
        """A file where one of the path's folders belongs is moved aside (reported), not fatal."""
        rel = PurePosixPath(rel_path.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts:
            return  # path() refuses it with its own sentence
        current = self.root
        for part in rel.parts[:-1]:
            current = current / part
            if current.is_symlink():
                return  # path() decides: inside is fine, outside is refused
            if current.exists() and not current.is_dir():
                kept = self._set_aside(current)
                self.on_notice(f"'{current.relative_to(self.root).as_posix()}' was a file where a folder belongs; kept aside as {kept}.")
                break

    def write_text(self, rel_path: str, text: str) -> Path:
        return self.write_bytes(rel_path, self.redactor.text(text).encode("utf-8"))

    def write_model(self, rel_path: str, value: BaseModel) -> Path:
        return self.write_json(rel_path, json.loads(value.model_dump_json()))

    def write_json(self, rel_path: str, value: object) -> Path:
        data = self.redactor.data(json.loads(json.dumps(value, default=str)))
        return self.write_bytes(rel_path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    def append_log(self, line: str) -> None:
        """The run log is appended locally and pushed whole by `sync()` (volumes cannot append)."""
        try:
            with self.path(LOG_FILE).open("a", encoding="utf-8") as handle:
                handle.write(self.redactor.text(line).rstrip("\n") + "\n")
        except OSError as exc:
            raise os_error(exc, f"append to {LOG_FILE}", self.root) from None

    # --- lock and sync ----------------------------------------------------------------------
    def lock_medium(self) -> Any:
        """Where this session's lock lives: the backend's durable home, else the local folder."""
        from .lock import LocalLockMedium

        medium = getattr(self.backend, "lock_medium", None)
        return medium() if medium else LocalLockMedium(self.root)

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

"""Sessions in a Unity Catalog Volume (`/Volumes/<catalog>/<schema>/<volume>/...`).

The agent always works in a local working folder (a cache under the system temp folder); the
backend pulls the stored session into it when the session opens and pushes every file the store
writes, so a retried or resumed run on another machine continues where the last one stopped.

Two backends, chosen by what this machine can see:
- On Databricks compute the volume is mounted at `/Volumes` (FUSE). That mount takes no appends,
  no random writes and no hard links, so a push writes the whole file in one sequential pass to a
  hidden temporary name beside the target and renames it into place (readers never see half a
  file); if the mount refuses the rename, the file is written whole straight to its name.
- Anywhere else, the Files API of databricks-sdk with the standard Databricks credentials. We call
  the plain REST endpoints (`databricks.sdk.service.files.FilesAPI`: one PUT or GET per file)
  rather than `WorkspaceClient().files`, whose transfer machinery first asks for presigned cloud
  URLs - built for multi-GB files, it costs an extra round trip per file of a few KB and does not
  retry server errors on the Files API itself.
Both retry transient failures (HTTP 5xx/429, I/O errors on the mount) a bounded number of times.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import requests
from databricks.sdk.errors import (
    AlreadyExists,
    DatabricksError,
    DeadlineExceeded,
    InternalError,
    NotFound,
    PermissionDenied,
    ResourceConflict,
    TemporarilyUnavailable,
    TooManyRequests,
    Unauthenticated,
)

from ..redaction import Redactor
from .base import SessionStore, StoreError, atomic_write_bytes, check_session_id
from .lock import LocalLockMedium

T = TypeVar("T")

VOLUMES = PurePosixPath("/Volumes")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff: `attempts` tries in all, waits capped at `max_delay`."""

    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delays(self) -> list[float]:
        return [min(self.first_delay * 2**i, self.max_delay) for i in range(self.attempts - 1)]


def with_retries(
    action: Callable[[], T],
    *,
    what: str,
    transient: Callable[[BaseException], bool],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `action`, retrying transient failures; the last failure becomes a StoreError about `what`."""
    for delay in [*policy.delays(), None]:
        try:
            return action()
        except StoreError:
            raise
        except Exception as exc:
            if delay is None or not transient(exc):
                raise StoreError(f"Could not {what}: {_describe(exc)}.") from None
            sleep(delay)
    raise AssertionError("unreachable")


# --- paths -------------------------------------------------------------------------------------
def volume_root(volume_path: str) -> PurePosixPath:
    """`/Volumes/<catalog>/<schema>/<volume>` of a volume path, or a StoreError saying how to write one."""
    path = PurePosixPath(volume_path.rstrip("/"))
    if path.parts[:2] != ("/", "Volumes") or len(path.parts) < 5 or ".." in path.parts:
        raise StoreError(
            f"{volume_path!r} is not a Unity Catalog Volume path: use /Volumes/<catalog>/<schema>/<volume>[/folder]."
        )
    return PurePosixPath(*path.parts[:5])


def session_dir(volume_path: str, session_id: str) -> PurePosixPath:
    volume_root(volume_path)
    return PurePosixPath(volume_path.rstrip("/")) / "sessions" / check_session_id(session_id)


def default_cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "mlflow-eval-agent" / "volume-sessions"


def local_working_folder(volume_path: str, session_id: str, cache_root: Path | None = None) -> Path:
    """The local copy of a volume session; keyed by the volume path so two volumes never mix."""
    key = hashlib.sha256(volume_path.rstrip("/").encode()).hexdigest()[:12]
    return (cache_root or default_cache_root()) / key / check_session_id(session_id)


def _local_target(local_root: Path, rel_path: str) -> Path:
    rel = PurePosixPath(rel_path)
    target = (local_root / rel).resolve()
    if rel.is_absolute() or ".." in rel.parts or not target.is_relative_to(local_root.resolve()):
        raise StoreError(f"The stored session holds {rel_path!r}, which points outside the session folder.")
    return target


def _skipped(rel_path: str) -> bool:
    """Hidden names are temporary files of an interrupted write, never session content."""
    return any(part.startswith(".") for part in PurePosixPath(rel_path).parts)


# --- FUSE (on Databricks compute) ------------------------------------------------------------------
class FuseVolumeBackend:
    """A session folder on the `/Volumes` FUSE mount of Databricks compute."""

    def __init__(self, mount_root: Path, remote_dir: PurePosixPath, retry: RetryPolicy | None = None):
        """`remote_dir` is the session's /Volumes path; `mount_root` is where /Volumes is mounted ("/")."""
        self.remote_dir = mount_root / remote_dir.relative_to("/")
        self.volume_name = volume_root(remote_dir.as_posix()).as_posix()
        self.volume_dir = mount_root / self.volume_name.lstrip("/")
        self.description = remote_dir.as_posix()
        self.retry = retry or RetryPolicy()

    def pull(self, local_root: Path) -> int:
        try:
            if not self.volume_dir.is_dir():
                raise StoreError(_missing_volume(self.volume_name, self.description))
            if not self.remote_dir.is_dir():
                return 0
            sources = sorted(p for p in self.remote_dir.rglob("*") if p.is_file())
        except PermissionError:  # the mount refuses a listing without READ VOLUME
            raise StoreError(_denied(f"read {self.description}", self.volume_name)) from None
        count = 0
        for source in sources:
            rel = source.relative_to(self.remote_dir).as_posix()
            if _skipped(rel):
                continue
            data = self._retry(source.read_bytes, f"read {source}")
            atomic_write_bytes(_local_target(local_root, rel), data)
            count += 1
        return count

    def push(self, local_root: Path, rel_path: str) -> None:
        data = (local_root / rel_path).read_bytes()
        target = self.remote_dir / rel_path
        self._retry(lambda: _write_whole(target, data), f"write {target}")

    def lock_medium(self) -> LocalLockMedium:
        """The session lock lives in the volume itself (O_EXCL create through the mount)."""
        return LocalLockMedium(self.remote_dir)

    def _retry(self, action: Callable[[], T], what: str) -> T:
        def attempt() -> T:
            try:
                return action()
            except PermissionError:
                raise StoreError(_denied(what, self.volume_name)) from None

        return with_retries(attempt, what=what, transient=_transient_os_error, policy=self.retry)


def _write_whole(target: Path, data: bytes) -> None:
    """Write a hidden temp file beside `target` in one sequential pass, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        temp.write_bytes(data)  # open, one sequential write, close: the only kind of write FUSE takes
    except OSError:
        temp.unlink(missing_ok=True)
        raise
    try:
        os.replace(temp, target)
    except OSError:
        # A mount that refuses the rename still takes a whole-file write to the final name.
        temp.unlink(missing_ok=True)
        target.write_bytes(data)


def _transient_os_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))


# --- Files API (off Databricks compute) -------------------------------------------------------------
class FilesApiVolumeBackend:
    """A session folder in a volume, reached through the Files API REST endpoints."""

    def __init__(self, files: Any, remote_dir: str, volume_dir: str, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.files, self.remote_dir, self.volume_dir = files, remote_dir.rstrip("/"), volume_dir
        self.description = self.remote_dir
        self.retry, self.sleep = retry or RetryPolicy(), sleep
        self._made_dirs: set[str] = set()

    def pull(self, local_root: Path) -> int:
        self._check_volume()
        count = 0
        for remote in self._list_files(self.remote_dir):
            rel = remote[len(self.remote_dir) + 1 :]
            if _skipped(rel):
                continue
            data = self._call(lambda: self.files.download(remote).contents.read(), f"download {remote}")
            atomic_write_bytes(_local_target(local_root, rel), data)
            count += 1
        return count

    def push(self, local_root: Path, rel_path: str) -> None:
        data = (local_root / rel_path).read_bytes()
        remote = f"{self.remote_dir}/{rel_path}"
        parent = remote.rsplit("/", 1)[0]
        if parent not in self._made_dirs:  # idempotent; creates missing parents too
            self._call(lambda: self.files.create_directory(parent), f"create {parent}")
            self._made_dirs.add(parent)
        self._call(lambda: self._upload(remote, data), f"upload {remote}")

    def lock_medium(self) -> FilesApiLockMedium:
        return FilesApiLockMedium(self)

    def _upload(self, remote: str, data: bytes) -> None:
        try:
            self.files.upload(remote, io.BytesIO(data), overwrite=True)
        except TypeError as exc:
            # databricks-sdk 0.162 fails with a TypeError while describing a non-JSON error reply
            # to an upload (a gateway's 502/504 page): treat it as the server error it stands for.
            raise _UnreadableServerError(f"the server answered with an error page ({exc})") from None

    def _check_volume(self) -> None:
        try:
            self._call(lambda: self.files.get_directory_metadata(self.volume_dir), f"open {self.volume_dir}")
        except _Missing:
            raise StoreError(_missing_volume(self.volume_dir, self.remote_dir)) from None

    def _list_files(self, directory: str) -> list[str]:
        """Every file below `directory` (recursive); none when the directory does not exist yet."""
        try:
            entries = self._call(lambda: list(self.files.list_directory_contents(directory)), f"list {directory}")
        except _Missing:
            return []
        found: list[str] = []
        for entry in entries:
            path = (entry.path or f"{directory}/{entry.name}").rstrip("/")
            found += self._list_files(path) if entry.is_directory else [path]
        return sorted(found)

    def _call(self, action: Callable[[], T], what: str) -> T:
        """Run one API call with bounded retries; failures become StoreErrors that say what to do."""

        def attempt() -> T:
            try:
                return action()
            except NotFound as exc:
                raise _Missing(f"Could not {what}: not found ({_describe(exc)}).") from None
            except Unauthenticated as exc:
                raise StoreError(
                    f"Could not {what}: Databricks rejected the credentials ({_describe(exc)}). "
                    "Check DATABRICKS_HOST and DATABRICKS_TOKEN, or your profile."
                ) from None
            except PermissionDenied as exc:
                raise StoreError(_denied(f"{what} ({_describe(exc)})", self.volume_dir)) from None

        return with_retries(attempt, what=what, transient=_transient_api_error, policy=self.retry, sleep=self.sleep)


class FilesApiLockMedium:
    """Lock files in the volume through the Files API: `upload(overwrite=False)` is create-if-absent
    (the API answers 409 ALREADY_EXISTS when the file exists)."""

    def __init__(self, backend: FilesApiVolumeBackend):
        self.backend = backend
        self.where = backend.remote_dir

    def create(self, name: str, data: bytes) -> bool:
        remote = f"{self.backend.remote_dir}/{name}"
        if self.backend.remote_dir not in self.backend._made_dirs:
            self.backend._call(lambda: self.backend.files.create_directory(self.backend.remote_dir), f"create {self.backend.remote_dir}")
            self.backend._made_dirs.add(self.backend.remote_dir)

        def upload() -> bool:
            try:
                self.backend.files.upload(remote, io.BytesIO(data), overwrite=False)
            except (AlreadyExists, ResourceConflict):
                return False
            return True

        return self.backend._call(upload, f"lock {remote}")

    def read(self, name: str) -> bytes | None:
        remote = f"{self.backend.remote_dir}/{name}"
        try:
            return self.backend._call(lambda: self.backend.files.download(remote).contents.read(), f"read {remote}")
        except _Missing:
            return None

    def replace(self, name: str, data: bytes) -> None:
        remote = f"{self.backend.remote_dir}/{name}"
        self.backend._call(lambda: self.backend._upload(remote, data), f"renew {remote}")

    def delete(self, name: str) -> None:
        remote = f"{self.backend.remote_dir}/{name}"
        try:
            self.backend._call(lambda: self.backend.files.delete(remote), f"delete {remote}")
        except StoreError:
            pass  # a lock that cannot be removed is found stale (or reported) by the next run


class _Missing(StoreError):
    """The path is not there (404); callers decide whether that is an error."""


class _UnreadableServerError(Exception):
    """A server error whose reply the SDK could not parse; retried like any 5xx."""


def _transient_api_error(exc: BaseException) -> bool:
    if isinstance(exc, (InternalError, TemporarilyUnavailable, DeadlineExceeded, TooManyRequests, _UnreadableServerError)):
        return True
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, TimeoutError)):
        return True
    # A status the SDK does not map (502 Bad Gateway, say) arrives as the bare base class.
    return type(exc) is DatabricksError


def _denied(what: str, volume_dir: str) -> str:
    """One sentence for a refused read or write: which volume, and the grants that fix it."""
    catalog, schema, volume = PurePosixPath(volume_dir).parts[2:5]
    return (f"Could not {what}: permission denied. Ask for READ VOLUME and WRITE VOLUME on {catalog}.{schema}.{volume} "
            f"(and USE CATALOG on {catalog}, USE SCHEMA on {catalog}.{schema}) for the identity that runs this.")


def _missing_volume(volume_dir: str, where: str) -> str:
    catalog, schema, volume = PurePosixPath(volume_dir).parts[2:5]
    return (f"The volume {volume_dir} does not exist or is not visible to you (session {where}). "
            f"Create it with `CREATE VOLUME {catalog}.{schema}.{volume}` or fix --volume-path.")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).split(". Config:")[0][:200]  # the SDK appends its whole config
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- opening a session -----------------------------------------------------------------------------
def files_api_for(workspace: Any | None) -> Any:
    """The Files API of `workspace`, or of a WorkspaceClient built from the standard credentials."""
    from databricks.sdk.service.files import FilesAPI

    if workspace is None:
        from databricks.sdk import WorkspaceClient

        try:
            workspace = WorkspaceClient()
        except Exception as exc:  # the SDK raises ValueError for every kind of missing configuration
            reason = str(exc).split(". Config:")[0][:200]
            raise StoreError(
                f"A /Volumes path needs Databricks credentials here ({reason}). Run on Databricks, or set "
                "DATABRICKS_HOST and DATABRICKS_TOKEN (or DATABRICKS_CONFIG_PROFILE), or use a local --volume-path."
            ) from None
    return FilesAPI(workspace.api_client)


def open_volume_session(
    volume_path: str,
    session_id: str,
    *,
    workspace: Any | None = None,
    mount_root: Path = Path("/"),
    cache_root: Path | None = None,
    retry: RetryPolicy | None = None,
    redactor: Redactor | None = None,
    pull: bool = True,
) -> SessionStore:
    """Open a volume session: pick the backend, pull the stored files into the local working folder.

    `mount_root` is where `/Volumes` would be mounted (tests point it at a temp folder); when it has
    no `Volumes` folder the Files API is used, through `workspace` or the standard credentials.
    """
    remote = session_dir(volume_path, session_id)
    root = volume_root(volume_path)
    mounted = mount_root / VOLUMES.relative_to("/")
    if workspace is None and mounted.is_dir():
        backend: Any = FuseVolumeBackend(mount_root, remote, retry)
    else:
        backend = FilesApiVolumeBackend(files_api_for(workspace), remote.as_posix(), root.as_posix(), retry)
    store = SessionStore(local_working_folder(volume_path, session_id, cache_root), session_id, backend, redactor)
    if pull:
        store.pull()
    return store

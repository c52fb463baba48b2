"""One run per session at a time: an exclusive lock file holding who runs it (pid, host, start time).

The lock is a file created only if absent, in the session's durable home: `O_CREAT | O_EXCL` on a
local folder or the `/Volumes` FUSE mount, `upload(overwrite=False)` on the Files API (which answers
409 ALREADY_EXISTS when the file is there). A second run reads the holder and stops with one line
naming it. A lock left by a dead process on this host (kill -9, a crash) is taken over: the taker
first creates a takeover marker the same exclusive way, so of two runs that find the same stale
lock only one replaces it; the other then sees the new, live holder.
A holder on another host cannot be asked whether it lives (a retried Databricks job task lands on
a new cluster), so the lock is a lease: its holder renews it every RENEW_S seconds from a
background thread, and a lock from another host not renewed for LEASE_S is taken over the same way.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from .base import StoreError, os_error

LOCK_FILE = ".lock"
TAKEOVER_FILE = ".lock.takeover"
TAKEOVER_STALE_S = 120.0  # a takeover marker older than this was left by a taker that died
RENEW_S = 60.0  # how often the holder renews its lease
LEASE_S = 600.0  # a lock from another host not renewed for this long was left by a run that is gone


class LockHeld(StoreError):
    """Another live run holds the session (exit 2: nothing was touched)."""


class LockMedium(Protocol):
    """Where lock files live; `create` must be atomic create-if-absent."""

    where: str

    def create(self, name: str, data: bytes) -> bool:
        """Write `name` if it does not exist; False when it already does."""

    def read(self, name: str) -> bytes | None: ...
    def replace(self, name: str, data: bytes) -> None:
        """Overwrite `name` (the holder renewing its lease)."""

    def delete(self, name: str) -> None: ...


class LockInfo(BaseModel):
    pid: int
    host: str
    started_at: str
    pid_started: str | None = None  # the process's start time (/proc), so a reused pid is not mistaken for it
    token: str
    renewed_at: float | None = None  # epoch seconds of the last renewal of the lease

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def process_alive(pid: int, started: str | None = None) -> bool:
    """True while `pid` runs (and, when `started` is known, is the same process, not a reused pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    if started is not None:
        now = _process_start(pid)
        if now is not None and now != started:
            return False
    return True


def _me(now: float) -> LockInfo:
    return LockInfo(
        pid=os.getpid(), host=socket.gethostname(), started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        pid_started=_process_start(os.getpid()), token=os.urandom(8).hex(), renewed_at=now,
    )


@dataclass
class LocalLockMedium:
    """A folder on a local disk or the FUSE mount."""

    folder: Path

    @property
    def where(self) -> str:
        return str(self.folder)

    def create(self, name: str, data: bytes) -> bool:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise os_error(exc, "lock the session", self.folder) from None
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, "read the session lock", self.folder) from None

    def replace(self, name: str, data: bytes) -> None:
        tmp = self.folder / f"{name}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.folder / name)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_error(exc, "renew the session lock", self.folder) from None

    def delete(self, name: str) -> None:
        try:
            (self.folder / name).unlink(missing_ok=True)
        except OSError:
            pass


class SessionLock:
    """`with SessionLock(medium, session_id):` holds the session for this process, or raises LockHeld."""

    def __init__(self, medium: LockMedium, session_id: str, clock: Any = time.time, renew_every_s: float | None = RENEW_S):
        self.medium, self.session_id, self.clock = medium, session_id, clock
        self.info: LockInfo | None = None
        self.took_over: LockInfo | None = None  # the dead holder whose lock this run replaced
        self.renew_every_s = renew_every_s  # None: no background renewal (tests renew by hand)
        self._stop: Any = None

    def __enter__(self) -> SessionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> LockInfo:
        me = _me(self.clock())
        for _ in range(3):  # a holder may release between our create and our read
            if self.medium.create(LOCK_FILE, me.model_dump_json().encode()):
                self.info = me
                self._start_renewing()
                return me
            holder = self._holder()
            if holder is None:
                continue
            if self._stale(holder):
                self._take_over(holder, me)
                self._start_renewing()
                return me
            raise LockHeld(self._held_message(holder))
        raise LockHeld(f"Session {self.session_id} is being locked and released by another run at {self.medium.where}; try again.")

    def renew(self) -> bool:
        """Renew the lease; False (and no write) when the lock is no longer ours."""
        if self.info is None:
            return False
        holder = self._holder()
        if holder is None or holder.token != self.info.token:
            return False
        self.info = self.info.model_copy(update={"renewed_at": self.clock()})
        self.medium.replace(LOCK_FILE, self.info.model_dump_json().encode())
        return True

    def _start_renewing(self) -> None:
        if self.renew_every_s is None:
            return
        import threading

        stop = self._stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.renew_every_s):
                try:
                    if not self.renew():
                        return
                except Exception:  # a failed renewal is retried at the next tick; the lease is 10x longer
                    continue

        threading.Thread(target=loop, name="session-lock-lease", daemon=True).start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        if self.info is None:
            return
        holder = self._holder()
        if holder is not None and holder.token == self.info.token:
            self.medium.delete(LOCK_FILE)
        self.info = None

    # --- internals ---------------------------------------------------------------------------
    def _holder(self) -> LockInfo | None:
        raw = self.medium.read(LOCK_FILE)
        if raw is None:
            return None
        try:
            return LockInfo.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            # Half-written by a run killed while locking: no pid to ask, so it counts as dead.
            return LockInfo(pid=0, host=socket.gethostname(), started_at="?", token=f"unreadable:{raw[:32].hex()}")

    def _stale(self, holder: LockInfo) -> bool:
        if holder.host == socket.gethostname():
            return not process_alive(holder.pid, holder.pid_started)
        return holder.renewed_at is not None and self.clock() - holder.renewed_at > LEASE_S

    def _take_over(self, stale: LockInfo, me: LockInfo) -> LockInfo:
        marker = json.dumps({"token": me.token, "at": self.clock()}).encode()
        if not self.medium.create(TAKEOVER_FILE, marker):
            if not self._old_marker():
                raise LockHeld(f"Session {self.session_id}: another run is taking over the stale lock at {self.medium.where}; try again.")
            self.medium.delete(TAKEOVER_FILE)
            if not self.medium.create(TAKEOVER_FILE, marker):
                raise LockHeld(f"Session {self.session_id}: another run is taking over the stale lock at {self.medium.where}; try again.")
        try:
            current = self._holder()
            if current is not None and current.token != stale.token:
                if self._stale(current):
                    stale = current
                else:
                    raise LockHeld(self._held_message(current))
            self.medium.delete(LOCK_FILE)
            if not self.medium.create(LOCK_FILE, me.model_dump_json().encode()):
                raise LockHeld(self._held_message(self._holder() or stale))
        finally:
            self.medium.delete(TAKEOVER_FILE)
        self.info, self.took_over = me, stale
        return me

    def _old_marker(self) -> bool:
        raw = self.medium.read(TAKEOVER_FILE)
        try:
            at = float(json.loads(raw or b"{}").get("at", 0))
        except (ValueError, AttributeError):
            at = 0.0
        return self.clock() - at > TAKEOVER_STALE_S

    def _held_message(self, holder: LockInfo) -> str:
        here = holder.host == socket.gethostname()
        gone = "" if here else (f" A run on another machine renews its lock every {RENEW_S:.0f} s; it is taken over {LEASE_S / 60:.0f} min after "
                                f"its last renewal (or delete {self.medium.where}/{LOCK_FILE} when you know that run is gone).")
        return f"Session {self.session_id} is already running ({holder.describe()}): wait for it to end, or use another --session-id.{gone}"

"""The session lock is a lease across machines: a retried job task on a new cluster takes over the lock
of a run that stopped renewing it, and never one that still renews it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlflow_eval_agent.store.lock import LEASE_S, LOCK_FILE, LocalLockMedium, LockHeld, SessionLock


def _other_host(tmp_path: Path, renewed_at: float | None) -> None:
    holder = {"pid": 1, "host": "another-machine", "started_at": "t", "token": "theirs", "renewed_at": renewed_at}
    (tmp_path / LOCK_FILE).write_text(json.dumps(holder))


def test_another_hosts_lease_is_respected_while_renewed_and_taken_over_when_it_lapses(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    now = [10_000.0]
    _other_host(tmp_path, renewed_at=now[0] - LEASE_S + 30)  # renewed 30 s inside the lease
    with pytest.raises(LockHeld, match="another-machine.*renews its lock"):
        SessionLock(medium, "s1", clock=lambda: now[0], renew_every_s=None).acquire()
    now[0] += 60  # no renewal for longer than the lease: that run is gone
    lock = SessionLock(medium, "s1", clock=lambda: now[0], renew_every_s=None)
    lock.acquire()
    assert lock.took_over is not None and lock.took_over.token == "theirs"
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_holder_renews_its_lease_and_stops_once_the_lock_is_not_its_own(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    now = [5_000.0]
    lock = SessionLock(medium, "s1", clock=lambda: now[0], renew_every_s=None)
    lock.acquire()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["renewed_at"] == 5_000.0
    now[0] += 100
    assert lock.renew() and json.loads((tmp_path / LOCK_FILE).read_text())["renewed_at"] == 5_100.0
    _other_host(tmp_path, renewed_at=now[0])  # someone replaced it (its lease had lapsed)
    assert not lock.renew() and json.loads((tmp_path / LOCK_FILE).read_text())["token"] == "theirs"
    lock.release()
    assert (tmp_path / LOCK_FILE).exists(), "a lock that is not ours is never removed"


def test_the_background_renewal_keeps_the_lease_fresh(tmp_path: Path) -> None:
    medium = LocalLockMedium(tmp_path)
    with SessionLock(medium, "s1", renew_every_s=0.05):
        first = json.loads((tmp_path / LOCK_FILE).read_text())["renewed_at"]
        deadline = time.time() + 10
        while json.loads((tmp_path / LOCK_FILE).read_text())["renewed_at"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["renewed_at"] > first
    assert not (tmp_path / LOCK_FILE).exists()


def test_an_old_lock_without_a_lease_from_another_host_is_still_reported(tmp_path: Path) -> None:
    _other_host(tmp_path, renewed_at=None)  # written before leases: nothing says when it was last alive
    with pytest.raises(LockHeld, match="another-machine"):
        SessionLock(LocalLockMedium(tmp_path), "s1", renew_every_s=None).acquire()

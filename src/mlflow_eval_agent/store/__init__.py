"""Session storage: one interface (`SessionStore`), backends chosen from the volume path."""

from __future__ import annotations

from .base import (
    LOG_FILE,
    CorruptStateError,
    SessionStore,
    StorageBackend,
    StoreError,
    check_session_id,
    new_session_id,
)
from .local import open_local_session
from ..redaction import Redactor


def is_volume_path(volume_path: str) -> bool:
    return volume_path.startswith("/Volumes/")


def open_session_store(volume_path: str, session_id: str, redactor: Redactor | None = None, pull: bool = True) -> SessionStore:
    """Open (and pull) a session: a local folder, or a Unity Catalog Volume. Every text the store
    writes passes `redactor` (a run passes `settings.redactor()`)."""
    if is_volume_path(volume_path):
        from .volume import open_volume_session  # databricks-sdk is imported only when needed

        return open_volume_session(volume_path, session_id, redactor=redactor, pull=pull)
    return open_local_session(volume_path, session_id, redactor=redactor)


__all__ = [
    "LOG_FILE",
    "CorruptStateError",
    "SessionStore",
    "StorageBackend",
    "StoreError",
    "check_session_id",
    "is_volume_path",
    "new_session_id",
    "open_session_store",
]

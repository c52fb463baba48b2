"""Sessions in a plain local folder: the working folder is the durable copy, nothing to sync."""

from __future__ import annotations

from pathlib import Path

from ..redaction import Redactor
from .base import SessionStore, check_session_id


def open_local_session(volume_path: str, session_id: str, redactor: Redactor | None = None) -> SessionStore:
    root = Path(volume_path).expanduser() / "sessions" / check_session_id(session_id)
    return SessionStore(root, session_id, redactor=redactor)


def local_session_exists(volume_path: str, session_id: str) -> bool:
    return (Path(volume_path).expanduser() / "sessions" / session_id).is_dir()

"""What a session remembers about where it ran: the tracking store and the experiment.

`validate --session-id <id>` re-runs a session's suite against the store the session was built on,
from any folder, without the user repeating `--tracking-uri`. The URI is stored absolute (a relative
sqlite path is resolved when the session starts) and, like every state file, written atomically and
redacted: a URI that carried a password is stored without it and must be given again.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from ..redaction import REDACTED
from .base import SessionStore

SESSION_FILE = "state/session.json"


class SessionMeta(BaseModel):
    tracking_uri: str = Field(description="The tracking store the session read and evaluated, absolute.")
    experiment_id: str = Field(description="The experiment whose traces the suite evaluates.")
    created_at: str
    updated_at: str

    @property
    def usable_uri(self) -> str | None:
        """The stored URI, unless redaction took part of it (a password in the URL)."""
        return None if REDACTED in self.tracking_uri else self.tracking_uri


def remember_session(store: SessionStore, tracking_uri: str, experiment_id: str) -> SessionMeta:
    """Record (or update, on resume) where this session runs."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    previous = recall_session(store)
    meta = SessionMeta(tracking_uri=tracking_uri, experiment_id=experiment_id, created_at=previous.created_at if previous else now, updated_at=now)
    store.write_model(SESSION_FILE, meta)
    return meta


def recall_session(store: SessionStore) -> SessionMeta | None:
    return store.read_model(SESSION_FILE, SessionMeta)

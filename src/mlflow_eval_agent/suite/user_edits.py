"""Hand edits to `evaluation/` are detected and kept, never overwritten silently.

Right after each render the hash of every file written is recorded (`state/evaluation_hashes.json`,
computed from the files as written). Before the next render, a file whose content no longer has
its recorded hash was edited by someone: after rendering, the edited content is put back, the new
render is left beside it as `<file>.new`, and one line says what was kept. A file deleted by hand
is simply rendered again. The agent path (render and validate tools) and the offline planner both
render through here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from ..store import CorruptStateError, SessionStore

HASH_FILE = "state/evaluation_hashes.json"
RENDERED_SUFFIX = ".new"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recorded_hashes(store: SessionStore) -> dict[str, str]:
    try:
        value = store.read_json(HASH_FILE)
    except CorruptStateError:
        return {}  # moved aside: no edit can be told this time, and the next render records afresh
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def edited_files(store: SessionStore) -> dict[str, bytes]:
    """Suite files whose content differs from what was last rendered: {relative path: their bytes}."""
    edited = {}
    for rel, digest in recorded_hashes(store).items():
        try:
            path = store.path(rel)
        except Exception:  # noqa: BLE001 - a bad entry in the record is ignored
            continue
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if _digest(data) != digest:
                edited[rel] = data
    return edited


def render_keeping_edits(spec: Any, store: SessionStore, validation: Any = None,
                         notice: Callable[[str], None] | None = None) -> tuple[list[str], list[str]]:
    """Render the suite, keeping hand-edited files. Returns (files written, files kept as edited)."""
    from .render import render_suite

    edited = edited_files(store)
    written = render_suite(spec, store, validation)
    hashes = {rel: _digest(store.path(rel).read_bytes()) for rel in written}
    kept = []
    for rel, data in edited.items():
        if rel not in hashes:
            continue
        if _digest(data) != hashes[rel]:
            store.write_bytes(rel + RENDERED_SUFFIX, store.path(rel).read_bytes())
            store.write_bytes(rel, data)
            kept.append(rel)
    store.write_json(HASH_FILE, hashes)
    if kept and notice:
        files = ", ".join(kept)
        notice(f"Kept your edits to {files}: the newly rendered version is beside it as {RENDERED_SUFFIX} "
               "(compare and merge by hand; delete your file to take the new render).")
    return written, kept

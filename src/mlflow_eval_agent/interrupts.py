"""SIGTERM and SIGHUP stop a run exactly like Ctrl-C: the running task is released, state is saved.

A job cancellation sends SIGTERM; a closed terminal sends SIGHUP. Both are forwarded as SIGINT, so
they take Ctrl-C's one path: under `asyncio.run` the main task is cancelled (the loop gives the
task back to pending, the SDK closes the Claude Code child), elsewhere KeyboardInterrupt is raised.
The exit code says which signal stopped the run: 128 + its number (130 Ctrl-C, 143 SIGTERM,
129 SIGHUP), as shells and job runners report it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

FORWARDED = (signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []


def last_signal() -> int:
    """The signal that interrupted this process (SIGINT when none was forwarded)."""
    return _received[-1] if _received else int(signal.SIGINT)


def exit_code_for(signum: int | None = None) -> int:
    return 128 + (signum if signum is not None else last_signal())


def signal_name(signum: int | None = None) -> str:
    value = signum if signum is not None else last_signal()
    return {int(signal.SIGINT): "Ctrl-C", int(signal.SIGTERM): "SIGTERM", int(signal.SIGHUP): "SIGHUP"}.get(value, f"signal {value}")


def _forward(signum: int, frame: object) -> None:
    _received.append(signum)
    if callable(signal.getsignal(signal.SIGINT)):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C's handler runs next: asyncio's, or KeyboardInterrupt
    else:  # SIGINT ignored (a background job of a script): interrupt directly
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP act as Ctrl-C (main thread only; elsewhere a no-op).

    SIGINT's own handler is left alone: asyncio.run installs its graceful one only over Python's default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {}
    for sig in FORWARDED:
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, _forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)

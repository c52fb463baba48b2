"""Headless Chromium driven over the DevTools protocol, for tests that look at pages as a user would.

Debian's `chromium` (CI installs it: `.ci/run`); tests skip with the reason when it is absent. The
browser starts isolated (a new empty profile, no background networking, no component updates, no
sync, no QUIC) and every page load records console messages, uncaught exceptions and the URLs the
page requested, so a test can assert "no console errors" and "nothing from the network".
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps", "--mute-audio",
    "--hide-scrollbars",
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    return path


@dataclass
class PageLoad:
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [f"console.{lvl}: {text}" for lvl, text in self.console if lvl in ("error", "assert")] + self.exceptions


class Browser:
    """One headless Chromium with one page; `load(url)` navigates and records what the page did."""

    def __init__(self, width: int = 1200, height: int = 900):
        from websockets.sync.client import connect

        self._profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self.process = subprocess.Popen(
            [require_chromium(), *FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port = self._port()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        self._connection = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=10)
        self.ws = self._connection.__enter__()
        self._ids = itertools.count(1)
        self._events: list[dict] = []
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _port(self, timeout_s: float = 30) -> int:
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method: str, timeout_s: float = 30, **params) -> dict:
        message_id = next(self._ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._events.append(message)

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._events.append(json.loads(self.ws.recv(timeout=max(0.05, deadline - time.monotonic()))))
            except TimeoutError:
                return

    def load(self, url: str, settle_s: float = 1.0, timeout_s: float = 30) -> PageLoad:
        self._events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load in {timeout_s} s")
            self._drain(0.2)
        self._drain(settle_s)
        return self._page_load()

    def show(self, fragment: str, settle_s: float = 1.0) -> PageLoad:
        """Go to another route of a single-page app (`#/...`): no new document, so no load event."""
        self._events.clear()
        self.evaluate(f"location.hash = {json.dumps(fragment)}")
        self._drain(settle_s)
        return self._page_load()

    def _page_load(self) -> PageLoad:
        load = PageLoad()
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                load.console.append((params.get("type", ""), text))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                load.exceptions.append(str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                load.console.append(("error", params["entry"].get("text", "")))
            elif method == "Network.requestWillBeSent":
                load.requests.append(params.get("request", {}).get("url", ""))
            elif method == "Network.loadingFailed":
                load.failed.append(params.get("errorText", ""))
        return load

    def evaluate(self, expression: str):  # noqa: ANN201 - any JSON value
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for_text(self, *texts: str, timeout_s: float = 60) -> str:
        """Poll the page's visible text until it holds every one of `texts` (a single-page app renders late)."""
        deadline = time.monotonic() + timeout_s
        body = ""
        while time.monotonic() < deadline:
            body = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if all(t in body for t in texts):
                return body
            self._drain(0.5)
        missing = [t for t in texts if t not in body]
        raise AssertionError(f"the page never showed {missing}; it shows: {body[:3000]}")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict = {"format": "png"}
        if full_page:
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1})
        data = self.call("Page.captureScreenshot", timeout_s=60, **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.__exit__(None, None, None)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)


@contextlib.contextmanager
def browser(width: int = 1200, height: int = 900) -> Iterator[Browser]:
    b = Browser(width, height)
    try:
        yield b
    finally:
        b.close()


def colour_share(png: Path, rgb: tuple[int, int, int], box: tuple[int, int, int, int] | None = None, tolerance: int = 12) -> float:
    """Share of the screenshot's pixels (inside `box`) within `tolerance` of the colour `rgb`."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png.read_bytes())) as image:
        region = image.convert("RGB").crop(box) if box else image.convert("RGB")
        pixels = np.asarray(region, dtype=np.int16).reshape(-1, 3)
    close = np.all(np.abs(pixels - np.array(rgb, dtype=np.int16)) <= tolerance, axis=1)
    return float(close.mean()) if len(pixels) else 0.0

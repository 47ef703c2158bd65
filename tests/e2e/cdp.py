"""A headless Chromium (Debian `chromium`) driven through the DevTools protocol over a WebSocket; test helper."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from cli.up import stop_process

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One page target: `call` sends a DevTools command and returns its result; events are ignored."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self._next_id = ws, 0

    def call(self, method: str, timeout_s: float = 10.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") != self._next_id:
                continue  # an event (we enable no domains, but Chromium may still send some)
            if "error" in msg:
                raise RuntimeError(f"{method}: {msg['error']}")
            result: dict[str, Any] = msg["result"]
            return result

    def evaluate(self, expression: str) -> Any:
        """Value of a JS expression in the page (awaited if it is a promise); raises on a JS exception."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error in {expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float, what: str, show: str = "null") -> Any:
        """Poll a JS expression until it is truthy; fail saying what did not happen (and the value of `show`)."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        seen = self.evaluate(f"JSON.stringify({show})")
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what} ({expression} = {value!r}); {seen}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(user_data_dir: Path, timeout_s: float = 30.0) -> Iterator[Page]:
    """Start headless Chromium on a free DevTools port and yield its first page; kill it afterwards."""
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no chromium binary: install the Debian package `chromium`")
    argv = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-port=0", "about:blank"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port = _devtools_port(user_data_dir, proc, timeout_s)
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(url, max_size=64 * 2**20, open_timeout=10) as ws:
            yield Page(ws)
    finally:
        stop_process(proc, "chromium", 5.0)
        with contextlib.suppress(ProcessLookupError):  # its renderer and GPU helpers, in the session it leads
            os.killpg(proc.pid, signal.SIGKILL)


def _devtools_port(user_data_dir: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Chromium writes the port it picked (--remote-debugging-port=0) to DevToolsActivePort."""
    marker = user_data_dir / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} during start-up")
        if marker.exists():
            lines = marker.read_text().splitlines()
            if lines and lines[0].isdigit():
                return int(lines[0])
        time.sleep(0.1)
    raise RuntimeError(f"chromium did not open its DevTools port within {timeout_s} s")

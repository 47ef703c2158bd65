"""Integration fixtures: a tiny trained model in a registry, `vigil up`'s Stack on a private Redis, live helpers."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from cli.up import Stack, redis_reachable
from tests.conftest import free_port
from tests.rtsp import rtsp_server_factory  # noqa: F401  (fixture)
from tests.service.worker.models_util import TrainedModel

CONTEXT = 4  # FFP tiny predicts frame t from t-4..t-1: the first 4 frames of a stream get no score
FAULT_REPORT: list[str] = []  # what the fault tests measured (live gaps, frames lost/duplicated), shown at the end


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FAULT_REPORT:
        terminalreporter.section("fault costs measured")
        for line in FAULT_REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def model_root(trained_store: TrainedModel) -> Path:
    """The shared registry holding a tiny trained, calibrated FFP promoted to production (read-only)."""
    return trained_store.root


def stack_env(redis_url: str, model_root: Path, **extra: str) -> dict[str, str]:
    """Environment for the children: only what they need, fast timings so faults are noticed in seconds."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        {
            "VIGIL_REDIS__URL": redis_url,
            "VIGIL_REDIS__STARTUP_WAIT_S": "30",
            "VIGIL_STORE__ROOT": str(model_root),
            "VIGIL_CLIPS__DIR": str(model_root.parent / "clips"),  # alert clips of the stack's alerts
            "VIGIL_WORKER__DEVICE": "cpu",
            "VIGIL_WORKER__MAX_WAIT_MS": "10",
            "VIGIL_WORKER__HEARTBEAT_TTL_S": "3",
            "VIGIL_INGEST__STALL_TIMEOUT_S": "3",
            "VIGIL_INGEST__RECONNECT_MAX_S": "2",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def make_stack(model_root: Path) -> Iterator[Callable[..., Stack]]:
    """Factory: make_stack(redis_url, **env) -> a started Stack (api + ingest + worker processes), stopped after."""
    stacks: list[Stack] = []

    def make(redis_url: str, start_redis: bool = False, **extra: str) -> Stack:
        stack = Stack(
            redis_url=redis_url,
            api_port=free_port(),
            start_redis=start_redis,
            env=stack_env(redis_url, model_root, **extra),
            grace_s=10.0,
        )
        stacks.append(stack)
        stack.start()
        stack.wait_ready(90)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
        assert not stack.procs


def ws_connect(stack: Stack, path: str) -> ClientConnection:
    return connect(stack.api_url.replace("http", "ws", 1) + path, open_timeout=10)


def collect(
    ws: ClientConnection, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float
) -> list[dict[str, Any]]:
    """Messages from a WebSocket until `until(messages)` holds; fails on timeout with what arrived."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while not until(got):
        left = deadline - time.monotonic()
        if left <= 0:
            frames = [m.get("frame") for m in got]
            raise AssertionError(
                f"timed out after {timeout_s} s; got {len(got)} messages, frames {frames[:5]}..{frames[-5:]}"
            )
        try:
            got.append(json.loads(ws.recv(timeout=min(left, 1.0))))
        except TimeoutError:
            continue
    return got


def wait_http(
    fn: Callable[[], httpx.Response], ok: Callable[[httpx.Response], bool], timeout_s: float, what: str
) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            r = fn()
            if ok(r):
                return r
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


class PersistentRedis:
    """A redis-server with an append-only file, on a fixed port, so a restart keeps what was written (as a
    production Redis would); `fsync_always` syncs every write, so that even a kill loses nothing."""

    def __init__(self, folder: Path, fsync_always: bool = False) -> None:
        self.folder, self.port, self.fsync_always = folder, free_port(), fsync_always
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None, "redis-server is not installed"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", ""]
        args += ["--appendonly", "yes", *(["--appendfsync", "always"] if self.fsync_always else [])]
        self.proc = subprocess.Popen([exe, *args], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_reachable(self.url, 0.2):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

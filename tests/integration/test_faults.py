"""Faults through the whole stack: a Redis restart heals itself; bad input gets a clear 4xx or a camera error
state, and the processes and the other cameras go on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from cli.up import Stack
from tests.conftest import free_port
from tests.integration.conftest import PersistentRedis, collect, wait_http, ws_connect
from tests.rtsp import RtspServer
from tests.service.worker.models_util import MODEL

ADMIN = "admin-key-for-fault-tests"


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.mark.integration
def test_redis_restart_recovers_without_manual_action(
    synthetic_video: tuple[Path, np.ndarray],
    rtsp_server_factory: Callable[..., RtspServer],
    make_stack: Callable[..., Stack],
    persistent_redis: PersistentRedis,
) -> None:
    server = rtsp_server_factory(synthetic_video[0], duration_s=60)
    stack = make_stack(persistent_redis.url)
    with ws_connect(stack, "/ws/scores?camera=door") as ws:
        r = httpx.post(f"{stack.api_url}/cameras", json={"id": "door", "url": server.url(), "model": MODEL}, timeout=10)
        assert r.status_code == 201, r.text
        collect(ws, lambda got: len(got) >= 20, timeout_s=60)

        persistent_redis.kill()
        assert httpx.get(f"{stack.api_url}/readyz", timeout=10).status_code == 503  # says so instead of hanging
        assert httpx.get(f"{stack.api_url}/cameras", timeout=10).status_code == 503
        time.sleep(2)
        persistent_redis.start()

        # The same WebSocket keeps delivering: the API, the ingester and the worker all reconnected on their own.
        after = collect(ws, lambda got: len(got) >= 20, timeout_s=60)
    assert after[-1]["frame"] > after[0]["frame"]
    wait_http(lambda: httpx.get(f"{stack.api_url}/readyz", timeout=10), lambda x: x.status_code == 200, 30, "ready")
    assert not stack.exited(), "a process died during the Redis restart"


@pytest.mark.integration
def test_bad_input_gets_4xx_or_camera_error_and_nothing_crashes(
    synthetic_video: tuple[Path, np.ndarray],
    rtsp_server_factory: Callable[..., RtspServer],
    make_stack: Callable[..., Stack],
    redis_url: str,
) -> None:
    server = rtsp_server_factory(synthetic_video[0], user="op", password="right-pw", duration_s=40)
    stack = make_stack(redis_url, VIGIL_API__ADMIN_KEYS=f'["{ADMIN}"]')
    api, auth = stack.api_url, {"X-API-Key": ADMIN}

    def add(camera: str, url: str, model: str = MODEL, headers: dict[str, str] = auth) -> httpx.Response:
        return httpx.post(
            f"{api}/cameras", json={"id": camera, "url": url, "model": model}, headers=headers, timeout=10
        )

    assert add("good", server.url(), headers={}).status_code == 401  # missing API key
    assert add("good", server.url(), model="nosuch").status_code == 404  # unknown model
    malformed = httpx.post(f"{api}/cameras", content=b"{not json", headers={**auth, "content-type": "application/json"})
    assert malformed.status_code == 422
    assert add("good", "ftp://x/y").status_code == 422  # bad scheme
    assert add("badpass", server.url(password="wrong-pw")).status_code == 201
    assert add("closed", f"rtsp://u:pw@127.0.0.1:{free_port()}/cam").status_code == 201
    assert add("good", server.url()).status_code == 201

    for camera in ("badpass", "closed"):
        status = wait_http(
            lambda c=camera: httpx.get(f"{api}/cameras/{c}/status", timeout=10),
            lambda x: x.json()["state"] == "error",
            40,
            f"{camera} in state error",
        ).json()
        assert status["reason"]
        assert "wrong-pw" not in status["reason"]
        assert "pw@" not in httpx.get(f"{api}/cameras", timeout=10).text
    with ws_connect(stack, "/ws/scores?camera=good") as ws:  # the good camera is scored all the while
        collect(ws, lambda got: len(got) >= 10, timeout_s=60)
    assert not stack.exited(), "a process died on bad input"
    r = redis.Redis.from_url(redis_url)
    assert r.ping()

"""The live page's camera-health badge in headless Chromium against a real stack: a camera's raised conditions show
beside its state (from GET /cameras), and the badge goes back to ok when they clear."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from cli.up import Stack
from service.bus import topics
from service.messages import CameraHealth, HealthCondition
from tests.conftest import free_port
from tests.e2e.cdp import chromium, chromium_path
from tests.e2e.conftest import ADMIN_KEY, VIEWER_KEY
from tests.service.worker.models_util import MODEL

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None, reason="needs the Debian package chromium (make test installs it)"),
]


def test_live_page_shows_a_cameras_health(make_stack: Callable[..., Stack], redis_url: str, tmp_path: Path) -> None:
    env = {"VIGIL_API__VIEWER_KEYS": json.dumps([VIEWER_KEY]), "VIGIL_API__ADMIN_KEYS": json.dumps([ADMIN_KEY])}
    stack = make_stack(redis_url, **env)
    # A camera nobody answers: its ingester never writes its health, so the test sets it as an ingester would.
    camera = {"id": "door", "url": f"rtsp://127.0.0.1:{free_port()}/x", "model": MODEL}
    r = httpx.post(f"{stack.api_url}/cameras", json=camera, headers={"X-API-Key": ADMIN_KEY}, timeout=10)
    assert r.status_code == 201, r.text
    client = redis.Redis.from_url(redis_url)
    since = time.time()
    covered = HealthCondition(since_ts=since, detail="detail 9% of the reference view's")
    topics.set_camera_health(client, CameraHealth(camera="door", state="unhealthy", conditions={"covered": covered}))
    card = "document.querySelector('.camera[data-camera=door]')"
    with chromium(tmp_path / "profile") as page:
        page.call("Page.enable")
        page.call("Page.navigate", url=f"{stack.api_url}/ui")
        page.wait_for("document.readyState === 'complete' && !!window.vigil", 20, "the page to load")
        page.evaluate(
            f"document.getElementById('key-input').value = {json.dumps(VIEWER_KEY)};"
            "document.getElementById('key-form').requestSubmit(); true"
        )
        page.wait_for(f"{card}?.dataset.health === 'covered'", 20, "the covered badge", f"{card}?.dataset.health")
        badge = page.evaluate(f"{card}.querySelector('.health').textContent")
        topics.set_camera_health(client, CameraHealth(camera="door"))  # cleared
        page.wait_for(f"{card}?.dataset.health === 'ok'", 10, "the badge back to ok", f"{card}?.dataset.health")
        ok = page.evaluate(f"{card}.querySelector('.health').textContent")
    assert badge == "health: covered"
    assert ok == "health ok"

"""Acknowledging reaches every client, in headless Chromium against a real API (uvicorn) on a private Redis, with the
MQTT bridge on a real mosquitto: an operator acknowledges from another client and the live page shows it (over
/ws/alerts), then resolves it from the page with a note, and a WebSocket client, MQTT, `GET /alerts?state=` and the
page's own filter all agree."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from websockets.sync.client import connect

from service.api.app import create_app
from service.bus import topics
from service.messages import Alert, AlertEvent, AlertTrack, CameraConfig, ScoringState
from service.settings import Settings
from tests.conftest import free_port
from tests.e2e.cdp import chromium, chromium_path
from tests.service.mqtt.conftest import Broker, Subscriber, bridge_settings, mosquitto_path

OPERATOR_KEY = "operator-key-for-the-ack-test"
ADMIN_KEY = "admin-key-for-the-ack-test"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None, reason="needs the Debian package chromium (make test installs it)"),
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (make test installs it)"),
]


@pytest.fixture
def api_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The real app under uvicorn in a thread (what `vigil api` runs)."""
    settings = Settings(
        redis={"url": redis_url},
        store={"root": tmp_path / "registry"},
        api={"operator_keys": [OPERATOR_KEY], "admin_keys": [ADMIN_KEY]},
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_acknowledging_changes_the_state_for_every_client(
    api_url: str, redis_url: str, rclient: redis.Redis, make_broker: Callable[..., Broker],
    subscribers: Callable[..., Subscriber], run_bridge, tmp_path: Path,
) -> None:  # fmt: skip
    alerts = [
        Alert(id=f"porch-{i}-abc", camera="porch", model="ffp@v1", state="open" if i == 1 else "closed",
              start_frame=100 * i, start_ts=time.time() - 60 + i, end_frame=None if i == 1 else 100 * i + 20,
              end_ts=None if i == 1 else time.time() - 59 + i, peak_score=0.9, peak_frame=100 * i + 5)
        for i in (0, 1)
    ]  # fmt: skip
    topics.put_camera(rclient, CameraConfig(id="porch", url="rtsp://cam.example/1", model="ffp@v1"))
    for a in alerts:
        topics.save_alert_event(rclient, AlertEvent(kind="opened" if a.state == "open" else "closed", alert=a), 3600)
    topics.save_scoring_state(rclient, "porch", ScoringState(track=AlertTrack(phase="active", alert=alerts[1])))
    broker = make_broker()
    mqtt = subscribers(broker.port, ["vigil/+/alert", "vigil/+/state"])
    mqtt.wait("the MQTT subscriber", mqtt.client.is_connected)
    run_bridge(bridge_settings(redis_url, broker.port))
    mqtt.wait("the bridge's retained state", lambda: mqtt.on("vigil/porch/state"))
    target = alerts[1].id
    op = {"X-API-Key": OPERATOR_KEY}
    ws = connect(api_url.replace("http", "ws", 1) + "/ws/alerts", open_timeout=10)
    with ws, chromium(tmp_path / "profile") as page:
        page.call("Page.enable")
        page.call("Page.navigate", url=f"{api_url}/ui")
        page.wait_for("document.readyState === 'complete' && !!window.vigil", 20, "the page to load")
        page.evaluate(
            f"document.getElementById('key-input').value = {json.dumps(OPERATOR_KEY)};"
            "document.getElementById('key-form').requestSubmit(); true"
        )
        page.wait_for("document.getElementById('conn').dataset.alerts === 'open'", 10, "the alert feed")
        row = f"document.querySelector('#alerts .alert[data-alert=\"{target}\"]')"
        page.wait_for(f"{row}?.dataset.ack === 'unacknowledged'", 10, "the open alert, unacknowledged")
        # Another client acknowledges it: the page shows it through /ws/alerts, the WebSocket client and MQTT get it.
        r = httpx.post(f"{api_url}/alerts/{target}/ack", json={"note": "guard on the way"}, headers=op, timeout=10)
        assert r.status_code == 200, r.text
        page.wait_for(f"{row}?.dataset.ack === 'acknowledged'", 10, "the acknowledgement on the page")
        assert "guard on the way" in page.evaluate(f"{row}.querySelector('.ack-state').textContent")
        assert json.loads(ws.recv(timeout=10))["kind"] == "acknowledged"
        # The page resolves it with a note; its filter shows it under "resolved" only.
        page.evaluate(
            f"{row}.querySelector('.ack-note').value = 'a cat'; {row}.querySelector('button.do-resolve').click(); true"
        )
        page.wait_for(f"{row}?.dataset.ack === 'resolved'", 10, "the resolution on the page")
        event = json.loads(ws.recv(timeout=10))
        assert (event["kind"], event["alert"]["ack"]["note"], event["alert"]["ack"]["role"]) == (
            "resolved", "a cat", "operator",
        )  # fmt: skip
        page.evaluate("const f = document.getElementById('alert-filter'); f.value = 'resolved';"
                      "f.dispatchEvent(new Event('change')); true")  # fmt: skip
        shown = page.evaluate("[...document.querySelectorAll('#alerts .alert')].filter(e => !e.hidden)"
                              ".map(e => e.dataset.alert)")  # fmt: skip
        assert shown == [target]
        assert page.evaluate("window.vigil.stats.acks") == 1
    resolved = httpx.get(f"{api_url}/alerts", params={"state": "resolved"}, timeout=10).json()["alerts"]
    assert [a["id"] for a in resolved] == [target]
    kinds = mqtt.wait("both changes on MQTT", lambda: [json.loads(p)["kind"] for p in mqtt.on("vigil/porch/alert")]
                      if len(mqtt.on("vigil/porch/alert")) >= 2 else None)  # fmt: skip
    assert kinds == ["acknowledged", "resolved"]
    mqtt.wait("the retained state", lambda: json.loads(mqtt.on("vigil/porch/state")[-1])["ack"] == "resolved")

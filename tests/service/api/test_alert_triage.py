"""Acknowledging, resolving, incidents and flood control through the API on a real Redis, with the worker's own
publisher raising the alerts: every client sees an acknowledgement (the answer, GET /alerts?state=, /ws/alerts),
an open alert keeps it when the worker closes it, bursts group into incidents, floods are summarised once, and bad
input is refused with what would work."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from models.store import ModelStore
from service.alerts.schema import MuteWindow
from service.bus import topics
from service.messages import Alert, AlertEvent, AlertParams, CameraConfig
from service.worker.ordering import OrderedPublisher
from service.worker.thumbnails import alert_event_handler
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY, add_model
from tests.service.api.test_calibration import CARD, OPERATOR_KEY, PARAMS, _normal, _publish

OP = {"X-API-Key": OPERATOR_KEY}
VIEW = {"X-API-Key": VIEWER_KEY}


@pytest.fixture
def model(store: ModelStore) -> str:
    """A registered version whose card holds CARD (as in test_calibration.py)."""
    version = store.resolve(f"ffp@{add_model(store)}")
    store.write_card(version, version.card().model_copy(update={"calibration": CARD}))
    return version.ref


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api={"admin_keys": [ADMIN_KEY], "operator_keys": [OPERATOR_KEY], "viewer_keys": [VIEWER_KEY]})


def _publisher(redis_url: str, params: AlertParams, notified: list[AlertEvent] | None = None) -> OrderedPublisher:
    r = redis.Redis.from_url(redis_url)
    on_event = alert_event_handler(r, 3600, notified.append) if notified is not None else None
    return OrderedPublisher(
        r,
        calibration=lambda _model: CARD,
        alert_params=lambda _camera: params,
        gap_timeout_s=30.0,
        retention_s=3600,
        calib_params=PARAMS,
        replay_retention_s=3600,
        on_event=on_event,  # the worker's chain: thumbnail, then the webhook for notified events only
    )


def _camera(client: TestClient, rc: redis.Redis, camera: str) -> None:
    topics.put_camera(rc, CameraConfig(id=camera, url="rtsp://cam.example/1", model="ffp"))
    assert client.post(f"/cameras/{camera}/calibration", json={"source": "card"}, headers=OP).status_code == 200


def _bursts(spans: list[tuple[int, int]], n: int, seed: int) -> np.ndarray:
    z = _normal(n, seed, 0.0)
    for start, stop in spans:
        z[start:stop] += 6.0
    return z


def test_acknowledging_reaches_every_client_and_an_open_alert_keeps_it_when_it_closes(
    client: TestClient, rclient: redis.Redis, redis_url: str, model: str
) -> None:
    _camera(client, rclient, "gate")
    pub = _publisher(redis_url, AlertParams.merge(client.app.state.settings.alerts, None))
    t0 = time.time() - 100
    _publish(pub, "gate", model, _bursts([(80, 200)], 200, 1), 0, t0)  # the anomaly goes on: the alert stays open
    (alert,) = client.get("/alerts?state=open", headers=VIEW).json()["alerts"]
    assert alert["ack"] is None
    assert client.get("/alerts?state=unacknowledged", headers=VIEW).json()["alerts"][0]["id"] == alert["id"]
    with client.websocket_connect("/ws/alerts", headers=VIEW) as ws:
        # A viewer may not acknowledge; an operator may, once, with a note.
        path = f"/alerts/{alert['id']}/ack"
        assert client.post(path, json={}, headers=VIEW).status_code == 403
        r = client.post(path, json={"note": "guard on the way"}, headers=OP)
        assert r.status_code == 200, r.text
        ack = r.json()["ack"]
        assert (ack["state"], ack["note"], ack["role"]) == ("acknowledged", "guard on the way", "operator")
        event = ws.receive_json()
        assert (event["kind"], event["alert"]["id"], event["alert"]["ack"]["state"]) == (
            "acknowledged", alert["id"], "acknowledged",
        )  # fmt: skip
        again = client.post(path, json={}, headers=OP)
        assert again.status_code == 409
        assert "already acknowledged (operator" in again.json()["detail"]
        # The worker closes the alert: the closing event keeps the acknowledgement.
        _publish(pub, "gate", model, _normal(60, 2, 0.0), 200, t0)
        closed = ws.receive_json()
        assert (closed["kind"], closed["alert"]["state"], closed["alert"]["ack"]["state"]) == (
            "closed", "closed", "acknowledged",
        )  # fmt: skip
        resolved = client.post(path, json={"action": "resolve", "note": "a cat"}, headers=OP).json()
        assert resolved["ack"]["state"] == "resolved"
        assert resolved["ack"]["acknowledged_ts"] == ack["ts"]  # when it was first acknowledged stays
        assert ws.receive_json()["kind"] == "resolved"
    assert client.post(path, json={"action": "resolve"}, headers=OP).status_code == 409
    # Each state filter pages with the same cursor; the alert is in exactly one life and one review state.
    found = {s: client.get(f"/alerts?state={s}", headers=VIEW).json()["alerts"] for s in ("open", "closed")}
    assert (found["open"], [a["id"] for a in found["closed"]]) == ([], [alert["id"]])
    for s, n in (("unacknowledged", 0), ("acknowledged", 0), ("resolved", 1)):
        page = client.get(f"/alerts?state={s}&camera=gate", headers=VIEW).json()
        assert len(page["alerts"]) == n, s
    page = client.get("/alerts?state=resolved", headers=VIEW).json()
    assert client.get(f"/alerts?state=resolved&since={page['next_cursor']}", headers=VIEW).json()["alerts"] == []
    assert client.get("/metrics").text.count('vigil_alert_acks_total{camera="gate"') == 2


def test_bursts_group_into_incidents_and_a_flood_is_summarised_once(
    client: TestClient, rclient: redis.Redis, redis_url: str, model: str
) -> None:
    _camera(client, rclient, "yard")
    params = AlertParams(
        threshold=0.5, hysteresis=0.1, min_duration_frames=5, cooldown_frames=5,
        incident_gap_s=5.0, notify_max=2, notify_period_s=3600.0,
    )  # fmt: skip
    notified: list[AlertEvent] = []
    pub = _publisher(redis_url, params, notified)
    # Five bursts at 10 fps: three 3 s apart (one incident), then two more after 20 s (a second one).
    spans = [(60, 80), (110, 130), (160, 180), (380, 400), (430, 450)]
    _publish(pub, "yard", model, _bursts(spans, 500, 3), 0, time.time() - 100)
    alerts = sorted(topics.list_alerts(rclient, camera="yard").alerts, key=lambda a: a.start_frame)
    assert len(alerts) == 5
    decisions = [a.notification.decision for a in alerts if a.notification]
    assert decisions == ["sent", "sent", "summary", "suppressed", "suppressed"]
    assert "recorded but not notified" in alerts[2].notification.reason
    # Only notified alerts reached the webhook's place in the chain: their opened, updated and closed events.
    assert {e.alert.id for e in notified} == {a.id for a in alerts[:3]}
    assert {e.kind for e in notified} >= {"opened", "closed"}
    incidents = client.get("/incidents?camera=yard", headers=VIEW).json()["incidents"]
    assert [(i["alerts"], i["state"]) for i in sorted(incidents, key=lambda i: i["start_ts"])] == [
        (3, "closed"), (2, "closed"),
    ]  # fmt: skip
    assert [a.incident for a in alerts] == [f"inc-{alerts[0].id}"] * 3 + [f"inc-{alerts[3].id}"] * 2
    shown = client.get(f"/incidents/inc-{alerts[0].id}", headers=VIEW).json()
    assert [a["id"] for a in shown["alerts"]] == [a.id for a in alerts[:3]]
    assert shown["incident"]["peak_score"] == pytest.approx(max(a.peak_score for a in alerts[:3]))
    assert client.get("/incidents/inc-nope", headers=VIEW).status_code == 404


def test_a_muted_alert_is_recorded_and_says_so(client: TestClient, rclient: redis.Redis, redis_url: str, model: str):
    _camera(client, rclient, "dock")
    now = time.gmtime()
    start, end = (f"{(now.tm_hour + d) % 24:02d}:{now.tm_min:02d}" for d in (-1, 1))  # two hours around now
    params = AlertParams(threshold=0.5, hysteresis=0.1, min_duration_frames=5, cooldown_frames=5)
    params = params.model_copy(update={"mute": [MuteWindow(start=start, end=end)]})
    notified: list[AlertEvent] = []
    _publish(_publisher(redis_url, params, notified), "dock", model, _bursts([(60, 90)], 150, 4), 0, time.time() - 50)
    (alert,) = topics.list_alerts(rclient, camera="dock").alerts
    assert alert.notification is not None
    assert alert.notification.decision == "muted"
    assert f"mute window {start}-{end}" in alert.notification.reason
    assert notified == []


def test_bad_ack_requests(client: TestClient, rclient: redis.Redis) -> None:
    r = client.post("/alerts/no-such-alert/ack", json={}, headers=OP)
    assert r.status_code == 404
    assert "GET /alerts" in r.json()["detail"]
    alert = Alert(
        id="gate-1-x", camera="gate", model="m@v1", state="closed", start_frame=1, start_ts=1.0, end_frame=3,
        end_ts=2.0, peak_score=0.9, peak_frame=2,
    )  # fmt: skip
    topics.save_alert_event(rclient, AlertEvent(kind="closed", alert=alert), 3600)
    for body in ({"action": "close"}, {"note": "x" * 1001}, {"extra": 1}):
        assert client.post("/alerts/gate-1-x/ack", json=body, headers=OP).status_code == 422, body
    assert client.post("/alerts/gate-1-x/ack", json={}).status_code == 401
    assert client.get("/alerts?state=dismissed", headers=VIEW).status_code == 422
    assert topics.get_alert(rclient, "gate-1-x") == alert  # nothing changed
    # A camera override that cannot work is refused when the camera is saved, saying what would.
    bad = {"id": "c1", "url": "rtsp://h/1", "model": "ffp", "alerts": {"mute": [{"start": "7:00", "end": "9:00"}]}}
    r = client.post("/cameras", json=bad, headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 422
    assert "HH:MM" in str(r.json()["detail"])

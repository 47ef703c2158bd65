"""Scores, alerts, readiness and the WebSocket feeds, on data written with the bus's own topics helpers."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.bus import topics
from service.messages import Alert, AlertEvent, CameraConfig, Heartbeat, ScoreMsg


def _score(camera: str, frame: int) -> ScoreMsg:
    now = time.time()
    return ScoreMsg(
        camera=camera, frame=frame, seq=1, score=0.5, signals=[1.0], model="ffp@v1", capture_ts=now, published_ts=now
    )


def _publish(redis_url: str, scores: list[ScoreMsg]) -> None:
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline()
    topics.add_scores(pipe, scores)
    pipe.execute()
    r.close()


def _alert_event(redis_url: str, alert_id: str, camera: str, kind: str = "opened") -> None:
    alert = Alert(
        id=alert_id,
        camera=camera,
        model="ffp@v1",
        state="open",
        start_frame=40,
        start_ts=1.0,
        peak_score=0.99,
        peak_frame=42,
    )
    r = redis.Redis.from_url(redis_url)
    topics.save_alert_event(r, AlertEvent(kind=kind, alert=alert), retention_s=600)
    r.close()


def test_latest_and_ranged_scores_with_paging(client: TestClient, redis_url: str) -> None:
    assert client.get("/cameras/gate/scores/latest").status_code == 404
    _publish(redis_url, [_score("gate", i) for i in range(25)])
    assert client.get("/cameras/gate/scores/latest").json()["frame"] == 24
    page = client.get("/cameras/gate/scores", params={"limit": 10}).json()
    frames = [s["frame"] for s in page["scores"]]
    while page["next_start"]:
        page = client.get("/cameras/gate/scores", params={"limit": 10, "start": page["next_start"]}).json()
        frames += [s["frame"] for s in page["scores"]]
    assert frames == list(range(25))
    future = client.get("/cameras/gate/scores", params={"start": f"{time.time() + 60:.3f}"}).json()
    assert future["scores"] == []
    assert client.get("/cameras/gate/scores", params={"start": "yesterday"}).status_code == 422


def test_alert_cursor_paging_and_lookup(client: TestClient, redis_url: str) -> None:
    for i in range(5):
        _alert_event(redis_url, f"a{i}", "gate" if i % 2 else "door")
    first = client.get("/alerts", params={"limit": 3}).json()
    assert [a["id"] for a in first["alerts"]] == ["a0", "a1", "a2"]
    second = client.get("/alerts", params={"since": first["next_cursor"]}).json()
    assert [a["id"] for a in second["alerts"]] == ["a3", "a4"]
    empty = client.get("/alerts", params={"since": second["next_cursor"]}).json()
    assert empty == {"alerts": [], "next_cursor": second["next_cursor"]}
    assert [a["id"] for a in client.get("/alerts", params={"camera": "gate"}).json()["alerts"]] == ["a1", "a3"]
    assert client.get("/alerts/a2").json()["peak_frame"] == 42
    r = client.get("/alerts/zzz")
    assert r.status_code == 404
    assert "GET /alerts" in r.json()["detail"]
    assert client.get("/alerts", params={"since": -1}).status_code == 422


def test_readyz_needs_fresh_worker_heartbeat(client: TestClient, redis_url: str) -> None:
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "worker" in r.json()["reason"]
    beat = Heartbeat(component="worker", id="w1", pid=1, host="h")
    topics.write_heartbeat(redis.Redis.from_url(redis_url), beat, ttl_s=5)
    assert client.get("/readyz").json() == {"ready": True, "redis": True, "workers": 1, "reason": ""}


def _later(delay_s: float, fn, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), fn(*args)))
    thread.start()
    return thread


def test_ws_scores_one_camera_in_order(client: TestClient, redis_url: str) -> None:
    with client.websocket_connect("/ws/scores?camera=gate") as ws:
        thread = _later(0.3, _publish, redis_url, [_score("door", 0)] + [_score("gate", i) for i in range(10)])
        frames = [ScoreMsg.model_validate_json(ws.receive_text()) for _ in range(10)]
        thread.join()
    assert [(s.camera, s.frame) for s in frames] == [("gate", i) for i in range(10)]


def test_ws_scores_all_cameras(client: TestClient, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    for cam in ("gate", "door"):
        topics.put_camera(r, CameraConfig(id=cam, url="rtsp://h/x", model="ffp"))
    with client.websocket_connect("/ws/scores") as ws:
        thread = _later(1.2, _publish, redis_url, [_score("door", 0), _score("gate", 0)])
        got = {ScoreMsg.model_validate_json(ws.receive_text()).camera for _ in range(2)}
        thread.join()
    assert got == {"gate", "door"}


def test_ws_alerts_forwards_events(client: TestClient, redis_url: str) -> None:
    with client.websocket_connect("/ws/alerts?camera=gate") as ws:
        thread = _later(0.3, lambda: [_alert_event(redis_url, "x1", "door"), _alert_event(redis_url, "x2", "gate")])
        event = AlertEvent.model_validate_json(ws.receive_text())
        thread.join()
    assert event.alert.id == "x2"
    assert event.kind == "opened"


def test_ws_refuses_missing_key(keyed_client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as info, keyed_client.websocket_connect("/ws/alerts") as ws:
        ws.receive_text()
    assert info.value.code == 1008
    assert "X-API-Key" in info.value.reason

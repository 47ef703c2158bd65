"""Camera health through the API: per-camera check settings (422 naming the field, JSON merge patch), the health
state (`GET /cameras/{id}/health`, the `conditions` of `GET /cameras`) and `/ws/health`."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient

from models.store import ModelStore
from service.bus import topics
from service.messages import CameraHealth, HealthCondition, HealthEvent
from tests.service.api.conftest import add_model

RTSP = "rtsp://cam.example/stream1"


@pytest.fixture
def with_model(store: ModelStore) -> ModelStore:
    add_model(store, "ffp")
    return store


@pytest.mark.parametrize(
    ("health", "loc"),
    [
        ({"blurr": {"enabled": False}}, ["body", "health", "blurr"]),  # unknown check
        ({"frozen": {"minimum_s": 2}}, ["body", "health", "frozen", "minimum_s"]),  # unknown field
        ({"frozen": {"min_s": 0}}, ["body", "health", "frozen", "min_s"]),  # out of range
        ({"moved": {"min_match": 1.5}}, ["body", "health", "moved", "min_match"]),
        ({"blank": {"max_contrast": -1}}, ["body", "health", "blank", "max_contrast"]),
        ({"reference_s": 1e9}, ["body", "health", "reference_s"]),
        ({"covered": {"raise_s": "soon"}}, ["body", "health", "covered", "raise_s"]),
    ],
)
def test_bad_health_settings_are_422_naming_the_field(client: TestClient, with_model: ModelStore, health, loc) -> None:
    r = client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp", "health": health})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [loc]
    assert client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"}).status_code == 201
    r = client.patch("/cameras/gate", json={"health": health})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [loc]


def test_health_settings_merge_like_a_json_merge_patch(client: TestClient, with_model: ModelStore) -> None:
    body = {"id": "gate", "url": RTSP, "model": "ffp", "health": {"frozen": {"min_s": 3, "clear_s": 2}}}
    assert client.post("/cameras", json=body).status_code == 201
    params = client.get("/cameras/gate/health").json()["params"]
    assert params["frozen"]["min_s"] == 3
    assert params["frozen"]["clear_s"] == 2
    assert params["blur"]["max_texture"] == 0.35  # the service default where the camera says nothing

    r = client.patch("/cameras/gate", json={"health": {"frozen": {"min_s": 5}, "moved": {"enabled": False}}})
    assert r.status_code == 200, r.text
    assert r.json()["health"]["frozen"] == {"enabled": None, "raise_s": None, "clear_s": 2.0, "min_s": 5.0,
                                            "max_change": None}  # fmt: skip
    params = client.get("/cameras/gate/health").json()["params"]
    assert (params["frozen"]["min_s"], params["frozen"]["clear_s"], params["moved"]["enabled"]) == (5, 2, False)

    client.patch("/cameras/gate", json={"health": {"frozen": None}})  # null: back to the service defaults
    params = client.get("/cameras/gate/health").json()["params"]
    assert params["frozen"]["min_s"] == 1.0
    assert params["moved"]["enabled"] is False


def test_health_state_in_the_api(client: TestClient, with_model: ModelStore, redis_url: str) -> None:
    assert client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"}).status_code == 201
    health = client.get("/cameras/gate/health").json()
    assert (health["state"], health["conditions"]) == ("ok", {})  # nothing reported yet: ok
    assert client.get("/cameras/nope/health").status_code == 404
    r = redis.Redis.from_url(redis_url)
    since = time.time()
    raised = CameraHealth(camera="gate", state="unhealthy", conditions={"frozen": HealthCondition(since_ts=since)})
    topics.set_camera_health(r, raised)
    health = client.get("/cameras/gate/health").json()
    assert health["state"] == "unhealthy"
    assert health["conditions"]["frozen"]["since_ts"] == pytest.approx(since)
    assert client.get("/cameras").json()[0]["conditions"] == ["frozen"]
    assert client.get("/cameras/gate").json()["conditions"] == ["frozen"]
    client.delete("/cameras/gate")
    assert topics.get_camera_health(r, "gate") is None  # deleting a camera forgets its health


def test_ws_health_forwards_events_of_the_camera_asked_for(client: TestClient, redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)

    def event(camera: str) -> HealthEvent:
        state = CameraHealth(camera=camera, state="unhealthy", conditions={"blank": HealthCondition(since_ts=1.0)})
        return HealthEvent(kind="raised", camera=camera, condition="blank", ts=1.0, health=state)

    def publish() -> None:
        time.sleep(0.3)  # after the socket took its start id
        topics.publish_health_event(r, event("other"))
        topics.publish_health_event(r, event("gate"))

    with client.websocket_connect("/ws/health?camera=gate") as ws:
        threading.Thread(target=publish, daemon=True).start()
        got = HealthEvent.model_validate_json(ws.receive_text())
    assert (got.camera, got.condition, got.kind) == ("gate", "blank", "raised")

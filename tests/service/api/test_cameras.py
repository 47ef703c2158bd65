"""Cameras CRUD: validation (422 naming the field), unknown model (404 naming models), masked credentials."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from models.store import ModelStore
from service.bus import keys, topics
from service.messages import CameraStatus
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY, add_model

SECRET = "s3cret-pw"
RTSP = f"rtsp://alice:{SECRET}@10.0.0.5:554/stream1"


@pytest.fixture
def with_model(store: ModelStore) -> ModelStore:
    add_model(store, "ffp")
    return store


def test_create_masks_credentials_everywhere(
    client: TestClient, with_model: ModelStore, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "rtsp://alice:***@10.0.0.5:554/stream1"
    assert r.json()["state"] == "pending"
    for path in ("/cameras", "/cameras/gate", "/cameras/gate/status"):
        body = client.get(path)
        assert body.status_code == 200
        assert SECRET not in body.text
    assert SECRET not in caplog.text
    # Stored with the real credentials for the ingester.
    stored = topics.get_camera(redis.Redis.from_url(redis_url), "gate")
    assert stored is not None
    assert stored.url == RTSP


def test_create_announces_on_control_channel(client: TestClient, with_model: ModelStore, redis_url: str) -> None:
    pubsub = topics.subscribe_control(redis.Redis.from_url(redis_url))
    pubsub.get_message(timeout=1.0)
    assert client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"}).status_code == 201
    msg = pubsub.get_message(timeout=2.0)
    assert msg is not None
    assert topics.decode_control(msg["data"]).camera == "gate"
    pubsub.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "gate", "url": "ftp://alice:pw@host/x", "model": "ffp"}, "url"),
        ({"id": "Bad Id!", "url": RTSP, "model": "ffp"}, "id"),
        ({"id": "gate", "url": RTSP}, "model"),
        ({"id": "gate", "url": RTSP, "model": "ffp", "target_fps": -1}, "target_fps"),
        ({"id": "gate", "url": RTSP, "model": "ffp", "alerts": {"threshold": 2}}, "threshold"),
        ({"id": "gate", "url": RTSP, "model": "ffp", "colour": "red"}, "colour"),
    ],
)
def test_invalid_body_is_422_naming_field(client: TestClient, with_model: ModelStore, body: dict, field: str) -> None:
    r = client.post("/cameras", json=body)
    assert r.status_code == 422
    assert any(field in err["loc"] for err in r.json()["detail"]), r.json()
    assert "pw@" not in r.text


def test_malformed_json_is_422(client: TestClient, with_model: ModelStore) -> None:
    r = client.post("/cameras", content=b'{"id": "gate", "url": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "json" in r.text.lower()


def test_unknown_model_is_404_listing_models(client: TestClient, with_model: ModelStore) -> None:
    r = client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "nosuch"})
    assert r.status_code == 404
    assert "ffp" in r.json()["detail"]


def test_duplicate_is_409_and_missing_is_404(client: TestClient, with_model: ModelStore) -> None:
    assert client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"}).status_code == 201
    assert client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"}).status_code == 409
    r = client.get("/cameras/nope")
    assert r.status_code == 404
    assert "gate" in r.json()["detail"]
    assert client.delete("/cameras/nope").status_code == 404


def test_patch_and_delete(client: TestClient, with_model: ModelStore, redis_url: str) -> None:
    client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"})
    r = client.patch("/cameras/gate", json={"enabled": False, "alerts": {"threshold": 0.9}})
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False
    assert r.json()["alerts"]["threshold"] == 0.9
    assert SECRET not in r.text
    # alerts merge key by key: another key keeps the threshold; null drops an override
    r = client.patch("/cameras/gate", json={"alerts": {"hysteresis": 0.1}})
    assert (r.json()["alerts"]["threshold"], r.json()["alerts"]["hysteresis"]) == (0.9, 0.1)
    r = client.patch("/cameras/gate", json={"alerts": {"threshold": None}})
    assert (r.json()["alerts"]["threshold"], r.json()["alerts"]["hysteresis"]) == (None, 0.1)
    assert r.json()["enabled"] is False  # untouched fields keep their value
    assert client.patch("/cameras/gate", json={"model": "nosuch"}).status_code == 404
    assert client.patch("/cameras/gate", json={"url": "gopher://x"}).status_code == 422
    assert client.delete("/cameras/gate").status_code == 204
    assert client.get("/cameras").json() == []
    assert not redis.Redis.from_url(redis_url).hexists(keys.CAMERAS_HASH, "gate")


def test_status_reports_ingester_state(client: TestClient, with_model: ModelStore, redis_url: str) -> None:
    client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"})
    assert client.get("/cameras/gate/status").json()["state"] == "connecting"
    status = CameraStatus(camera="gate", state="error", reason=f"401 Unauthorized for {RTSP}")
    topics.set_camera_status(redis.Redis.from_url(redis_url), status)
    body = client.get("/cameras/gate/status")
    assert body.json()["state"] == "error"
    assert SECRET not in body.text
    assert client.get("/cameras/gate").json()["state"] == "error"


def test_file_camera_must_be_under_footage_root(make_client, with_model: ModelStore, tmp_path: Path) -> None:
    root = tmp_path / "footage"
    root.mkdir()
    clip = root / "a.mp4"
    clip.write_bytes(b"x")
    client = make_client(footage_root=root)
    r = client.post("/cameras", json={"id": "f1", "url": str(clip), "model": "ffp", "kind": "file"})
    assert r.status_code == 201
    outside = tmp_path / "b.mp4"
    outside.write_bytes(b"x")
    r = client.post("/cameras", json={"id": "f2", "url": f"file://{outside}", "model": "ffp", "kind": "file"})
    assert r.status_code == 422
    assert "footage root" in r.json()["detail"]


def test_writes_need_admin_key(keyed_client: TestClient, with_model: ModelStore) -> None:
    body = {"id": "gate", "url": RTSP, "model": "ffp"}
    assert keyed_client.post("/cameras", json=body).status_code == 401
    r = keyed_client.post("/cameras", json=body, headers={"X-API-Key": VIEWER_KEY})
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]
    assert keyed_client.post("/cameras", json=body, headers={"X-API-Key": ADMIN_KEY}).status_code == 201
    assert keyed_client.delete("/cameras/gate", headers={"X-API-Key": VIEWER_KEY}).status_code == 403
    assert keyed_client.get("/cameras", headers={"X-API-Key": VIEWER_KEY}).status_code == 200


def test_undecodable_camera_is_a_clear_500(client: TestClient, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).hset(keys.CAMERAS_HASH, "odd", b'{"schema_version": 99}')
    r = client.get("/cameras/odd")
    assert r.status_code == 500
    assert "could not be decoded" in r.json()["detail"]
    assert "schema_version" in r.json()["detail"]
    assert client.get("/cameras").json() == []  # the list skips (and logs) what it cannot read

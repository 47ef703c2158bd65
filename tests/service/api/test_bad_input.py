"""Bad camera input is a 422 naming the field (never a 5xx, never stored): malformed URLs, NUL bytes, absurd numbers,
model refs that name no version, and ids in the batch jobs' namespace."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from models.store import ModelStore
from service.bus import keys
from tests.service.api.conftest import add_model

RTSP = "rtsp://cam.example.com:554/stream1"


@pytest.fixture
def with_model(store: ModelStore) -> ModelStore:
    add_model(store, "ffp")
    return store


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"alerts": {"cooldown_frames": 1e15}}, "cooldown_frames", "less than or equal to 1000000"),
        ({"alerts": {"cooldown_frames": 1e30}}, "cooldown_frames", "integer"),
        ({"alerts": {"min_duration_frames": 10**12}}, "min_duration_frames", "less than or equal"),
        ({"model": "ffp-demo@"}, "model", "after '@'"),
        ({"model": "ffp@v1@v2"}, "model", "after '@'"),
        ({"url": "http://[::1", "kind": "file"}, "url", "closing ']'"),
        ({"url": "/footage/a\x00.mp4", "kind": "file"}, "url", "control characters"),
        ({"url": "file:///footage/a\x00.mp4", "kind": "file"}, "url", "control characters"),
        ({"url": "rtsp://admin:Raw@tSecr3t@cam/x"}, "url", "percent-encode"),
        ({"url": "rtsp://user:pa/ss@cam/x"}, "url", "percent-encode"),
        ({"url": "rtsp://cam/" + "a" * 5000}, "url", "at most 2048"),
    ],
)
def test_refused_with_422_naming_the_field(
    client: TestClient, with_model: ModelStore, redis_url: str, change: dict, field: str, says: str
) -> None:
    r = client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp", **change})
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(field in err["loc"] and says in err["msg"] for err in errors), errors
    assert "Secr3t" not in r.text
    assert "pa/ss" not in r.text
    assert not redis.Redis.from_url(redis_url).hexists(keys.CAMERAS_HASH, "gate")
    # PATCH refuses the same values
    assert client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"}).status_code == 201
    r = client.patch("/cameras/gate", json=change)
    assert r.status_code == 422, r.text
    assert "Secr3t" not in r.text
    assert "pa/ss" not in r.text


def test_camera_ids_cannot_enter_the_jobs_namespace(client: TestClient, with_model: ModelStore) -> None:
    # A batch job's windows, scores and alerts travel under the camera id keys.job_stream(job_id) = job-<16 hex>.
    job_like = keys.job_stream("0123456789abcdef")
    for camera_id in (job_like, "job-x"):
        r = client.post("/cameras", json={"id": camera_id, "url": RTSP, "model": "ffp"})
        assert r.status_code == 422, r.text
        assert "reserved for batch jobs" in r.text
    assert client.post("/cameras", json={"id": "jobsite-1", "url": RTSP, "model": "ffp"}).status_code == 201


def test_file_camera_errors_show_no_server_path(
    make_client, with_model: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "footage-root-dir"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    client = make_client(footage_root=root)
    for url in (f"{tmp_path}/elsewhere.mp4", f"file://{root}/missing.mp4", f"{root}/../x.mp4"):
        r = client.post("/cameras", json={"id": "f1", "url": url, "model": "ffp", "kind": "file"})
        assert r.status_code == 422, r.text
        shown = r.json()["detail"].replace(repr(url.removeprefix("file://")), "")
        assert str(tmp_path) not in shown, shown
        assert "footage-root-dir" not in shown, shown
    r = client.post("/cameras", json={"id": "f1", "url": RTSP, "model": "nope"})
    assert r.status_code == 404
    assert str(with_model.root) not in r.text
    assert "registry" in r.text

"""GET /alerts/{id}/clip.mp4: whole file and byte ranges (suffix ranges, 416 past the end), 404s that say why, the
viewer key, and the `clip` path on alert reads once a clip's record exists; webhook payloads link the clip."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.alerts.links import alert_links
from service.alerts.webhook import WebhookSender
from service.bus import topics
from service.clips.recorder import ClipRecorder
from service.clips.store import ClipStore
from service.footage import OutsideFootageRoot
from service.messages import Alert, AlertClip, AlertEvent
from service.settings import Settings
from tests.service.api.conftest import VIEWER_KEY

ALERT = Alert(id="gate-40-0a1b2c3d", camera="gate", model="m@v1", state="closed", start_frame=40, start_ts=1.0,
              end_frame=60, end_ts=2.0, peak_score=0.9, peak_frame=45)  # fmt: skip


@pytest.fixture
def clip(tmp_path: Path, rclient: redis.Redis) -> bytes:
    """An alert with a 'clip' (bytes that are not a real MP4 do for ranges) and its record."""
    topics.save_alert_event(rclient, AlertEvent(kind="closed", alert=ALERT), 3600)
    data = os.urandom(10_000)
    path = ClipStore(tmp_path / "clips").path("gate", ALERT.id)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    record = AlertClip(alert=ALERT.id, camera="gate", state="final", start_pts=0.0, end_pts=3.0, frames=75,
                       bytes=len(data), source="file")  # fmt: skip
    topics.put_alert_clip(rclient, record, 3600)
    return data


@pytest.fixture
def api(make_client: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    client = make_client(clips={"dir": tmp_path / "clips"}, api={"viewer_keys": [VIEWER_KEY]})
    client.headers["X-API-Key"] = VIEWER_KEY
    return client


def test_the_clip_is_served_whole_and_by_ranges(api: TestClient, clip: bytes) -> None:
    url = f"/alerts/{ALERT.id}/clip.mp4"
    whole = api.get(url)
    assert whole.status_code == 200
    assert whole.content == clip
    assert (whole.headers["content-type"], whole.headers["accept-ranges"]) == ("video/mp4", "bytes")
    cases = {"bytes=0-99": (0, 100), "bytes=9990-": (9990, 10_000), "bytes=-100": (9900, 10_000),
             "bytes=500-20000": (500, 10_000)}  # fmt: skip
    for header, (start, stop) in cases.items():
        part = api.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == clip[start:stop], header
        assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/10000", header
        assert part.headers["accept-ranges"] == "bytes"
    beyond = api.get(url, headers={"Range": "bytes=10000-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == "bytes */10000"
    assert api.get(url, headers={"X-API-Key": "wrong"}).status_code == 401


def test_unknown_alerts_and_alerts_without_a_clip_are_404_with_a_reason(api: TestClient, rclient: redis.Redis) -> None:
    unknown = api.get("/alerts/nope-1-x/clip.mp4")
    assert unknown.status_code == 404
    assert "no alert 'nope-1-x'" in unknown.json()["detail"]
    topics.save_alert_event(rclient, AlertEvent(kind="closed", alert=ALERT), 3600)
    missing = api.get(f"/alerts/{ALERT.id}/clip.mp4")
    assert missing.status_code == 404
    assert "has no clip" in missing.json()["detail"]
    assert api.get(f"/alerts/{ALERT.id}").json()["clip"] is None


@pytest.mark.timeout(30)
def test_alert_reads_carry_the_clip_path_once_it_exists(api: TestClient, clip: bytes, rclient: redis.Redis) -> None:
    path = f"/alerts/{ALERT.id}/clip.mp4"
    assert api.get(f"/alerts/{ALERT.id}").json()["clip"] == path
    assert [a["clip"] for a in api.get("/alerts").json()["alerts"]] == [path]
    with api.websocket_connect("/ws/alerts", headers={"X-API-Key": VIEWER_KEY}) as ws:
        later = threading.Timer(0.3, topics.save_alert_event, (rclient, AlertEvent(kind="feedback", alert=ALERT), 60))
        later.start()
        assert json.loads(ws.receive_text())["alert"]["clip"] == path
        later.join()


def test_retention_and_the_size_cap_remove_the_oldest_clips(tmp_path: Path, rclient: redis.Redis) -> None:
    settings = Settings(clips={"dir": tmp_path / "clips", "retention_s": 3600, "max_bytes": 1024**2})
    store = ClipStore(settings.clips.dir)
    now = time.time()
    ages = {"a-old": 7200, "b": 300, "c": 200, "d": 100}  # seconds; a is past the retention
    for i, (alert, age) in enumerate(ages.items()):
        path = store.path(f"cam{i % 2}", alert)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 400 * 1024)
        os.utime(path, (now - age, now - age))
        record = AlertClip(alert=alert, camera=f"cam{i % 2}", state="final", start_pts=0, end_pts=1, frames=1,
                           bytes=400 * 1024, source="file")  # fmt: skip
        topics.put_alert_clip(rclient, record, 3600)
    result = store.sweep(3600, 1024**2, now=now)
    assert result.removed == {"retention": ["a-old"], "size_cap": ["b"]}  # 3 x 400 KiB > 1 MiB: the oldest goes
    assert result.bytes == 800 * 1024
    assert sorted(p.stem for p in settings.clips.dir.glob("*/*.mp4")) == ["c", "d"]
    recorder = ClipRecorder(settings, rclient, lambda cam: None)
    os.utime(store.path("cam1", "d"), (now - 7200, now - 7200))
    recorder.sweep()  # the recorder's sweep also drops the records of what it removed
    records = topics.get_alert_clips(rclient, ["c", "d"])
    assert "d" not in records
    assert "c" in records
    with pytest.raises(OutsideFootageRoot, match=r"outside clips\.dir"):
        store.path("..", "escape")


def test_webhook_payloads_link_the_clip(tmp_path: Path) -> None:
    settings = Settings(api={"public_url": "https://vigil.example.com/"}, clips={"dir": tmp_path})
    sender = WebhookSender("http://127.0.0.1:9/hook", links=lambda a: alert_links(a, settings))
    body = json.loads(sender.body(AlertEvent(kind="opened", alert=ALERT)))
    assert body["links"]["clip"] == f"https://vigil.example.com/alerts/{ALERT.id}/clip.mp4"
    assert body["alert"]["id"] == ALERT.id
    paths = alert_links(ALERT.id, Settings(clips={"dir": tmp_path}))
    assert paths["clip"] == f"/alerts/{ALERT.id}/clip.mp4"
    assert "clip" not in alert_links(ALERT.id, Settings(clips={"enabled": False}))

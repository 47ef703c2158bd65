"""`GET /alerts/{id}/heatmap.jpg` on the real app and a private Redis: the peak frame with its map drawn over it,
the viewer key, and 404s that say why (unknown alert, a method without maps, nothing stored)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import redis
from fastapi.testclient import TestClient

from models.store import ModelStore
from service.bus import topics
from service.messages import Alert, AlertEvent, WindowMsg
from service.worker.thumbnails import alert_event_handler, store_maps
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY, add_model

H = {"X-API-Key": VIEWER_KEY}


def _alert(alert_id: str, model: str) -> Alert:
    return Alert(
        id=alert_id, camera="cam", model=model, state="closed", start_frame=10, start_ts=0.0, end_frame=12,
        peak_score=0.9, peak_frame=11, opened_frame=11,
    )  # fmt: skip


def _raise(r: redis.Redis, alert: Alert, with_maps: bool) -> None:
    """What the worker leaves for an alert on frames 10..12: the peak picture, maps (hot top-left), the alert."""
    frames = np.full((4, 64, 64, 1), 120, np.uint8)
    window = WindowMsg(
        camera="cam", seq=1, model=alert.model, context=1, first_frame=10, pts=[1.0, 1.1, 1.2],
        capture_ts=[0.0] * 3, frames=frames,
    )  # fmt: skip
    _, jpeg = cv2.imencode(".jpg", frames[2])
    topics.put_frame_thumbs(r, "cam", {11: jpeg.tobytes()})
    if with_maps:
        hot = np.full((3, 16, 16), 1e-4, np.float32)
        hot[:, :4, :4] = 0.05
        store_maps(r, [window], {("cam", 1): hot})
    event = AlertEvent(kind="closed", alert=alert)
    topics.save_alert_event(r, event, retention_s=3600)
    alert_event_handler(r, 3600, None)(event)


def test_heatmap_of_an_alert_is_its_peak_frame_with_the_map_drawn(
    make_client: Callable[..., TestClient], redis_url: str, store: ModelStore
) -> None:
    client = make_client(api={"viewer_keys": [VIEWER_KEY], "admin_keys": [ADMIN_KEY]})
    r = redis.Redis.from_url(redis_url)
    add_model(store, "ffp", "ffp")
    _raise(r, _alert("cam-10-a", "ffp@v1"), with_maps=True)
    url = "/alerts/cam-10-a/heatmap.jpg"
    assert client.get(url).status_code == 401
    got = client.get(url, headers=H)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (64, 64, 3)  # the thumbnail's size
    hot, cold = image[:12, :12].astype(int), image[40:, 40:].astype(int)
    assert np.abs(hot - 120).mean() > 30  # tinted where the map is hot
    assert np.abs(cold - 120).mean() < 3  # the frame as it was elsewhere (JPEG noise aside)


def test_heatmap_404s_say_why(make_client: Callable[..., TestClient], redis_url: str, store: ModelStore) -> None:
    client = make_client()
    r = redis.Redis.from_url(redis_url)
    add_model(store, "gcl-ped2", "gcl")
    add_model(store, "ffp", "ffp")
    _raise(r, _alert("cam-10-gcl", "gcl-ped2@v1"), with_maps=False)
    _raise(r, _alert("cam-10-nomaps", "ffp@v1"), with_maps=False)  # maps expired, or the worker had heatmaps off
    unknown = client.get("/alerts/nope/heatmap.jpg")
    assert unknown.status_code == 404
    assert "no alert 'nope'" in unknown.json()["detail"]
    gcl = client.get("/alerts/cam-10-gcl/heatmap.jpg")
    assert gcl.status_code == 404
    assert "method 'gcl', which has no localisation map" in gcl.json()["detail"]
    assert "ffp" in gcl.json()["detail"]
    none = client.get("/alerts/cam-10-nomaps/heatmap.jpg")
    assert none.status_code == 404
    assert "VIGIL_WORKER__HEATMAPS" in none.json()["detail"]
    assert client.get("/alerts/bad%20id/heatmap.jpg").status_code == 422

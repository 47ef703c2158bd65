"""Live page routes and the alert-thumbnail path on real Redis: worker-side JPEGs, the copy at an alert event,
`GET /alerts/{id}/thumbnail.jpg` with keys, the static page and its assets (the browser test is tests/e2e)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from models.calibration import fit_calibration
from models.calibration.camera import CalibrationParams, CameraCalibrator, CameraReference, card_reference
from service.bus import keys
from service.messages import Alert, AlertEvent, ScoredWindow, WindowMsg
from service.worker.thumbnails import MAX_SIDE, alert_event_handler, encode_jpeg, peak_candidates, store_thumbs
from tests.service.api.conftest import VIEWER_KEY


def _window(camera: str, source: str, first_frame: int = 10, context: int = 2, n: int = 3) -> WindowMsg:
    frames = np.stack([np.full((32, 48, 1), 40 * i, np.uint8) for i in range(context + n)])  # (T, h, w, 1)
    return WindowMsg(
        camera=camera,
        seq=1,
        model="m",
        context=context,
        first_frame=first_frame,
        pts=[None] * n,
        capture_ts=[0.0] * n,
        source=source,  # type: ignore[arg-type]
        frames=frames,
    )


CAL = fit_calibration(np.random.default_rng(1).normal(0.0, 1.0, (400, 1)), ["neg_psnr"], ema_alpha=0.5, fps=25.0)
REF = card_reference(CAL, CalibrationParams())
THRESHOLD = 0.5
HIGH, LOW = 10.0, -10.0  # raw signals far above / below every normal frame: scores near 1 / near 0


def _scored(window: WindowMsg, raw: list[float]) -> ScoredWindow:
    return ScoredWindow(
        camera=window.camera, seq=window.seq, model="m@v1", first_frame=window.first_frame, pts=window.pts,
        capture_ts=window.capture_ts, raw=[[v] for v in raw], source=window.source,
    )  # fmt: skip


def _store(r: redis.Redis, windows: list[WindowMsg], raws: list[list[float]]) -> None:
    results = [_scored(w, raw) for w, raw in zip(windows, raws, strict=True)]
    candidates = lambda _camera, _model, raw, threshold: peak_candidates(CAL, REF, 0.0, raw, threshold)  # noqa: E731
    store_thumbs(r, windows, results, candidates, lambda _: THRESHOLD)


def _alert(camera: str, peak_frame: int) -> Alert:
    return Alert(
        id=f"{camera}-1-abc", camera=camera, model="m@v1", state="open", start_frame=10, start_ts=0.0,
        peak_score=0.99, peak_frame=peak_frame,
    )  # fmt: skip


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


@pytest.mark.parametrize(("shape", "expected"), [((32, 48, 1), (32, 48)), ((480, 640, 3), (120, MAX_SIDE))])
def test_encode_jpeg_keeps_small_frames_and_shrinks_large_ones(
    shape: tuple[int, int, int], expected: tuple[int, int]
) -> None:
    frame = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    assert _decode(encode_jpeg(frame)).shape[:2] == expected


def test_frames_that_can_peak_are_kept_with_a_ttl_and_others_and_job_windows_are_not(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    _store(r, [_window("cam", "live"), _window("job-x", "job")], [[HIGH, LOW, HIGH], [HIGH] * 3])
    # Context frames (values 0, 40) were scored in an earlier window; frames 10..12 carry values 80, 120, 160.
    for i, frame in ((0, 10), (2, 12)):
        jpeg = r.get(keys.frame_thumb_key("cam", frame))
        assert isinstance(jpeg, bytes)
        assert abs(int(_decode(jpeg).mean()) - 40 * (i + 2)) <= 2
        assert 0 < r.ttl(keys.frame_thumb_key("cam", frame)) <= keys.FRAME_THUMB_TTL_S
    assert r.get(keys.frame_thumb_key("cam", 11)) is None  # its score cannot reach the threshold
    assert r.get(keys.frame_thumb_key("cam", 9)) is None
    assert not r.keys(f"{keys.PREFIX}:cam:job-x:*")


@pytest.mark.parametrize("seed", range(20))
def test_every_frame_that_peaks_an_alert_is_a_candidate(seed: int) -> None:
    """Random raw runs, smoothing, drift and earlier state through the camera calibration: a frame at or above the
    threshold whose score did not fall is flagged."""
    rng = np.random.default_rng(seed)
    params = CalibrationParams(ema_alpha=float(rng.uniform(0.05, 1.0)))
    reference = CameraReference(model="m@v1", version=1, profiles={"colour": card_reference(CAL, params)})
    calibrator = CameraCalibrator(CAL, "m@v1", params, reference=reference)
    calibrator.state.drift["colour"] = drift = float(rng.normal(0.0, 1.0))
    earlier = calibrator.step(rng.normal(2.0, 2.0, (8, 1)), np.arange(8.0), close_level=-1.0)  # -1: no drift step
    raw = rng.normal(2.0, 3.0, (64, 1))
    scores = calibrator.step(raw, np.arange(8.0, 72.0), close_level=-1.0).scores
    previous = np.r_[earlier.scores[-1], scores[:-1]]
    can_peak = (scores >= THRESHOLD) & (scores >= previous)
    assert can_peak.any()  # the draw reaches the threshold, so the check below is not vacuous
    assert not (can_peak & ~peak_candidates(CAL, reference.profiles["colour"], drift, raw, THRESHOLD)).any()


def test_alert_event_copies_the_peak_frame_and_calls_the_next_handler(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    _store(r, [_window("cam", "file")], [[HIGH] * 3])
    seen: list[AlertEvent] = []
    handler = alert_event_handler(r, retention_s=3600, then=seen.append)
    event = AlertEvent(kind="opened", alert=_alert("cam", peak_frame=11))
    handler(event)
    assert seen == [event]
    assert r.get(keys.alert_thumb_key(event.alert.id)) == r.get(keys.frame_thumb_key("cam", 11))
    assert 3500 < r.ttl(keys.alert_thumb_key(event.alert.id)) <= 3600  # the alert's retention, not the frame's TTL
    handler(AlertEvent(kind="updated", alert=_alert("cam", peak_frame=999)))  # picture gone: keeps the old one
    assert r.get(keys.alert_thumb_key(event.alert.id)) == r.get(keys.frame_thumb_key("cam", 11))


def test_thumbnail_route_needs_the_viewer_key_and_serves_the_jpeg(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    client = make_client(api={"viewer_keys": [VIEWER_KEY], "admin_keys": ["admin-key-0123456789"]})
    r = redis.Redis.from_url(redis_url)
    _store(r, [_window("cam", "live")], [[HIGH] * 3])
    alert_event_handler(r, 3600, None)(AlertEvent(kind="opened", alert=_alert("cam", peak_frame=12)))
    url = "/alerts/cam-1-abc/thumbnail.jpg"
    assert client.get(url).status_code == 401
    ok = client.get(url, headers={"X-API-Key": VIEWER_KEY})
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "image/jpeg"
    assert _decode(ok.content).shape[:2] == (32, 48)
    missing = client.get("/alerts/nope/thumbnail.jpg", headers={"X-API-Key": VIEWER_KEY})
    assert missing.status_code == 404
    assert "GET /alerts" in missing.json()["detail"]
    assert client.get("/alerts/bad%20id/thumbnail.jpg", headers={"X-API-Key": VIEWER_KEY}).status_code == 422


def test_page_and_assets_are_served_without_a_key_and_nothing_else_is(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api={"viewer_keys": [VIEWER_KEY], "admin_keys": ["admin-key-0123456789"]})
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307
    assert root.headers["location"] == "/ui"
    page = client.get("/ui")
    assert page.status_code == 200
    assert "/ui/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/app.css").headers["content-type"].startswith("text/css")
    for name in ("index.html", "..%2Fapp.py", "../routes/ui.py", "missing.js"):
        assert client.get(f"/ui/{name}").status_code == 404


def _key_protocol(key: str) -> str:
    return "key." + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def test_websocket_takes_the_viewer_key_as_a_subprotocol(make_client: Callable[..., TestClient]) -> None:
    """How the live page authenticates its feeds: no key in the URL, so none in access logs."""
    client = make_client(api={"viewer_keys": [VIEWER_KEY], "admin_keys": ["admin-key-0123456789"]})
    with client.websocket_connect("/ws/alerts", subprotocols=["vigil", _key_protocol(VIEWER_KEY)]) as ws:
        assert ws.accepted_subprotocol == "vigil"
    for offered in (["vigil", _key_protocol("wrong-key")], ["vigil", "key.%%%"], ["vigil"]):
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws/scores", subprotocols=offered):
            pass
        assert info.value.code == 1008, offered

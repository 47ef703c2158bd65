"""The live page in headless Chromium against a real stack (api + ingest + worker on a private Redis): the page
takes the viewer key, its chart receives scores over the WebSocket while the camera learns its reference, an alert
with its thumbnail and heatmap appears and its clip (written by the ingester from the file camera's recording) plays in
a <video>, an operator marks it a false alarm, and a threshold slider replays the chart's range."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
import redis

from cli.up import Stack
from service.bus import topics
from service.messages import Alert, AlertEvent
from tests.e2e.cdp import chromium, chromium_path
from tests.e2e.conftest import ADMIN_KEY, CLIP_SPAN, VIEWER_KEY
from tests.service.worker.models_util import MODEL

OPERATOR_KEY = "operator-key-for-the-live-page-test"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None, reason="needs the Debian package chromium (make test installs it)"),
]
SEEDED = 130  # earlier alerts in Redis before the page opens: more than the 50 it lists
SCREENSHOT_DIR_ENV = "VIGIL_TEST_SCREENSHOT_DIR"  # not a setting: where to keep the screenshot for a human


def _keys_env(footage: Path, clips: Path) -> dict[str, str]:
    return {
        "VIGIL_CLIPS__DIR": str(clips),
        "VIGIL_API__VIEWER_KEYS": json.dumps([VIEWER_KEY]),
        "VIGIL_API__OPERATOR_KEYS": json.dumps([OPERATOR_KEY]),
        "VIGIL_API__ADMIN_KEYS": json.dumps([ADMIN_KEY]),
        "VIGIL_FOOTAGE_ROOT": str(footage),
        # The clip is 8 s: the camera learns its reference from its first 4 s, the anomaly comes at 4.8 s.
        "VIGIL_CALIBRATION__LEARN_S": "4",
        "VIGIL_CALIBRATION__MIN_LEARN_FRAMES": "50",
    }


def test_live_page_shows_scores_and_an_alert_with_its_thumbnail_and_heatmap(
    make_stack: Callable[..., Stack], redis_url: str, footage: Path, tmp_path: Path
) -> None:
    stack = make_stack(redis_url, **_keys_env(footage, tmp_path / "clips"))
    assert httpx.get(f"{stack.api_url}/cameras", timeout=10).status_code == 401  # the key is really needed
    _seed_alerts(redis_url, SEEDED)
    with chromium(tmp_path / "profile") as page:
        page.call("Page.enable")
        page.call("Page.navigate", url=f"{stack.api_url}/")  # redirects to /ui
        page.wait_for("document.readyState === 'complete' && !!window.vigil", 20, "the page to load")
        # Without a key both feeds are refused; typing the viewer key once opens them.
        page.wait_for("document.getElementById('message').textContent.includes('key')", 10, "the key prompt")
        page.evaluate(
            f"document.getElementById('key-input').value = {json.dumps(VIEWER_KEY)};"
            "document.getElementById('key-form').requestSubmit(); true"
        )
        page.wait_for(
            "document.getElementById('conn').dataset.scores === 'open' && "
            "document.getElementById('conn').dataset.alerts === 'open'",
            10,
            "both WebSockets to open with the viewer key",
        )
        # Only the newest 50 of the earlier alerts are loaded (found by binary search over the revision cursor).
        page.wait_for("window.vigil.alerts.size === 50", 10, "the 50 newest earlier alerts", "window.vigil.alerts.size")
        ids = page.evaluate("[...window.vigil.alerts.keys()]")
        assert sorted(ids) == sorted(f"seeded-{i}" for i in range(SEEDED - 50, SEEDED))
        camera = {"id": "lobby", "url": str(footage / "clip.mp4"), "model": MODEL, "kind": "file"}
        r = httpx.post(f"{stack.api_url}/cameras", json=camera, headers={"X-API-Key": ADMIN_KEY}, timeout=10)
        assert r.status_code == 201, r.text

        page.wait_for("Number(document.querySelector('[data-camera=lobby]')?.dataset.points) >= 50", 40, "scores")
        calib = "document.querySelector('.camera[data-camera=lobby] .calib')"
        page.wait_for(
            f"{calib}?.textContent.startsWith('calibrated v1')", 40, "the learned reference", f"{calib}?.textContent"
        )
        page.wait_for("!!document.querySelector('.camera[data-camera=lobby]')?.dataset.state", 10, "camera state")
        page.wait_for("!!document.querySelector('#alerts .alert[data-camera=lobby]')", 40, "an alert in the list")
        # The alert over the anomalous span (the tiny model may also fire elsewhere), once its thumbnail is shown.
        over_span = (
            "[...window.vigil.alerts.values()].find(e => e.alert.camera === 'lobby' && "
            f"e.alert.start_frame < {CLIP_SPAN[1]} && (e.alert.end_frame ?? 1e9) >= {CLIP_SPAN[0]} && "
            "e.el.dataset.thumbnail === 'loaded')"
        )
        alerts = "[...window.vigil.alerts.values()].map(e => [e.alert, e.el.dataset.thumbnail])"
        page.wait_for(f"!!({over_span})", 40, "an alert over the anomalous span with its thumbnail", alerts)
        # ... and its heatmap (the tiny FFP model has a localisation map), shown beside the thumbnail.
        page.wait_for(f"({over_span})?.el.dataset.heatmap === 'loaded'", 20, "the alert's heatmap", alerts)
        shown = page.evaluate(
            f"(() => {{ const e = {over_span}; const img = e.el.querySelector('img.thumb');"
            " const heat = e.el.querySelector('img.heat');"
            " return {stats: window.vigil.stats, alert: e.alert, text: e.el.innerText,"
            " img: [img.naturalWidth, img.naturalHeight], heat: [heat.naturalWidth, heat.naturalHeight],"
            " chart: document.querySelector('canvas.chart').width}; })()"
        )
        target = shown["alert"]["id"]
        row = f"document.querySelector('#alerts .alert[data-alert=\"{target}\"]')"
        # Its clip: the page learns it exists (the alert's `clip`), fetches it with the key and plays it.
        page.wait_for(f"!!{row}?.querySelector('button.play-clip')", 40, "the clip's button", f"{row}?.innerText")
        page.evaluate(f"{row}.querySelector('button.play-clip').click(); true")
        page.wait_for(f"{row}?.dataset.clip === 'loaded'", 20, "the clip playing in a <video>", "window.vigil.stats")
        video = page.evaluate(
            f"(() => {{ const v = {row}.querySelector('video.clip');"
            " return {ready: v.readyState, duration: v.duration, width: v.videoWidth}; })()"
        )
        # The operator marks it a false alarm from the page (with an operator key): the verdict shows in the list.
        page.evaluate(
            f"document.getElementById('key-input').value = {json.dumps(OPERATOR_KEY)};"
            "document.getElementById('key-form').requestSubmit(); true"
        )
        page.wait_for("document.getElementById('conn').dataset.alerts === 'open'", 10, "reconnected as operator")
        page.evaluate(f"{row}.querySelector('button.give-false_alarm').click(); true")
        page.wait_for(f"{row}?.querySelector('.feedback')?.dataset.verdict === 'false_alarm'", 10, "the verdict shown")
        # What if the threshold were higher: the slider replays the chart's range and marks what it would raise.
        page.evaluate(
            "(() => { const s = document.querySelector('.camera[data-camera=lobby] input[type=range]');"
            " s.value = '0.9'; s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); })(); true"
        )
        page.wait_for("window.vigil.stats.replays >= 1", 10, "a replay", "window.vigil.stats")
        replay_text = page.evaluate("document.querySelector('.camera[data-camera=lobby] .replay-result').textContent")
        shot = page.screenshot(tmp_path / "live.png")
    _keep_screenshot(shot)
    assert "alert(s) over the last" in replay_text
    given = httpx.get(f"{stack.api_url}/alerts/{target}", headers={"X-API-Key": VIEWER_KEY}, timeout=10).json()
    assert given["feedback"]["verdict"] == "false_alarm"
    assert given["feedback"]["role"] == "operator"
    alert = shown["alert"]
    assert alert["camera"] == "lobby"
    assert alert["start_frame"] <= alert["peak_frame"] <= (alert["end_frame"] or alert["peak_frame"])
    assert f"frame {alert['peak_frame']}" in shown["text"]
    assert shown["stats"]["scores"] >= 50
    assert shown["chart"] > 0
    # The thumbnail the page showed is the one the API serves, and it is a JPEG.
    thumb = httpx.get(
        f"{stack.api_url}/alerts/{alert['id']}/thumbnail.jpg", headers={"X-API-Key": VIEWER_KEY}, timeout=10
    )
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    assert [image.shape[1], image.shape[0]] == shown["img"]
    assert shown["heat"] == shown["img"]  # the heatmap is the same peak frame with the map drawn over it
    assert shown["heat"][0] > 0
    assert shown["stats"]["heatmaps"] >= 1
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    _check_clip(stack.api_url, target, video)


def _check_clip(api_url: str, alert_id: str, video: dict[str, float]) -> None:
    """The clip the page played decodes with PyAV and covers [start - 5 s pre-roll, end] (the file camera's 8 s cut
    it short: the pre-roll starts at 0, the 5 s post-roll runs to the file's end); browsers get ranges."""
    key = {"X-API-Key": VIEWER_KEY}
    alert = httpx.get(f"{api_url}/alerts/{alert_id}", headers=key, timeout=10).json()
    assert alert["clip"] == f"/alerts/{alert_id}/clip.mp4"
    data = httpx.get(f"{api_url}{alert['clip']}", headers=key, timeout=10)
    assert data.status_code == 200
    with av.open(io.BytesIO(data.content)) as container:
        times = [f.time for f in container.decode(video=0)]
    start = max(0.0, alert["start_pts"] - 5.0)
    end = alert["end_pts"] if alert["end_pts"] is not None else alert["start_pts"]
    assert times[0] == 0.0
    assert times[-1] >= end - start - 0.05
    assert len(times) == round(times[-1] * 25) + 1  # every source frame of the span, none twice
    assert video["ready"] >= 1  # HAVE_METADATA or more
    assert 1.0 < video["duration"] <= times[-1] + 0.1  # the page may have played the partial clip (alert still open)
    assert video["width"] == 64  # the source is narrower than clips.width: it keeps its width
    part = httpx.get(f"{api_url}{alert['clip']}", headers={**key, "Range": "bytes=-64"}, timeout=10)
    assert (part.status_code, part.content) == (206, data.content[-64:])


def _seed_alerts(redis_url: str, count: int) -> None:
    """`count` closed alerts of another camera, stored the way workers store them (revision, indexes, event)."""
    r = redis.Redis.from_url(redis_url)
    for i in range(count):
        alert = Alert(
            id=f"seeded-{i}", camera="seeded", model=f"{MODEL}@v1", state="closed", start_frame=10 * i,
            start_ts=1e9 + i, end_frame=10 * i + 5, end_ts=1e9 + i + 0.2, peak_score=0.99, peak_frame=10 * i,
        )  # fmt: skip
        topics.save_alert_event(r, AlertEvent(kind="closed", alert=alert), retention_s=3600)
    r.close()


def _keep_screenshot(shot: Path) -> None:
    import os

    target = os.environ.get(SCREENSHOT_DIR_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / shot.name).write_bytes(shot.read_bytes())

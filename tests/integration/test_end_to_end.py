"""RTSP server -> ingest -> worker -> API, all real processes: every frame's score over WebSocket, in order, and
an alert covering the anomalous span in GET /alerts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.up import Stack
from tests.conftest import ANOMALY_SPAN
from tests.integration.conftest import CONTEXT, collect, wait_http, ws_connect
from tests.rtsp import RtspServer
from tests.service.worker.models_util import MODEL

CLIP_FRAMES = 64  # the synthetic clip loops on the RTSP server: frame f of the stream is frame f % 64 of the clip
FRAMES = 200


def _covers_span(alert: dict, span: tuple[int, int]) -> bool:
    """Does the alert overlap the anomalous span of some loop of the clip (frames count from the stream start)?"""
    end = alert["start_frame"] if alert["end_frame"] is None else alert["end_frame"]
    return any(span[0] <= f % CLIP_FRAMES < span[1] for f in range(alert["start_frame"], end + 1))


@pytest.mark.integration
def test_rtsp_camera_scores_every_frame_in_order_and_alerts(
    synthetic_video: tuple[Path, np.ndarray],
    rtsp_server_factory: Callable[..., RtspServer],
    make_stack: Callable[..., Stack],
    redis_url: str,
) -> None:
    server = rtsp_server_factory(synthetic_video[0], user="op", password="s3cret", duration_s=20)
    stack = make_stack(redis_url)
    with ws_connect(stack, "/ws/scores?camera=door") as ws:
        r = httpx.post(f"{stack.api_url}/cameras", json={"id": "door", "url": server.url(), "model": MODEL}, timeout=10)
        assert r.status_code == 201, r.text
        assert "s3cret" not in r.text
        # The clip loops with its anomaly every 2.6 s, so learning from the camera's first minutes would learn the
        # anomaly as normal: take the model card's normal frames as the reference instead.
        cal = httpx.post(f"{stack.api_url}/cameras/door/calibration", json={"source": "card"}, timeout=10)
        assert cal.status_code == 200, cal.text
        assert cal.json()["version"] >= 1
        scores = collect(ws, lambda got: len(got) >= FRAMES, timeout_s=90)
    frames = [s["frame"] for s in scores]
    assert frames[:FRAMES] == list(range(CONTEXT, CONTEXT + FRAMES))  # every frame, once, in order
    assert all(0 <= s["score"] <= 1 for s in scores)
    status = httpx.get(f"{stack.api_url}/cameras/door/status", timeout=10).json()
    assert status["state"] == "streaming"
    alerts = wait_http(
        lambda: httpx.get(f"{stack.api_url}/alerts", params={"camera": "door"}, timeout=10),
        lambda resp: any(_covers_span(a, ANOMALY_SPAN) for a in resp.json()["alerts"]),
        30,
        "an alert covering the anomalous span",
    ).json()["alerts"]
    assert all(a["camera"] == "door" for a in alerts)
    ready = httpx.get(f"{stack.api_url}/readyz", timeout=10).json()
    assert ready["ready"] is True

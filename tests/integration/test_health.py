"""Camera health through the real pipeline (api + ingest + worker processes, a real RTSP server, real H.264):
a frozen RTSP stream, a file with corrupt packets, an IR-like switch and a covered lens each raise their health
condition (state, `/ws/health`, webhook), open no anomaly alert, and recover. The covered clip played by a camera
whose checks are off alerts, so the faults are ones the model does score as anomalies."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from cli.up import Stack
from tests import faults
from tests.integration.conftest import collect, wait_http, ws_connect
from tests.rtsp import RtspServer
from tests.service.worker.models_util import MODEL
from tests.synthetic import render_frames, write_stream

CLIP = 308  # 11 periods of the synthetic walker (28 frames): the RTSP server's loop has no seam
FAULT = (140, 216)  # 3 s at 25 fps, after 5.6 s of healthy frames (the reference view needs 4 s)


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: list[tuple[str, dict[str, Any]]] = []  # (X-Vigil-Event, body)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.events.append((self.headers.get("x-vigil-event", ""), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[_Receiver]:
    server = _Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _colour(frames: np.ndarray) -> np.ndarray:
    """The grey synthetic scene with colour added and its luma kept (what the tiny model was trained on)."""
    out = []
    for frame in frames:
        ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb)
        ycrcb[..., 1], ycrcb[..., 2] = 150, 110
        out.append(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR))
    return np.stack(out)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("health")
    grey, _ = render_frames(CLIP, (64, 64), None, seed=7)
    frozen = write_stream(root / "frozen.mp4", faults.inject(grey, faults.frozen, *FAULT), gop=25)
    clean = write_stream(root / "clean.mp4", grey, gop=25)
    return {
        "frozen": frozen,
        "corrupt": faults.corrupt_packets(clean, root / "corrupt.mp4", FAULT[0], 3),
        "ir": write_stream(root / "ir.mp4", faults.inject(_colour(grey), faults.ir_switch, *FAULT), gop=25),
        "covered": write_stream(root / "covered.mp4", faults.inject(grey, faults.covered, *FAULT), gop=25),
    }


def _raised_and_cleared(events: list[dict[str, Any]], camera: str, condition: str) -> bool:
    kinds = [e["kind"] for e in events if e["camera"] == camera and e["condition"] == condition]
    return "raised" in kinds and kinds[-1] == "cleared"


@pytest.mark.integration
def test_broken_video_raises_camera_health_not_anomaly_alerts(
    clips: dict[str, Path],
    rtsp_server_factory: Callable[..., RtspServer],
    make_stack: Callable[..., Stack],
    redis_url: str,
    webhook: _Receiver,
) -> None:
    server = rtsp_server_factory(clips["frozen"], duration_s=60)
    stack = make_stack(
        redis_url,
        VIGIL_FOOTAGE_ROOT=str(clips["covered"].parent),
        VIGIL_ALERTS__WEBHOOK_URL=f"http://127.0.0.1:{webhook.server_port}/hook",
        VIGIL_ALERTS__WEBHOOK_EVENTS='["alerts", "health"]',
        # Each camera learns its normal from its first 3 s (the faults start at 5.6 s); the IR camera learns its
        # mono profile after the switch (alerts held back meanwhile), as a real camera does.
        VIGIL_CALIBRATION__LEARN_S="3",
        VIGIL_CALIBRATION__MIN_LEARN_FRAMES="50",
    )
    api = stack.api_url
    cameras = {
        "frozen": ({"url": server.url()}, "frozen"),
        "corrupt": ({"url": str(clips["corrupt"]), "kind": "file"}, "decode_error"),
        "ir": ({"url": str(clips["ir"]), "kind": "file"}, "ir_switch"),
        "covered": ({"url": str(clips["covered"]), "kind": "file"}, "covered"),
        "unchecked": ({"url": str(clips["covered"]), "kind": "file", "health": {"enabled": False}}, None),
    }
    with ws_connect(stack, "/ws/health") as ws:
        for camera, (body, _) in cameras.items():
            r = httpx.post(f"{api}/cameras", json={"id": camera, "model": MODEL, **body}, timeout=10)
            assert r.status_code == 201, r.text
        expected = {c: condition for c, (_, condition) in cameras.items() if condition is not None}
        events = collect(
            ws, lambda got: all(_raised_and_cleared(got, c, cond) for c, cond in expected.items()), timeout_s=60
        )

    # The same clip with the checks off alerts on the covered lens: the faults are anomalies to the model.
    wait_http(
        lambda: httpx.get(f"{api}/alerts", params={"camera": "unchecked"}, timeout=10),
        lambda resp: bool(resp.json()["alerts"]),
        30,
        "an alert of the camera without health checks",
    )
    for camera in expected:
        alerts = httpx.get(f"{api}/alerts", params={"camera": camera}, timeout=10).json()["alerts"]
        assert alerts == [], f"{camera}: a fault opened an anomaly alert: {alerts}"
        health = httpx.get(f"{api}/cameras/{camera}/health", timeout=10).json()
        assert (health["state"], health["conditions"]) == ("ok", {}), health
        assert health["params"]["frozen"]["min_s"] == 1.0
    assert not [e for e in events if e["camera"] == "unchecked"]

    # Flagged frames carry their conditions in ScoreMsg and never alert.
    scores = httpx.get(f"{api}/cameras/covered/scores", params={"limit": 10_000}, timeout=10).json()["scores"]
    flagged = [s for s in scores if s["health"]]
    assert flagged
    assert all(not s["alertable"] for s in flagged)
    assert {c for s in flagged for c in s["health"]} >= {"covered"}
    ir_profiles = [s["calibration"]["profile"] for s in httpx.get(f"{api}/cameras/ir/scores").json()["scores"]]
    assert "mono" in ir_profiles, "the IR frames were scored on the mono profile"
    assert ir_profiles[-1] == "colour"

    # Webhooks subscribed to health events got them, marked as such.
    got = [(kind, e["camera"], e["condition"], e["kind"]) for kind, e in webhook.events if kind == "health"]
    for camera, condition in expected.items():
        assert ("health", camera, condition, "raised") in got
        assert ("health", camera, condition, "cleared") in got
    listed = {c["id"]: c["conditions"] for c in httpx.get(f"{api}/cameras", timeout=10).json()}
    assert listed["covered"] == []

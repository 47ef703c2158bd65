"""A camera's calibration through the real stack (ingester, worker and API processes on a private Redis): it learns
from its first seconds with alerts held back, alerts on an anomaly, an operator marks that a false alarm and the same
anomaly later scores lower, a replay of the whole clip with the live parameters gives the live alerts, and the
calibration is still there after the whole stack restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.up import Stack
from tests.integration.conftest import collect, wait_http, ws_connect
from tests.service.worker.models_util import MODEL
from tests.synthetic import render_frames, write_video

FIRST, SECOND = (150, 175), (400, 425)  # the same anomaly twice, 10 s apart, in a 20 s clip at 25 fps
FRAMES = 500


@pytest.fixture
def twice(tmp_path: Path) -> Path:
    frames, _ = render_frames(FRAMES, (64, 64), FIRST)
    again, _ = render_frames(FRAMES, (64, 64), SECOND)  # same scene and walker: only the block differs
    frames[SECOND[0] : SECOND[1]] = again[SECOND[0] : SECOND[1]]
    return write_video(tmp_path / "twice.mp4", frames)


@pytest.mark.integration
def test_learning_alert_feedback_replay_and_restart_on_the_real_stack(
    make_stack: Callable[..., Stack], redis_url: str, twice: Path
) -> None:
    env = {"VIGIL_FOOTAGE_ROOT": str(twice.parent), "VIGIL_CALIBRATION__LEARN_S": "4"}
    env["VIGIL_CALIBRATION__MIN_LEARN_FRAMES"] = "50"
    stack = make_stack(redis_url, **env)
    api = stack.api_url
    camera = {"id": "porch", "url": str(twice), "model": MODEL, "kind": "file", "realtime": True}
    with ws_connect(stack, "/ws/scores?camera=porch") as ws:
        started = time.time()
        assert httpx.post(f"{api}/cameras", json=camera, timeout=10).status_code == 201
        # While the first anomaly's alert is open or just closed, the operator calls it a false alarm.
        first = wait_http(
            lambda: httpx.get(f"{api}/alerts", params={"camera": "porch"}, timeout=10),
            lambda r: any(a["state"] == "closed" for a in r.json()["alerts"]),
            60,
            "the first anomaly's alert to close",
        ).json()["alerts"][0]
        given = httpx.post(f"{api}/alerts/{first['id']}/feedback", json={"verdict": "false_alarm"}, timeout=10)
        assert given.status_code == 200, given.text
        assert given.json()["feedback"]["reference_version"] == 2
        scores = collect(ws, lambda got: len(got) >= FRAMES - 4, timeout_s=60)
    frames = np.array([s["frame"] for s in scores])
    assert frames.tolist() == list(range(4, FRAMES))
    states = [s["calibration"]["state"] for s in scores]
    learned = states.index("ready")
    assert set(states[:learned]) == {"learning"}
    assert 95 <= learned <= 110
    assert not any(s["alertable"] for s in scores[:learned])
    assert FIRST[0] - 4 <= first["start_frame"] <= FIRST[1]
    # The second, identical anomaly came after the feedback: it scored on version 2 and lower.
    versions = {s["calibration"]["version"] for s in scores if s["frame"] >= SECOND[0]}
    assert versions == {2}
    peak = [max(s["score"] for s in scores if a <= s["frame"] < b + 10) for a, b in (FIRST, SECOND)]
    assert peak[1] < peak[0] - 0.1, peak
    alerts = httpx.get(f"{api}/alerts", params={"camera": "porch"}, timeout=10).json()["alerts"]
    assert all(a["start_frame"] < SECOND[0] for a in alerts)  # no alert on the second one
    # The replay of the clip with the live parameters finds the live alerts.
    body = {"start": started - 5, "end": time.time() + 1}
    replayed = httpx.post(f"{api}/cameras/porch/replay", json=body, timeout=30).json()
    key = ("start_frame", "end_frame", "peak_frame", "peak_score")
    latest = {a["id"]: a for a in alerts}
    assert [[a[k] for k in key] for a in replayed["alerts"]] == [[a[k] for k in key] for a in latest.values()]
    assert replayed["held_back"] == learned
    before = httpx.get(f"{api}/cameras/porch/calibration", timeout=10).json()
    assert (before["state"], before["version"]) == ("ready", 2)
    assert before["profile"] == "mono"  # the synthetic footage is grey
    assert before["profiles"]["mono"]["feedback_frames"] > 0
    stack.stop()

    again = make_stack(redis_url, **env)  # every process new; Redis (and so the calibration) stays
    after = httpx.get(f"{again.api_url}/cameras/porch/calibration", timeout=10).json()
    assert {k: after[k] for k in ("state", "version", "profile", "profiles")} == {
        k: before[k] for k in ("state", "version", "profile", "profiles")
    }

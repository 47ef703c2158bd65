"""RTSP cameras from a real RTSP server (tests/rtsp.py): streaming, an alert's clip from the camera's packet buffer,
server restart, bad credentials, dead URLs."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import redis

from service.bus import topics
from service.ingest.ingester import Ingester
from service.messages import Alert, AlertEvent, CameraConfig
from service.settings import ClipSettings, Settings
from tests.conftest import free_port
from tests.rtsp import RtspServer
from tests.service.ingest.conftest import MODEL, SPEC, make_settings, state_is, status, wait_for, windows


def live_camera(camera: str, url: str) -> CameraConfig:
    return CameraConfig(id=camera, url=url, model=MODEL, kind="live")


def test_rtsp_camera_streams_and_recovers_when_the_server_restarts(
    synthetic_video: tuple[Path, np.ndarray],
    rtsp_server_factory: Callable[..., RtspServer],
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., Ingester],
    tmp_path: Path,
) -> None:
    server = rtsp_server_factory(synthetic_video[0], duration_s=60)
    clips = ClipSettings(dir=tmp_path / "clips", pre_roll_s=1.0, post_roll_s=1.0, sweep_interval_s=3600)
    start_ingester(settings.model_copy(update={"clips": clips}))
    topics.put_camera(rclient, live_camera("door", server.url()))
    wait_for(lambda: len(windows(rclient, "door")) >= 3, 20, "windows from the RTSP camera")
    _check_live_clip(rclient, clips)
    assert status(rclient, "door").state == "streaming"  # type: ignore[union-attr]
    before = windows(rclient, "door")
    assert [w.seq for w in before] == list(range(1, len(before) + 1))
    assert before[0].first_frame == SPEC.context  # warm-up frames of the first window get no score
    assert all(b.first_frame == a.first_frame + a.num_scored for a, b in itertools.pairwise(before))

    server.pause()  # connection open, no data: the stall timeout must fire
    wait_for(state_is(rclient, "door", "stalled"), 10, "the camera to stall")
    server.resume()
    wait_for(state_is(rclient, "door", "streaming"), 20, "streaming after the stall")

    server.stop()
    down = wait_for(state_is(rclient, "door", "stalled", "connecting", "error"), 15, "the camera to notice")
    assert "127.0.0.1" in down.reason or "no data" in down.reason or "ended" in down.reason
    server.start()
    wait_for(lambda: (s := status(rclient, "door")) and s.state == "streaming" and s.reconnects > 0, 20, "recovery")
    n = len(windows(rclient, "door"))
    wait_for(lambda: len(windows(rclient, "door")) >= n + 2, 15, "windows after the restart")
    after = windows(rclient, "door")
    assert [w.seq for w in after] == list(range(1, len(after) + 1))  # seq continues, no gaps
    gaps = [b.first_frame - (a.first_frame + a.num_scored) for a, b in itertools.pairwise(after)]
    # each reconnect (stall, server restart) leaves a gap of `context` warm-up frames, nothing else
    assert sorted(set(gaps)) == [0, SPEC.context]
    for a, gap in zip(after, [*gaps, 0], strict=True):
        assert a.frames.shape == (SPEC.context + a.num_scored, 32, 32, 1)
        # frames decoded before a drop go out in a shorter window instead of being lost
        assert a.num_scored == 4 or gap == SPEC.context


def _check_live_clip(r: redis.Redis, clips: ClipSettings) -> None:
    """An alert of the camera opens and closes (as a worker publishes them): the ingester cuts its clip from the
    camera's packet buffer, [start - 1 s, end + 1 s], once the post-roll is in."""
    wait_for(lambda: (windows(r, "door")[-1].pts[-1] or 0) > 2.0, 20, "2 s of stream")
    start = windows(r, "door")[-1].pts[-1]
    assert start is not None
    alert = Alert(id="door-9-abc", camera="door", model=MODEL, state="open", start_frame=9, start_ts=time.time(),
                  start_pts=start, peak_score=0.9, peak_frame=9)  # fmt: skip
    topics.save_alert_event(r, AlertEvent(kind="opened", alert=alert), 600)
    wait_for(lambda: topics.get_alert_clips(r, [alert.id]), 10, "the partial clip")
    closed = alert.model_copy(update={"state": "closed", "end_frame": 20, "end_pts": start + 0.4})
    topics.save_alert_event(r, AlertEvent(kind="closed", alert=closed), 600)
    wait_for(lambda: topics.get_alert_clips(r, [alert.id])[alert.id].state == "final", 15, "the final clip")
    record = topics.get_alert_clips(r, [alert.id])[alert.id]
    assert record.source == "buffer"
    assert record.start_pts == pytest.approx(start - 1.0, abs=0.05)
    assert record.end_pts == pytest.approx(start + 1.4, abs=0.05)
    with av.open(str(clips.dir / "door" / f"{alert.id}.mp4")) as container:
        times = [f.time for f in container.decode(video=0)]
    assert times[-1] == pytest.approx(record.end_pts - record.start_pts, abs=1e-3)
    assert len(times) == record.frames


def test_wrong_credentials_and_unreachable_urls_are_errors_with_a_reason(
    synthetic_video: tuple[Path, np.ndarray],
    rtsp_server_factory: Callable[..., RtspServer],
    redis_url: str,
    model_store: Path,
    rclient: redis.Redis,
    start_ingester: Callable[..., Ingester],
) -> None:
    server = rtsp_server_factory(synthetic_video[0], user="admin", password="hunter2", duration_s=30)
    # UDP transport here (TCP in the other test), so both RTP paths run against the real server.
    ingester = start_ingester(make_settings(redis_url, model_store, rtsp_transport="udp"))
    topics.put_camera(rclient, live_camera("badpass", server.url(password="wrong-pw")))
    topics.put_camera(rclient, live_camera("closed", f"rtsp://u:pw@127.0.0.1:{free_port()}/cam"))
    topics.put_camera(rclient, live_camera("nopath", server.url().replace("/cam", "/nothing")))
    topics.put_camera(rclient, live_camera("good", server.url()))

    bad = wait_for(state_is(rclient, "badpass", "error"), 15, "the wrong password to be refused")
    assert "credentials" in bad.reason
    assert "401" in bad.reason
    assert "wrong-pw" not in bad.reason
    closed = wait_for(state_is(rclient, "closed", "error"), 15, "the closed port to be an error")
    assert "refused" in closed.reason.lower()
    assert ":pw@" not in closed.reason
    nopath = wait_for(state_is(rclient, "nopath", "error"), 15, "the unknown path to be an error")
    assert "404" in nopath.reason
    wait_for(lambda: len(windows(rclient, "good")) >= 2, 20, "windows from the good camera")
    # errors are retried with backoff, and nothing crashed
    wait_for(lambda: (s := status(rclient, "badpass")) and s.reconnects >= 2, 10, "retries")
    assert all(t.is_alive() for t in threading.enumerate() if t.name.startswith("ingest-read-"))
    assert set(ingester.runners) == {"badpass", "closed", "nopath", "good"}
    assert windows(rclient, "badpass") == []

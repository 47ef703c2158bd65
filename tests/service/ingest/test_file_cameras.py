"""File cameras end to end into a real Redis: window contents, pts, seq and context; corrupt files; bad models."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis

from models.data.transforms import prepare
from service.bus import keys, topics
from service.ingest.source import CorruptSourceError, SourceOptions, VideoSource
from service.messages import CameraConfig
from service.settings import Settings
from tests.service.ingest.conftest import MODEL, SPEC, make_settings, state_is, status, wait_for, windows
from tests.synthetic import render_frames


def file_camera(camera: str, path: Path, **kw: object) -> CameraConfig:
    fields: dict[str, object] = {"id": camera, "url": str(path), "model": MODEL, "kind": "file", "realtime": False}
    return CameraConfig.model_validate({**fields, **kw})


def test_file_camera_windows_have_the_right_frames_pts_seq_and_context(
    synthetic_video: tuple[Path, np.ndarray],
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    path, _ = synthetic_video
    start_ingester(settings)
    topics.put_camera(rclient, file_camera("clip", path))
    done = wait_for(state_is(rclient, "clip", "stopped"), 30, "the file camera to finish")
    assert "finished" in done.reason
    assert done.frames_decoded == 64
    got = windows(rclient, "clip")
    c, w = SPEC.context, settings.ingest.window_frames
    # 64 frames: 2 warm-up + 15 windows of 4 + a last window of 2 scores frames 2..63, each exactly once
    assert [m.seq for m in got] == list(range(1, 17))
    assert [m.first_frame for m in got] == [c + w * k for k in range(16)]
    assert [m.num_scored for m in got] == [w] * 15 + [2]
    truth = prepare(render_frames(64, (64, 64))[0], SPEC)  # (64, 32, 32, 1), what was drawn, prepared
    capture: list[float] = []
    for m in got:
        assert m.context == c
        assert m.model == MODEL
        assert m.source == "file"
        assert m.frames.shape == (c + m.num_scored, 32, 32, 1)
        span = slice(m.first_frame - c, m.first_frame + m.num_scored)
        diff = np.abs(m.frames.astype(int) - truth[span].astype(int))
        assert diff.max() <= 6, f"window {m.seq} does not hold frames {span}"  # near-lossless H.264
        assert m.pts == pytest.approx([i / 25 for i in range(m.first_frame, m.first_frame + m.num_scored)])
        capture += m.capture_ts
    assert capture == sorted(capture)
    assert time.time() - capture[0] < 60


def test_a_finished_file_camera_is_not_read_again_until_it_is_added_again(
    synthetic_video: tuple[Path, np.ndarray],
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    """A changed camera (or a new owner) resumes the play-through, which is over; deleted and added again, it
    plays the file again, numbered on from its last frame."""
    path, _ = synthetic_video
    start_ingester(settings)
    topics.put_camera(rclient, file_camera("clip", path))
    wait_for(state_is(rclient, "clip", "stopped"), 30, "the file camera to finish")
    assert len(windows(rclient, "clip")) == 16
    topics.put_camera(rclient, file_camera("clip", path, target_fps=None, alerts={"threshold": 0.9}))  # a change
    wait_for(lambda: (s := status(rclient, "clip")) and "read to the end before" in s.reason, 30, "the restart")
    assert len(windows(rclient, "clip")) == 16
    topics.delete_camera(rclient, "clip")
    wait_for(lambda: status(rclient, "clip") is None or status(rclient, "clip").state == "stopped", 10, "the stop")
    time.sleep(0.5)
    topics.put_camera(rclient, file_camera("clip", path))
    wait_for(lambda: len(windows(rclient, "clip")) == 32, 30, "the file to play again")
    again = windows(rclient, "clip")[16:]
    assert [w.first_frame for w in again] == [64 + SPEC.context + 4 * k for k in range(16)]


def test_realtime_file_is_paced_at_its_frame_rate(synthetic_video: tuple[Path, np.ndarray]) -> None:
    path, _ = synthetic_video
    with VideoSource(str(path), SourceOptions(realtime=True)) as source:
        start = time.monotonic()
        for frame in source:
            if frame.index == 12:
                break
    assert 0.4 <= time.monotonic() - start < 1.5  # 12 frame intervals at 25 fps = 0.48 s


def test_corrupt_file_is_an_error_and_the_other_camera_goes_on(
    synthetic_video: tuple[Path, np.ndarray],
    tmp_path: Path,
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    path, _ = synthetic_video
    corrupt = tmp_path / "corrupt.mp4"
    data = bytearray(path.read_bytes())
    data[: len(data) // 2] = np.random.default_rng(0).integers(0, 256, len(data) // 2, dtype=np.uint8).tobytes()
    corrupt.write_bytes(bytes(data))  # header and half the frames destroyed
    with pytest.raises(CorruptSourceError, match="cannot decode"), VideoSource(str(corrupt)) as source:
        list(source)
    start_ingester(settings)
    topics.put_camera(rclient, file_camera("broken", corrupt))
    topics.put_camera(rclient, file_camera("nomodel", path, model="no-such-model"))
    topics.put_camera(rclient, file_camera("good", path))
    broken = wait_for(state_is(rclient, "broken", "error"), 20, "the corrupt file to be an error")
    assert "cannot decode" in broken.reason
    nomodel = wait_for(state_is(rclient, "nomodel", "error"), 20, "the unknown model to be an error")
    assert "no-such-model" in nomodel.reason
    assert MODEL in nomodel.reason
    wait_for(state_is(rclient, "good", "stopped"), 30, "the good camera to finish")
    assert len(windows(rclient, "good")) == 16
    assert windows(rclient, "broken") == []
    assert windows(rclient, "nomodel") == []


def test_removing_a_camera_stops_it_and_releases_its_lease(
    synthetic_video: tuple[Path, np.ndarray],
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    path, _ = synthetic_video
    ingester = start_ingester(settings)
    slow = file_camera("slow", path).model_copy(update={"realtime": True})
    topics.put_camera(rclient, slow)
    wait_for(state_is(rclient, "slow", "streaming"), 20, "the camera to stream")
    assert rclient.get(keys.camera_lease_key("slow")) == ingester.id.encode()  # type: ignore[attr-defined]
    topics.delete_camera(rclient, "slow")
    wait_for(lambda: rclient.get(keys.camera_lease_key("slow")) is None, 10, "the lease to be released")
    wait_for(lambda: "slow" not in ingester.runners, 10, "the runner to stop")  # type: ignore[attr-defined]
    assert status(rclient, "slow") is None or status(rclient, "slow").state == "stopped"  # type: ignore[union-attr]


def test_files_outside_the_footage_root_are_refused(
    synthetic_video: tuple[Path, np.ndarray],
    tmp_path: Path,
    settings: Settings,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    start_ingester(settings.model_copy(update={"footage_root": tmp_path / "footage"}))
    topics.put_camera(rclient, file_camera("outside", synthetic_video[0]))
    refused = wait_for(state_is(rclient, "outside", "error"), 20, "the file outside the root to be refused")
    assert "outside the footage root" in refused.reason
    assert windows(rclient, "outside") == []


def test_control_messages_start_a_camera_without_waiting_for_the_next_tick(
    synthetic_video: tuple[Path, np.ndarray],
    redis_url: str,
    model_store: Path,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
) -> None:
    slow_ticks = make_settings(redis_url, model_store, lease_ttl_s=60, heartbeat_ttl_s=60)  # a tick every 20 s
    ingester = start_ingester(slow_ticks, ingester_id="slow-ticks")
    wait_for(lambda: rclient.exists(keys.heartbeat_key("ingest", "slow-ticks")), 10, "the first tick")
    start = time.monotonic()
    topics.put_camera(rclient, file_camera("prompt", synthetic_video[0]))
    wait_for(lambda: "prompt" in ingester.runners, 5, "the camera to start on the control message")  # type: ignore[attr-defined]
    assert time.monotonic() - start < 5  # far sooner than the 20 s tick

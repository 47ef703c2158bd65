"""Camera ownership between ingesters: one holds the lease, a killed one's cameras move; Redis restarts are survived."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from service.bus import keys, topics
from service.errors import EndOfStream
from service.ingest.ingester import Ingester
from service.ingest.source import SourceOptions, VideoSource
from service.messages import CameraConfig
from tests.conftest import free_port
from tests.rtsp import loop_clip
from tests.service.ingest.conftest import MODEL, SPEC, make_settings, status, wait_for, windows

REPO = Path(__file__).resolve().parents[3]
DROPPED = "vigil_ingest_frames_dropped_total"


def lease_owner(r: redis.Redis, camera: str) -> str | None:
    owner = r.get(keys.camera_lease_key(camera))
    return owner.decode() if owner is not None else None


@pytest.fixture
def long_clip(synthetic_video: tuple[Path, np.ndarray], tmp_path: Path) -> Path:
    return loop_clip(synthetic_video[0], tmp_path / "long.mp4", 60)  # plays in real time for a minute


@pytest.fixture
def ten_s_clip(synthetic_video: tuple[Path, np.ndarray], tmp_path: Path) -> Path:
    return loop_clip(synthetic_video[0], tmp_path / "ten.mp4", 8)  # 256 frames: 10 s in real time


def prepared_frames(path: Path) -> np.ndarray:
    """Every frame of a file as the ingester prepares it for SPEC, by position in the recording."""
    images = []
    with VideoSource(str(path), SourceOptions(realtime=False, spec=SPEC)) as source, contextlib.suppress(EndOfStream):
        images.extend(frame.image for frame in source)
    return np.stack(images)


def test_a_killed_ingesters_cameras_move_to_a_live_one(
    ten_s_clip: Path,
    redis_url: str,
    model_store: Path,
    rclient: redis.Redis,
    start_ingester: Callable[..., Ingester],
) -> None:
    env = {
        **os.environ,
        "VIGIL_REDIS__URL": redis_url,
        "VIGIL_STORE__ROOT": str(model_store),
        "VIGIL_INGEST__LEASE_TTL_S": "1.5",
        "VIGIL_INGEST__WINDOW_FRAMES": "4",
        "VIGIL_INGEST__METRICS_PORT": str(metrics_port := free_port()),
    }
    topics.put_camera(rclient, CameraConfig(id="lobby", url=str(ten_s_clip), model=MODEL, kind="file"))
    a = subprocess.Popen([sys.executable, "-m", "cli.main", "ingest", "--id", "ing-a"], cwd=REPO, env=env)
    try:
        wait_for(lambda: lease_owner(rclient, "lobby") == "ing-a", 30, "ingester A to take the camera")
        wait_for(lambda: (s := status(rclient, "lobby")) and s.state == "streaming", 20, "A to stream")
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text  # A's own /metrics
        assert 'vigil_ingest_stream_state{camera="lobby",state="streaming"} 1.0' in scraped
        assert 'vigil_ingest_frames_decoded_total{camera="lobby"}' in scraped
        assert 'vigil_ingest_cameras_owned{ingester="ing-a"} 1.0' in scraped
        b = start_ingester(make_settings(redis_url, model_store), ingester_id="ing-b")
        wait_for(lambda: rclient.exists(keys.heartbeat_key("ingest", "ing-b")), 10, "B's heartbeat")
        time.sleep(2.0)  # longer than a lease: A renews, B must not take the camera
        assert lease_owner(rclient, "lobby") == "ing-a"
        assert b.runners == {}
        a.send_signal(signal.SIGKILL)  # no cleanup: the lease has to expire
        a.wait(10)
        wait_for(lambda: lease_owner(rclient, "lobby") == "ing-b", 10, "B to take the camera over")
        by_a = len(windows(rclient, "lobby"))
        done = wait_for(lambda: (s := status(rclient, "lobby")) and s.state == "stopped" and s, 30, "B to finish")
        assert done.owner == "ing-b"
        assert "finished" in done.reason
        got = windows(rclient, "lobby")
        assert 0 < by_a < len(got)  # A published part of the file, B the rest
        seqs = [w.seq for w in got]
        assert seqs == list(range(1, len(seqs) + 1))  # one camera sequence across both ingesters
        # B resumed A's play-through at the camera's next frame: every frame of the recording after the warm-up went
        # out exactly once, numbered by its position in the file, with its own pixels and pts, in one stream.
        truth = prepared_frames(ten_s_clip)
        frames = [f for w in got for f in range(w.first_frame, w.first_frame + w.num_scored)]
        assert frames == list(range(SPEC.context, len(truth)))
        assert {w.stream for w in got} == {got[0].stream}
        for w in got:
            positions = slice(w.first_frame - SPEC.context, w.first_frame + w.num_scored)
            np.testing.assert_array_equal(w.frames, truth[positions], err_msg=f"window {w.seq}")
            assert w.pts == pytest.approx([f / 25 for f in range(w.first_frame, w.first_frame + w.num_scored)])
        assert topics.camera_next_frame(rclient, "lobby") == len(truth)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(10)


def _redis_server(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    assert exe is not None
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    wait_for(lambda: _pings(client), 10, "redis-server to start")
    client.close()
    return proc


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server this test may kill and restart on the same port (the shared one must stay up)."""
    port = free_port()
    procs = [_redis_server(port)]
    yield port, procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


def test_the_ingester_survives_a_redis_restart(
    long_clip: Path,
    model_store: Path,
    own_redis: tuple[int, list[subprocess.Popen[bytes]]],
    start_ingester: Callable[..., Ingester],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis comes back empty (no persistence, as a Redis without appendonly does): the camera registry comes back
    from the ingester's copy, with an error that says what was lost; cameras used to stop, to be added by hand."""
    port, procs = own_redis
    r = redis.Redis(port=port)
    camera = CameraConfig(id="yard", url=str(long_clip), model=MODEL, kind="live")
    disabled = CameraConfig(id="spare", url=str(long_clip), model=MODEL, kind="live", enabled=False)
    topics.put_camera(r, camera)
    topics.put_camera(r, disabled)
    # a backlog of 2 windows: while Redis is down the live camera must drop its oldest windows
    ingester = start_ingester(make_settings(f"redis://127.0.0.1:{port}/0", model_store, live_queue_windows=2))
    wait_for(lambda: len(windows(r, "yard")) >= 2, 20, "windows before the restart")
    dropped = REGISTRY.get_sample_value(DROPPED, {"camera": "yard", "reason": "backpressure"}) or 0.0
    procs[0].kill()
    procs[0].wait(10)
    time.sleep(2.0)  # Redis down: the camera keeps decoding (25 fps = 6 windows/s), the publisher retries
    assert ingester.runners["yard"].frames_dropped >= 4
    assert (REGISTRY.get_sample_value(DROPPED, {"camera": "yard", "reason": "backpressure"}) or 0) >= dropped + 4
    procs.append(_redis_server(port))  # a fresh, empty Redis (no persistence): nothing is re-created by hand
    wait_for(lambda: len(windows(r, "yard")) >= 2, 20, "windows after the restart")
    wait_for(lambda: {c.id: c for c in topics.list_cameras(r)} == {"yard": camera, "spare": disabled}, 10, "cameras")
    lost = [rec for rec in caplog.records if rec.levelname == "ERROR" and "Redis lost its data" in rec.getMessage()]
    assert len(lost) == 1
    assert "Restored 2 camera(s)" in lost[0].getMessage()
    assert "Lost for good: the scores, alerts" in lost[0].getMessage()
    wait_for(lambda: lease_owner(r, "yard") == ingester.id, 10, "the lease to be taken back")
    wait_for(lambda: (s := status(r, "yard")) and s.state == "streaming", 10, "the status to be written again")
    assert list(ingester.runners) == ["yard"]
    r.close()

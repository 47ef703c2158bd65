"""Fault tests of the worker: a worker SIGKILLed mid-stream (its windows are claimed by another, none lost),
and Redis restarted under a running worker (it reconnects, recreates its group and goes on)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY

from service.bus import keys, topics
from service.messages import WindowMsg
from tests.conftest import free_port
from tests.service.worker.helpers import all_scores, running_worker, wait_for, worker_settings
from tests.service.worker.models_util import make_windows

pytestmark = pytest.mark.slow


def _worker_env(redis_url: str, store_root: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        VIGIL_REDIS__URL=redis_url,
        VIGIL_STORE__ROOT=store_root,
        VIGIL_WORKER__DEVICE="cpu",
        # A batch of 16 that waits up to 5 s to fill: windows it has read sit pending (unacknowledged) that long,
        # which gives the test a window of time to kill it mid-stream, without racing the scoring loop.
        VIGIL_WORKER__MAX_BATCH="16",
        VIGIL_WORKER__MAX_WAIT_MS="5000",
        VIGIL_WORKER__CLAIM_IDLE_MS="30000",
        VIGIL_WORKER__GAP_TIMEOUT_S="60",
        VIGIL_WORKER__HEARTBEAT_TTL_S="3",
        VIGIL_WORKER__METRICS_PORT="0",
    )
    return env


def _consumers(r: redis.Redis) -> list[str]:
    return [c["name"].decode() for c in r.xinfo_consumers(keys.windows_stream(0), keys.WINDOWS_GROUP)]


def _pending_of(r: redis.Redis, consumer: str) -> int:
    for c in r.xinfo_consumers(keys.windows_stream(0), keys.WINDOWS_GROUP):
        if c["name"] in (consumer, consumer.encode()):
            return int(c["pending"])
    return 0


def test_killed_worker_windows_are_claimed_and_no_score_is_missing(redis_url, trained_store, clip_frames, tmp_path):
    """The windows a killed worker held are taken over once its heartbeat is gone (heartbeat_ttl_s, 3 s here), not
    after claim_idle_ms (30 s, the default): that wait is how long its cameras' scores stand still."""
    r = redis.Redis.from_url(redis_url)
    frames = np.concatenate([clip_frames] * 3)  # 192 frames, 24 windows per camera
    cameras = ("k1", "k2")
    windows = list(zip(*(make_windows(c, frames, 4) for c in cameras), strict=True))

    def publish(groups: list[tuple[WindowMsg, ...]]) -> None:
        for group in groups:
            for window in group:
                topics.publish_window(r, window)

    publish(windows[:8])  # 8 windows per camera: a full batch of 16, scored at once
    log_path = tmp_path / "doomed.log"
    exe = [sys.executable, "-m", "cli.main", "worker", "--id", "doomed"]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(exe, env=_worker_env(redis_url, str(trained_store.root)), stderr=log_file)
    try:
        wait_for(lambda: r.xlen(keys.score_stream_key("k1")) == 64, 90, f"first scores ({log_path})")
        publish(windows[8:12])  # 8 more: read, then held pending while the worker waits to fill its batch
        wait_for(lambda: _pending_of(r, "doomed") == 8, 4, "the next windows to be read")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert _pending_of(r, "doomed") == 8
    publish(windows[12:])
    claimed_before = REGISTRY.get_sample_value("vigil_worker_windows_claimed_total") or 0.0

    with running_worker(worker_settings(redis_url, trained_store.root, claim_idle_ms=30_000, gap_timeout_s=60)):
        wait_for(lambda: all(r.xlen(keys.score_stream_key(c)) >= len(frames) - 4 for c in cameras), 60, "all scores")
        held_s = time.monotonic() - killed
        wait_for(lambda: "doomed" not in _consumers(r), 5, "the dead worker to leave the group")
    print(f"a worker killed holding 8 windows held their cameras back {held_s:.1f} s (heartbeat_ttl_s 3)")
    assert held_s < 10  # was claim_idle_ms: 30 s

    assert REGISTRY.get_sample_value("vigil_worker_windows_claimed_total") == claimed_before + 8
    for camera in cameras:
        assert [s.frame for s in all_scores(r, camera)] == list(range(4, len(frames)))
    assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["pending"] == 0


def _start_redis(port: int, folder: Path | None = None) -> subprocess.Popen[bytes]:
    """A redis-server on `port`; with `folder`, append-only with every write synced, so a kill loses nothing."""
    exe = shutil.which("redis-server")
    assert exe is not None
    persistence = ["--appendonly", "no"]
    if folder is not None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(folder)]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    wait_for(lambda: _pings(client), 10, "redis-server to start")
    client.close()
    return proc


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_worker_recovers_from_redis_restart(trained_store, clip_frames):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings = worker_settings(url, trained_store.root, heartbeat_ttl_s=1.5)
    errors_before = REGISTRY.get_sample_value("vigil_errors_total", {"component": "worker", "kind": "redis"}) or 0.0
    windows = make_windows("cam", clip_frames, 4)
    server = _start_redis(port)
    r = redis.Redis.from_url(url)
    try:
        with running_worker(settings, worker_id="survivor"):
            for w in windows[:2]:
                topics.publish_window(r, w)
            wait_for(lambda: r.xlen(keys.score_stream_key("cam")) == 16, 30, "scores before the restart")
            # Stop Redis under the running worker, then start it on the same port: it comes back empty (no
            # persistence), as after a crash, so the worker must also recreate its consumer group.
            _stop_redis(server)
            time.sleep(1.0)
            server = _start_redis(port)
            for w in windows:
                topics.publish_window(r, w)
            wait_for(lambda: r.xlen(keys.score_stream_key("cam")) == 60, 30, "scores after the restart")
            wait_for(lambda: bool(topics.read_heartbeats(r, "worker")), 5, "a fresh heartbeat")
        assert [s.frame for s in all_scores(r, "cam")] == list(range(4, 64))
    finally:
        r.close()
        _stop_redis(server)
    errors_after = REGISTRY.get_sample_value("vigil_errors_total", {"component": "worker", "kind": "redis"})
    assert errors_after > errors_before


def test_after_a_redis_restart_the_worker_reads_the_windows_it_held_at_once(trained_store, clip_frames, tmp_path):
    """Redis (with its append-only file) restarts while the worker holds windows it read but had not acknowledged:
    they are still pending on it, and it reads them again at once instead of claiming them from itself after
    claim_idle_ms (30 s, the default)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    # A batch of 16 that waits up to 5 s to fill: the 8 windows published are read, then held pending.
    settings = worker_settings(url, trained_store.root, max_batch=16, max_wait_ms=5000)
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"claim_idle_ms": 30_000})})
    windows = make_windows("cam", clip_frames, 4)
    server = _start_redis(port, tmp_path)
    r = redis.Redis.from_url(url)
    try:
        with running_worker(settings, worker_id="survivor"):
            wait_for(lambda: r.exists(keys.heartbeat_key("worker", "survivor")) == 1, 30, "the worker to start")
            for w in windows:
                topics.publish_window(r, w)
            wait_for(lambda: _pending_of(r, "survivor") == 8, 4, "the worker to hold the windows")
            server.kill()
            server.wait(10)
            server = _start_redis(port, tmp_path)  # the same data: the windows are still pending on the worker
            restarted = time.monotonic()
            assert _pending_of(r, "survivor") == 8
            wait_for(lambda: r.xlen(keys.score_stream_key("cam")) == 60, 20, "the held windows to be scored")
            back_s = time.monotonic() - restarted
        print(f"windows held across a Redis restart were scored {back_s:.1f} s after it came back")
        assert back_s < 10  # was claim_idle_ms: 30 s
        assert [s.frame for s in all_scores(r, "cam")] == list(range(4, 64))
        assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["pending"] == 0
    finally:
        r.close()
        _stop_redis(server)

"""The real stack (API, ingester, workers as processes) on a real local 3-master Redis Cluster: file cameras spread
over the shards are scored frame by frame with nothing lost or duplicated while a worker is killed holding windows and
a master is killed and restarted, and their alerts reach the global alert store through the outbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from cli.up import Stack
from service.bus import keys, topics
from service.bus.client import REDIS_ERRORS, connect
from service.settings import RedisSettings
from tests.conftest import free_port
from tests.integration.conftest import CONTEXT, stack_env
from tests.integration.test_fault_matrix import Processes, _lost_and_duplicated, _pending_cameras, _wait
from tests.redis_cluster import LocalCluster
from tests.rtsp import loop_clip
from tests.service.worker.models_util import MODEL

PARTITIONS = 6
CAMERAS = ["north", "south", "east", "west"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster").start()
    yield local
    local.stop()
    keys.set_partitions(1)


def _retrying(fn, timeout_s: float = 30):  # type: ignore[no-untyped-def]
    """`fn()`, retried while a master is away (the test's own reads ride through the restart like the service)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn()
        except REDIS_ERRORS:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.integration
def test_file_cameras_on_a_cluster_lose_nothing_through_a_killed_worker_and_a_restarted_master(
    synthetic_video: tuple[Path, np.ndarray], model_root: Path, cluster: LocalCluster, tmp_path: Path
) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    recording = loop_clip(synthetic_video[0], footage / "recording.mp4", 12)  # 320 frames, 12.8 s in real time
    env = stack_env(
        cluster.url,
        model_root,
        VIGIL_REDIS__CLUSTER="true",
        VIGIL_REDIS__PARTITIONS=str(PARTITIONS),
        VIGIL_FOOTAGE_ROOT=str(footage),
        VIGIL_WORKER__HEARTBEAT_TTL_S="5",
    )
    r = connect(RedisSettings(url=cluster.url, cluster=True, partitions=PARTITIONS))
    shards = {cluster.master_of(keys.camera_state_key(c)) for c in CAMERAS}
    assert len(shards) >= 2, "the cameras should live on more than one shard"
    stack = Stack(redis_url=cluster.url, api_port=free_port(), env=env, start_redis=False)
    procs = Processes(env, tmp_path)
    try:
        stack.start()
        stack.wait_ready(90)
        for camera in CAMERAS:
            body = {"id": camera, "url": str(recording), "model": MODEL, "kind": "file"}
            assert httpx.post(f"{stack.api_url}/cameras", json=body, timeout=10).status_code == 201
            # The clip loops with its anomaly every 2.6 s: calibrate on the model card's normal frames (as
            # test_end_to_end.py does), so the anomalies alert and their changes go through the outboxes.
            cal = httpx.post(f"{stack.api_url}/cameras/{camera}/calibration", json={"source": "card"}, timeout=10)
            assert cal.status_code == 200, cal.text

        # 1. A second worker dies holding windows: a batch that waits 5 s to fill keeps what it read pending on it.
        procs.start("worker", "doomed", VIGIL_WORKER__MAX_BATCH="1024", VIGIL_WORKER__MAX_WAIT_MS="5000")
        pending = lambda: set().union(  # noqa: E731
            *(_pending_cameras(r, "doomed", p) for p in range(PARTITIONS))
        )
        _wait(lambda: _retrying(pending), 60, "the doomed worker to hold windows")
        procs.kill("doomed")

        # 2. The master holding the most cameras is killed and comes back a second later with its append-only file.
        busiest = max(
            shards, key=lambda port: sum(cluster.master_of(keys.camera_state_key(c)) == port for c in CAMERAS)
        )
        cluster.restart(busiest, down_s=1.0)

        for camera in CAMERAS:
            _wait(
                lambda c=camera: _retrying(lambda: (s := topics.get_camera_status(r, c)) and s.state == "stopped"),
                120,
                f"{camera} to end",
            )
            _wait(lambda c=camera: _retrying(lambda: topics.camera_backlog(r, c)) == 0, 60, f"{camera}'s last windows")
        scores = {c: [s.frame for _, s in topics.read_scores(r, c, count=None)] for c in CAMERAS}
        alerts = httpx.get(f"{stack.api_url}/alerts", params={"limit": 1000}, timeout=10).json()["alerts"]
        outboxes = [r.xlen(keys.alert_outbox(p)) for p in range(PARTITIONS)]
    finally:
        procs.stop_all()
        stack.stop()
        r.close()

    with av.open(str(recording)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    for camera, got in scores.items():
        lost, duplicated = _lost_and_duplicated(got, range(CONTEXT, frames))
        assert (lost, duplicated) == (0, 0), f"{camera}: {lost} frames lost, {duplicated} duplicated"
    assert outboxes == [0] * PARTITIONS  # every alert change reached the global store
    assert {a["camera"] for a in alerts} == set(CAMERAS)  # each camera's alerts reached the global store
    print(f"cluster stack: {frames} frames x {len(CAMERAS)} cameras on shards {sorted(shards)}, {len(alerts)} alerts")

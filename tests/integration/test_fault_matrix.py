"""What each fault costs, measured on the real stack: a live RTSP camera, a file camera and a batch job run through
a worker killed while it holds windows, an ingester killed with SIGKILL and Redis killed and restarted (append-only,
every write synced). The file camera and the job must lose and duplicate nothing, every frame with its own signals
as `vigil score` computes them; the live camera's longest wait for a score around each fault is reported.

The numbers are printed at the end of the run ("fault costs measured") and go to docs/OPERATIONS.md.
"""

from __future__ import annotations

import contextlib
import json
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

from cli.up import Stack
from models.inference import score_file, score_frames
from models.io import load_model
from models.store import ModelStore
from models.types import InputSpec
from service.bus import keys, topics
from service.errors import EndOfStream
from service.ingest.source import SourceOptions, VideoSource
from service.messages import ScoreMsg
from tests.conftest import free_port
from tests.integration.conftest import CONTEXT, FAULT_REPORT, PersistentRedis, stack_env, wait_http
from tests.rtsp import RtspServer, loop_clip
from tests.service.worker.models_util import MODEL

RTOL, ATOL = 1e-5, 1e-6  # live windows of 8 frames vs offline windows of 16: only float reduction order differs
LEASE_TTL_S = "2"
HEARTBEAT_TTL_S = "5"  # the worker default: the live gap below is what a deployment sees


class Processes:
    """vigil ingesters and workers this test starts and kills itself (the Stack runs the API and one worker)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, component: str, name: str, **env: str) -> None:
        argv = [sys.executable, "-m", "cli.main", component, "--id", name, "--metrics-port", "0"]
        with (self.logs / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(argv, env={**self.env, **env}, stderr=log)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()


@pytest.fixture
def synced_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path, fsync_always=True)
    server.start()
    yield server
    server.kill()


def _scores(r: redis.Redis, camera: str) -> list[ScoreMsg]:
    return [s for _, s in topics.read_scores(r, camera, count=None)]


def _owner(r: redis.Redis, camera: str) -> str | None:
    owner = r.get(keys.camera_lease_key(camera))
    return owner.decode() if owner is not None else None


def _pending_cameras(r: redis.Redis, consumer: str, partition: int = 0) -> set[str]:
    stream = keys.windows_stream(partition)
    pending = r.xpending_range(stream, keys.WINDOWS_GROUP, "-", "+", 100, consumername=consumer)
    cameras = set()
    for p in pending:
        for _, fields in r.xrange(stream, p["message_id"], p["message_id"]):
            cameras.add(topics.decode_window(fields).camera)
    return cameras


def _longest_wait(scores: list[ScoreMsg], since: float, until: float) -> float:
    """The longest time between two consecutive published scores in [since, until] (wall clock)."""
    times = [since, *sorted(s.published_ts for s in scores if since <= s.published_ts <= until)]
    return float(np.diff(times).max()) if len(times) > 1 else until - since


def _wait(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def _lost_and_duplicated(frames: list[int], expected: range) -> tuple[int, int]:
    return len(set(expected) - set(frames)), len(frames) - len(set(frames))


@pytest.mark.integration
def test_file_cameras_and_jobs_lose_and_duplicate_nothing_through_worker_ingester_and_redis_faults(
    synthetic_video: tuple[Path, np.ndarray],
    rtsp_server_factory: Callable[..., RtspServer],
    model_root: Path,
    synced_redis: PersistentRedis,
    tmp_path: Path,
) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    recording = loop_clip(synthetic_video[0], footage / "recording.mp4", 24)  # 640 frames, 25.6 s in real time
    # 2304 frames, read as fast as they are scored: about a third is scored when the last fault strikes (2-core CPU)
    long_job = loop_clip(synthetic_video[0], footage / "job.mp4", 90)
    server = rtsp_server_factory(synthetic_video[0], duration_s=120)
    env = stack_env(
        synced_redis.url,
        model_root,
        VIGIL_FOOTAGE_ROOT=str(footage),
        VIGIL_JOBS__DIR=str(tmp_path / "jobs"),
        VIGIL_JOBS__QUEUE_WINDOWS="2",  # the job goes at the pace of its scores, so it spans the faults
        VIGIL_INGEST__LEASE_TTL_S=LEASE_TTL_S,
        VIGIL_WORKER__HEARTBEAT_TTL_S=HEARTBEAT_TTL_S,
    )
    stack = Stack(redis_url=synced_redis.url, api_port=free_port(), ingesters=0, env=env, start_redis=False)
    procs = Processes(env, tmp_path)
    r = redis.Redis.from_url(synced_redis.url)
    api = stack.api_url
    report: list[str] = []
    try:
        stack.start()
        procs.start("ingest", "ing-a")
        procs.start("ingest", "ing-b")
        stack.wait_ready(90)
        for body in (
            {"id": "live", "url": server.url(), "model": MODEL},
            {"id": "file", "url": str(recording), "model": MODEL, "kind": "file"},
        ):
            assert httpx.post(f"{api}/cameras", json=body, timeout=10).status_code == 201
        _wait(lambda: len(_scores(r, "file")) >= 25 and len(_scores(r, "live")) >= 25, 60, "first scores")
        created = httpx.post(f"{api}/jobs", json={"path": long_job.name, "model": MODEL}, timeout=30)
        assert created.status_code == 201, created.text
        job_url, job = f"{api}/jobs/{created.json()['id']}", keys.job_stream(created.json()["id"])

        def job_running(fault: str) -> None:
            state = httpx.get(job_url, timeout=10).json()["state"]
            assert state == "running", f"the job was {state} before the {fault} fault: give it more frames"

        _wait(lambda: int(r.get(keys.camera_seq_key(job)) or 0) >= 4, 30, "the job's first windows")

        # 1. The ingesters reading the file camera and the job die (SIGKILL); a fresh one takes both over.
        job_running("ingester")
        procs.start("ingest", "ing-c")
        owners = {_owner(r, "file"), _owner(r, job)}
        live_owner = _owner(r, "live")
        scored_before = len(_scores(r, "file"))
        for owner in owners:
            procs.kill(str(owner))
        killed = time.time()
        _wait(lambda: len(_scores(r, "file")) > scored_before + 25, 30, "the file camera to go on")
        _wait(lambda: max(s.published_ts for s in _scores(r, "live")) > killed + 2, 30, "live scores after it")
        gap = _longest_wait(_scores(r, "live"), killed - 1, time.time())
        owned = "its ingester" if live_owner in owners else "another ingester"
        report.append(f"ingester SIGKILLed (lease_ttl_s 2): live camera waited {gap:.1f} s ({owned} was killed)")

        # 2. Redis dies (SIGKILL) and comes back a second later with its append-only file.
        job_running("Redis")
        synced_redis.kill()
        killed = time.time()
        time.sleep(1.0)
        synced_redis.start()
        _wait(lambda: max(s.published_ts for s in _scores(r, "live")) > killed + 3, 60, "live scores after it")
        gap = _longest_wait(_scores(r, "live"), killed - 1, time.time())
        report.append(f"Redis SIGKILLed and restarted 1 s later (appendonly, fsync always): live waited {gap:.1f} s")

        # 3. A worker dies holding windows (read, not acknowledged): a batch that waits 5 s to fill and is too large to
        # fill in that time even from the job's flood of windows, so what it read stays pending on it for seconds.
        # The stack's worker is paused meanwhile: a reader blocked in Redis gets each new window the moment it comes,
        # so an idle stack worker took every live window before the doomed one's polls saw it (one CI run in several).
        stack_worker = next(proc for name, proc in stack.procs if name.startswith("worker"))
        stack_worker.send_signal(signal.SIGSTOP)
        try:
            procs.start("worker", "doomed", VIGIL_WORKER__MAX_BATCH="1024", VIGIL_WORKER__MAX_WAIT_MS="5000")
            _wait(lambda: "live" in _pending_cameras(r, "doomed"), 60, "the doomed worker to hold a live window")
        finally:
            stack_worker.send_signal(signal.SIGCONT)
        job_running("worker")
        procs.kill("doomed")
        killed = time.time()
        _wait(lambda: max(s.published_ts for s in _scores(r, "live")) > killed + 2, 30, "live scores after it")
        gap = _longest_wait(_scores(r, "live"), killed - 1, time.time())
        report.append(f"worker SIGKILLed holding windows: live camera waited {gap:.1f} s (heartbeat_ttl_s 5)")
        assert gap < 10  # was claim_idle_ms: 30 s

        done = wait_http(
            lambda: httpx.get(job_url, timeout=10),
            lambda x: x.json()["state"] in ("done", "failed"),
            240,
            "the job to end",
        ).json()
        _wait(lambda: (s := topics.get_camera_status(r, "file")) and s.state == "stopped", 120, "the file to end")
        _wait(lambda: topics.camera_backlog(r, "file") == 0, 30, "the file's last windows to be scored")
        file_scores = _scores(r, "file")
        job_windows = int(r.get(keys.camera_seq_key(job)) or 0)
    finally:
        procs.stop_all()
        stack.stop()
        r.close()

    method, card, _ = load_model(ModelStore(model_root), MODEL, "cpu")
    truth = ingested_frames(recording, method.input_spec)  # decoded and prepared as the ingester does
    file_frames = [s.frame for s in file_scores]
    lost, duplicated = _lost_and_duplicated(file_frames, range(CONTEXT, len(truth)))
    report.append(f"file camera ({len(truth)} frames): {lost} frames lost, {duplicated} duplicated")
    offline_job = score_file(method, card, long_job)
    total = offline_job.num_frames
    job_lost = total - CONTEXT - done.get("frames_scored", 0) if done["state"] == "done" else total - CONTEXT
    expected_windows = -(-(total - CONTEXT) // 8)
    report.append(
        f"job ({total} frames): {job_lost} frames lost, {(job_windows - expected_windows) * 8} duplicated "
        f"({job_windows} windows published for {expected_windows})"
    )
    FAULT_REPORT.extend(report)
    print("\n".join(report))

    missing = sorted(set(range(CONTEXT, len(truth))) - set(file_frames))
    assert (lost, duplicated) == (0, 0), f"file camera frames missing: {missing[:20]}"
    raw = np.array([s.signals for s in sorted(file_scores, key=lambda s: s.frame)])
    np.testing.assert_allclose(raw, score_frames(method, truth, 8, 8), rtol=RTOL, atol=ATOL)  # each frame is itself
    assert done["state"] == "done", done
    assert done["frames_scored"] == total - CONTEXT
    assert job_windows == expected_windows
    records = json.loads((tmp_path / "jobs" / created.json()["id"] / "result.json").read_text())["frames"]
    job_raw = np.array([[r["raw"][n] for n in offline_job.signal_names] for r in records[CONTEXT:]])
    np.testing.assert_allclose(job_raw, offline_job.raw[CONTEXT:], rtol=RTOL, atol=ATOL)


def ingested_frames(path: Path, spec: InputSpec) -> np.ndarray:
    """Every frame of a file as the ingester decodes and prepares it (PyAV, scaled to the model's input), by
    position."""
    images = []
    with VideoSource(str(path), SourceOptions(realtime=False, spec=spec)) as source, contextlib.suppress(EndOfStream):
        images.extend(frame.image for frame in source)
    return np.stack(images)

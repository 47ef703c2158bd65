"""The ingester process (`vigil ingest`): many cameras, one thread pair each, shared through leases in Redis.

Every tick it writes its heartbeat, re-reads the camera registry, renews the lease of each camera it runs
(SET NX PX, renewed at ttl/3) and tries to take cameras nobody holds, so a dead ingester's cameras move
to a live one once its leases expire. Control messages (camera added, changed, removed) trigger a tick at
once. A Redis outage is waited out: cameras keep decoding (live ones drop their oldest windows). A Redis that
comes back without its data (no persistence) gets the camera registry back from the ingester's copy, loudly.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis

from models.errors import VigilModelError
from models.store import ModelStore
from models.types import InputSpec
from service import metrics
from service.alerts.webhook import WebhookSender
from service.bus import keys, topics
from service.bus.client import REDIS_ERRORS, Backoff, connect, wait_for_redis
from service.clips.recorder import ClipRecorder, ClipSource, FileSource
from service.errors import MessageError
from service.footage import FootagePolicy
from service.heatmaps import overlay_for_alert
from service.ingest.camera import CameraRunner
from service.ingest.health import HealthContext
from service.jobs.manager import JobManager
from service.lifecycle import ServiceProcess
from service.messages import CameraConfig, Heartbeat
from service.settings import Settings

log = logging.getLogger(__name__)

# Renew our lease, or take it back if it vanished (a restarted Redis forgets keys); 0 = someone else has it.
_RENEW_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ModelSpecs:
    """model ref -> InputSpec from the model card (no torch). Errors name the models that exist."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def __call__(self, ref: str) -> InputSpec:
        try:
            return InputSpec.from_dict(self.store.resolve(ref).card().input_spec)
        except (VigilModelError, OSError, TypeError, ValueError) as e:
            msg = f"model {ref!r}: {e}"
            raise ValueError(msg) from e


class Ingester(ServiceProcess):
    component = "ingest"

    def __init__(
        self,
        settings: Settings,
        ingester_id: str | None = None,
        stop_event: threading.Event | None = None,
        is_child: bool = False,
    ) -> None:
        super().__init__(stop_event, is_child)
        self.settings = settings
        self.id = ingester_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.specs = ModelSpecs(ModelStore(settings.store.root))
        self.runners: dict[str, CameraRunner] = {}
        self.registry: dict[str, CameraConfig] = {}  # every camera as last read: restored if Redis loses its data
        self._epoch: str | None = None  # the id of the data Redis held at the last tick (topics.dataset_epoch)
        self.stopping: dict[str, threading.Thread] = {}  # cameras whose runner is shutting down
        self.r: redis.Redis | None = None
        self._pubsub: Any = None
        self.webhook: WebhookSender | None = None  # health events, when alerts.webhook_events names them
        self.clips: ClipRecorder | None = None  # alert clips of this ingester's cameras and jobs (clips.enabled)
        self.health = HealthContext.of(settings)
        ingest = settings.ingest
        self.tick_s = min(ingest.lease_ttl_s, ingest.heartbeat_ttl_s) / 3
        self.jobs = JobManager(settings, self.id, self.specs, lease=self._renew, release=self._release)

    def setup(self) -> None:
        self.r = connect(self.settings.redis)
        wait_for_redis(self.r, self.settings.redis.startup_wait_s, self.stop_event)
        ingest = self.settings.ingest
        url = self.settings.alerts.webhook_url
        if url and "health" in self.settings.alerts.webhook_events:
            self.webhook = WebhookSender(url).start()
            self.health = HealthContext.of(self.settings, self.webhook.send)
        if self.settings.clips.enabled:
            # each alert's stored heatmaps over its clip when clips.heatmap_overlay is on (ClipRecorder.overlay_for)
            heatmaps = functools.partial(overlay_for_alert, self.r)
            self.clips = ClipRecorder(self.settings, self.r, self._clip_source, heatmaps=heatmaps).start()
        metrics.start_metrics_server(ingest.metrics_port, ingest.metrics_host)
        log.info("ingester %s up (metrics on %s:%d)", self.id, ingest.metrics_host, ingest.metrics_port)

    def run_loop(self) -> None:
        backoff = Backoff(0.2, 5.0)
        next_tick = 0.0
        while not self.should_stop():
            try:
                if self._pubsub is None:
                    self._pubsub = topics.subscribe_control(self._redis)
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick = time.monotonic() + self.tick_s
                message = self._pubsub.get_message(timeout=min(0.25, self.tick_s))
                if message is not None and message.get("type") == "message":
                    self._on_control(message["data"])
                    next_tick = 0.0  # react to the change now
                backoff.reset()
            except REDIS_ERRORS as e:
                log.warning("ingester %s: Redis unavailable, cameras keep running: %s", self.id, e)
                self._close_pubsub()
                backoff.sleep(self.stop_event)

    def teardown(self) -> None:
        if self.r is not None:
            self.jobs.stop()
        for camera in list(self.runners):
            self._stop_camera(camera, release=True)
        for thread in self.stopping.values():
            thread.join(self.settings.ingest.open_timeout_s + 15)
        self._close_pubsub()
        if self.clips is not None:
            self.clips.stop()
        if self.webhook is not None:
            self.webhook.close()
        if self.r is not None:
            try:
                topics.clear_heartbeat(self.r, self.component, self.id)
            except REDIS_ERRORS as e:
                log.warning("ingester %s: heartbeat not cleared: %s", self.id, e)
            self.r.close()
        metrics.CAMERAS_OWNED.labels(ingester=self.id).set(0)

    @property
    def _redis(self) -> redis.Redis:
        if self.r is None:
            raise RuntimeError("Ingester.setup() has not run")
        return self.r

    # --- one tick -------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat, then bring the running cameras in line with the registry and the leases."""
        r = self._redis
        topics.write_heartbeat(r, self._heartbeat(), self.settings.ingest.heartbeat_ttl_s)
        wanted = {c.id: c for c in self._read_registry(r) if c.enabled}
        for camera, runner in list(self.runners.items()):
            config = wanted.get(camera)
            if config is None:
                self._stop_camera(camera, release=True)
            elif config != runner.config:
                log.info("camera %s changed; restarting it", camera)
                self._stop_camera(camera, release=False)
            elif not self._renew(camera):
                log.warning("camera %s: lease lost to another ingester; stopping it here", camera)
                self._stop_camera(camera, release=False, write_status=False)
        for camera, config in wanted.items():
            if camera not in self.runners and not self._still_stopping(camera) and self._acquire(camera):
                self._start_camera(config)
        metrics.CAMERAS_OWNED.labels(ingester=self.id).set(len(self.runners))
        self.jobs.tick(r)  # batch jobs: same leases, same tick

    def _read_registry(self, r: redis.Redis) -> list[CameraConfig]:
        """The cameras in Redis; if Redis lost its data since the last tick, first the ones this ingester knew."""
        epoch = topics.dataset_epoch(r)
        lost, self._epoch = self._epoch is not None and epoch != self._epoch, epoch
        if lost and self.registry:
            restored = topics.restore_cameras(r, self.registry.values())
            metrics.ERRORS.labels(component="ingest", kind="redis_data_lost").inc()
            log.error(
                "Redis lost its data (restarted without persistence, or flushed). Restored %d camera(s) from this "
                "ingester's copy of the registry: %s. Lost for good: the scores, alerts and camera statuses so far, "
                "windows not yet scored, job records and progress (jobs %s). Give Redis persistence "
                "(appendonly yes) to keep them.",
                len(restored),
                ", ".join(restored) or "none missing",
                ", ".join(self.jobs.running()) or "none running here",
            )
        cameras = topics.list_cameras(r)
        self.registry = {c.id: c for c in cameras}
        return cameras

    def _on_control(self, data: bytes) -> None:
        try:
            control = topics.decode_control(data)
        except MessageError as e:
            log.error("ingester %s: ignoring a control message: %s", self.id, e)
            return
        log.info("control: %s camera %s", control.op, control.camera)

    def _heartbeat(self) -> Heartbeat:
        states = {c: r.state.state for c, r in self.runners.items()}
        return Heartbeat(
            component="ingest",
            id=self.id,
            pid=os.getpid(),
            host=socket.gethostname(),
            activity=f"{len(self.runners)} cameras",
            details={"cameras": states},
        )

    # --- cameras and leases ---------------------------------------------------------------------------

    def _start_camera(self, config: CameraConfig) -> None:
        runner = CameraRunner(
            config,
            self.settings.ingest,
            self._redis,
            self.id,
            self.specs,
            footage=FootagePolicy.of(self.settings),
            health=self.health,
            clips=self.settings.clips,
        )
        self.runners[config.id] = runner
        runner.start()
        log.info("camera %s: started (%s, %s)", config.id, config.redacted_url, config.kind)

    def _clip_source(self, camera: str) -> ClipSource | None:
        """Where the clips of `camera`'s alerts come from if this ingester runs it (or the job it stands for)."""
        runner = self.runners.get(camera)
        if runner is not None:
            return runner.clip_source()
        job = self.jobs.runners.get(camera.removeprefix(keys.JOB_STREAM_PREFIX))
        if camera.startswith(keys.JOB_STREAM_PREFIX) and job is not None and job.path is not None:
            return FileSource(job.path, lambda: job.last_pts)
        return None

    def _stop_camera(self, camera: str, release: bool, write_status: bool = True) -> None:
        """Stop a camera in the background: a source stuck in FFmpeg must not delay renewing the other leases."""
        runner = self.runners.pop(camera)
        thread = threading.Thread(
            target=self._finish_stop, args=(runner, release, write_status), name=f"ingest-stop-{camera}", daemon=True
        )
        self.stopping[camera] = thread
        thread.start()

    def _finish_stop(self, runner: CameraRunner, release: bool, write_status: bool) -> None:
        runner.stop(write_status=write_status)
        if release:
            try:
                self._redis.eval(_RELEASE_LEASE, 1, keys.camera_lease_key(runner.camera), self.id)
            except REDIS_ERRORS as e:  # the lease then simply expires
                log.warning("camera %s: lease not released: %s", runner.camera, e)
        log.info("camera %s: stopped", runner.camera)

    def _still_stopping(self, camera: str) -> bool:
        thread = self.stopping.get(camera)
        if thread is not None and not thread.is_alive():
            del self.stopping[camera]
            return False
        return thread is not None

    def _acquire(self, camera: str) -> bool:
        """Take a free lease (SET NX semantics), or keep ours after a restart of the camera."""
        return self._renew(camera)

    def _renew(self, camera: str) -> bool:
        ttl_ms = int(self.settings.ingest.lease_ttl_s * 1000)
        return bool(self._redis.eval(_RENEW_LEASE, 1, keys.camera_lease_key(camera), self.id, ttl_ms))

    def _release(self, camera: str) -> None:
        try:
            self._redis.eval(_RELEASE_LEASE, 1, keys.camera_lease_key(camera), self.id)
        except REDIS_ERRORS as e:  # the lease then simply expires
            log.warning("%s: lease not released: %s", camera, e)

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):  # the connection may already be gone
                self._pubsub.close()
            self._pubsub = None

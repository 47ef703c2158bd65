"""The worker process: read windows through the consumer group, batch, score, publish in order, ack.

One loop iteration: housekeeping (taking over the windows of dead workers, sweeping stashed results, queue
gauges), then collect up to `max_batch` windows waiting at most `max_wait_ms`, score them per model and shape,
hand the raw signals to `OrderedPublisher`, and XACK. Redis outages are retried with backoff, then the windows
this worker held are read again at once; a lost consumer group (Redis restarted empty) is recreated.

A heartbeat thread keeps the worker's heartbeat key fresh while the loop makes progress (a long batch or model
load does not let it lapse; a loop stuck for `claim_idle_ms` does). A worker whose key is gone is dead: the
others take its pending windows within a second instead of waiting `claim_idle_ms`, so a dead worker holds a
live camera back about `heartbeat_ttl_s`. A window scored twice (a worker that was only slow) is dropped by the
ordering, so nothing is published twice.
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
from collections import defaultdict

import numpy as np
import redis
import torch

from models.base import SnippetHistoryMethod
from models.cpu_memory import keep_freed_memory_for
from models.inference import resolve_device
from models.store import ModelStore
from service.alerts.links import alert_links
from service.alerts.webhook import WebhookSender
from service.bus import topics
from service.bus.client import REDIS_ERRORS, Backoff, connect, wait_for_redis
from service.errors import MessageError, ModelUnavailableError
from service.lifecycle import ServiceProcess
from service.messages import AlertParams, Heartbeat, ScoredWindow, WindowMsg
from service.metrics import (
    ERRORS,
    GPU_MEMORY_BYTES,
    HEARTBEAT,
    MALFORMED,
    QUEUE_DEPTH,
    QUEUE_LAG,
    QUEUE_PENDING,
    WINDOWS_CLAIMED,
    start_metrics_server,
)
from service.settings import Settings
from service.worker.history import score_with_history
from service.worker.inference import Job, fit_window, make_batches, score_frames, score_frames_maps
from service.worker.models import LoadedModel, ModelCache
from service.worker.ordering import OrderedPublisher
from service.worker.thumbnails import alert_event_handler, store_maps, store_thumbs

log = logging.getLogger(__name__)
_GAUGE_INTERVAL_S = 1.0
_SWEEP_INTERVAL_S = 0.5
_BATCH_POLL_S = 0.002  # how often a batch that waits for more windows looks for them
_RESCUE_INTERVAL_S = 0.5  # how often the group is checked for consumers whose heartbeat is gone
_RESCUE_MIN_IDLE_MS = 1000  # so two workers rescuing the same dead one do not both score its windows
_CAMERA_REFRESH_S = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker(ServiceProcess):
    component = "worker"

    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        stop_event: threading.Event | None = None,
        is_child: bool = False,
        serve_metrics: bool = True,
    ) -> None:
        super().__init__(stop_event, is_child)
        self.settings, self.cfg = settings, settings.worker
        self.worker_id = worker_id or default_worker_id()
        self.serve_metrics = serve_metrics
        self.activity = "starting"
        self.windows_done = 0
        self._due: dict[str, float] = defaultdict(float)  # housekeeping task -> next monotonic time
        self._alert_params: dict[str, tuple[AlertParams, float]] = {}
        self.webhook: WebhookSender | None = None  # setup() may fail before it is created; teardown() copes
        self._progress_at = time.monotonic()  # the loop's last sign of life, read by the heartbeat thread
        self._reread_own = True  # read the windows still pending on this consumer (a restart, a Redis outage)
        self._beat: threading.Thread | None = None
        self._maps: dict[tuple[str, int], np.ndarray] = {}  # (camera, seq) -> coarse maps of the batch being scored

    def setup(self) -> None:
        self.device = resolve_device(self.cfg.device)
        if self.cfg.keep_freed_memory:
            keep_freed_memory_for(self.device.type)  # each batch's activations are reused, not page-faulted in again
        if self.cfg.cpu_threads:
            torch.set_num_threads(self.cfg.cpu_threads)
        self.r = connect(self.settings.redis)
        wait_for_redis(self.r, self.settings.redis.startup_wait_s, self.stop_event)
        topics.ensure_window_group(self.r)
        self.models = ModelCache(ModelStore(self.settings.store.root), self.device, self.cfg.alias_refresh_s)
        url = self.settings.alerts.webhook_url
        if url and "alerts" in self.settings.alerts.webhook_events:
            self.webhook = WebhookSender(url, links=functools.partial(alert_links, settings=self.settings)).start()
        self.publisher = OrderedPublisher(
            self.r,
            calibration=self.models.calibration,
            alert_params=self._params_for,
            gap_timeout_s=self.cfg.gap_timeout_s,
            retention_s=self.settings.alerts.retention_s,
            calib_params=self.settings.calibration,
            replay_retention_s=self.settings.calibration.replay_retention_s,
            # Copies each alert's peak-frame thumbnail (live page), then hands the event to the webhook.
            on_event=alert_event_handler(
                self.r, self.settings.alerts.retention_s, self.webhook.send if self.webhook else None
            ),
        )
        self._heartbeat()  # before the first read: a consumer holding windows always has a heartbeat
        self._beat = threading.Thread(target=self._beat_loop, name=f"heartbeat-{self.worker_id}", daemon=True)
        self._beat.start()
        if self.serve_metrics:
            start_metrics_server(self.cfg.metrics_port, self.cfg.metrics_host)
        log.info(
            "worker %s on %s (%d CPU threads): max_batch=%d max_wait_ms=%.0f store=%s",
            self.worker_id,
            self.device,
            torch.get_num_threads(),
            self.cfg.max_batch,
            self.cfg.max_wait_ms,
            self.settings.store.root,
        )

    def run_loop(self) -> None:
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while not self.should_stop():
            try:
                self.step()
                backoff.reset()
            except REDIS_ERRORS as e:
                self._reread_own = True  # what this worker read may still be pending on it when Redis is back
                self._on_error("redis", f"Redis unavailable ({e}); retrying", backoff)
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):  # Redis restarted without our group: recreate it, claim what is left
                    log.error(
                        "Redis lost its data (the workers' consumer group is gone: restarted without persistence, "
                        "or flushed); windows that were queued or being scored are lost. Recreating the group."
                    )
                    topics.ensure_window_group(self.r)
                    self._due.clear()
                    continue
                self._on_error("redis", f"Redis error: {e}", backoff)
            except Exception as e:  # loop boundary: log, count, back off, go on
                log.exception("worker loop failed")
                self._on_error(type(e).__name__, "", backoff)

    def _on_error(self, kind: str, message: str, backoff: Backoff) -> None:
        ERRORS.labels("worker", kind).inc()
        self.activity = f"error: {kind}"
        if message:
            log.warning(message)
        backoff.sleep(self.stop_event)

    def teardown(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
        r: redis.Redis | None = getattr(self, "r", None)  # absent when setup() failed before connecting
        if self._beat is not None:  # stopped first, so it cannot write the heartbeat again after it is cleared
            self._beat.join(self.cfg.heartbeat_ttl_s)
        if r is not None:
            with contextlib.suppress(*REDIS_ERRORS):  # otherwise it expires on its own TTL
                topics.clear_heartbeat(r, "worker", self.worker_id)
            r.close()

    # --- one iteration -------------------------------------------------------------------------------

    def step(self) -> None:
        self._progress_at = time.monotonic()
        self._housekeeping()
        entries = self._collect_own() if self._reread_own else []
        entries = entries or self._collect()
        if entries:
            self.activity = "scoring"
            self.process(entries)
        else:
            self.activity = "idle"

    def _every(self, task: str, interval_s: float) -> bool:
        now = time.monotonic()
        if now < self._due[task]:
            return False
        self._due[task] = now + interval_s
        return True

    def _housekeeping(self) -> None:
        if self._every("rescue", _RESCUE_INTERVAL_S):
            self._rescue()
        if self._every("claim", self.cfg.claim_idle_ms / 2000):
            self._claim()
        if self._every("sweep", _SWEEP_INTERVAL_S):
            self.publisher.sweep()
        if self._every("gauges", _GAUGE_INTERVAL_S):
            self._gauges()

    def _heartbeat(self) -> None:
        hb = Heartbeat(
            component="worker",
            id=self.worker_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            activity=self.activity,
            details={"device": str(self.device), "models": self.models.loaded(), "windows": self.windows_done},
        )
        topics.write_heartbeat(self.r, hb, self.cfg.heartbeat_ttl_s)
        HEARTBEAT.labels(self.worker_id).set(hb.ts)

    def _beat_loop(self) -> None:
        """Write the heartbeat every ttl/3 while the loop shows progress within `claim_idle_ms`."""
        while not self.stop_event.wait(self.cfg.heartbeat_ttl_s / 3):
            if time.monotonic() - self._progress_at > self.cfg.claim_idle_ms / 1000:
                continue  # stuck: let the heartbeat lapse, so health checks and the other workers see it
            try:
                self._heartbeat()
            except REDIS_ERRORS as e:  # the loop reports the outage; the next beat tries again
                log.debug("heartbeat not written: %s", e)

    def _collect_own(self) -> list[topics.WindowEntry]:
        """Windows delivered to this worker and never acknowledged (it restarted, or Redis went away mid-batch)."""
        entries = topics.read_own_pending(self.r, self.worker_id, self.cfg.max_batch)
        if entries:
            log.info("reading %d windows again that were pending on this worker", len(entries))
        else:
            self._reread_own = False
        return entries

    def _rescue(self) -> None:
        """Take over at once the windows of workers whose heartbeat is gone: they died holding them."""
        for dead, pending in topics.dead_consumers(self.r, self.worker_id):
            if not pending:
                topics.forget_consumer(self.r, dead)
                continue
            entries = topics.claim_windows_of(self.r, dead, self.worker_id, _RESCUE_MIN_IDLE_MS, self.cfg.max_batch)
            if entries:
                WINDOWS_CLAIMED.inc(len(entries))
                log.warning("worker %s is gone (no heartbeat); took over %d of its windows", dead, len(entries))
                self.process(entries)

    def _claim(self) -> None:
        """Take over windows another worker read but never acknowledged within `claim_idle_ms` (it is stuck)."""
        while not self.should_stop():
            entries = topics.claim_stale_windows(self.r, self.worker_id, self.cfg.claim_idle_ms, self.cfg.max_batch)
            if not entries:
                return
            WINDOWS_CLAIMED.inc(len(entries))
            log.info("claimed %d windows left pending by other workers", len(entries))
            self.process(entries)

    def _gauges(self) -> None:
        depth, lag, pending = topics.window_backlog(self.r)
        QUEUE_DEPTH.set(depth)
        QUEUE_LAG.set(lag)
        QUEUE_PENDING.set(pending)
        if self.device.type == "cuda":
            GPU_MEMORY_BYTES.labels("allocated").set(torch.cuda.memory_allocated(self.device))
            GPU_MEMORY_BYTES.labels("reserved").set(torch.cuda.memory_reserved(self.device))

    def _collect(self) -> list[topics.WindowEntry]:
        """Up to max_batch windows: block briefly for the first, then wait at most max_wait_ms for more.

        The wait for more polls without blocking: Redis ends a blocked read's timeout only when its event loop next
        wakes (every 1/hz s, 100 ms by default), so a blocking wait of 5 ms for a window that never came cost a lone
        camera 40 ms of latency (bench/latency.py). A read that finds windows returns them at once either way."""
        entries = topics.read_windows(self.r, self.worker_id, self.cfg.max_batch, block_ms=200)
        deadline = time.monotonic() + self.cfg.max_wait_ms / 1000
        while entries and len(entries) < self.cfg.max_batch:
            more = topics.read_windows(self.r, self.worker_id, self.cfg.max_batch - len(entries), block_ms=None)
            entries.extend(more)
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            if not more:
                time.sleep(min(_BATCH_POLL_S, left_s))
        return entries

    def _params_for(self, camera: str) -> AlertParams:
        """Alert parameters of a camera: its overrides (re-read every few seconds) over Settings.alerts."""
        cached = self._alert_params.get(camera)
        if cached is not None and time.monotonic() - cached[1] < _CAMERA_REFRESH_S:
            return cached[0]
        try:
            config = topics.get_camera(self.r, camera)
        except MessageError as e:
            log.error("camera %s: stored config is unreadable (%s); using default alert parameters", camera, e)
            config = None
        params = AlertParams.merge(self.settings.alerts, config.alerts if config else None)
        self._alert_params[camera] = (params, time.monotonic())
        return params

    def _threshold_for(self, camera: str) -> float:
        return self._params_for(camera).threshold

    # --- scoring ---------------------------------------------------------------------------------------

    def process(self, entries: list[topics.WindowEntry]) -> None:
        """Score windows, publish in order, then acknowledge them all."""
        jobs: list[Job] = []
        for entry_id, item in entries:
            if isinstance(item, MessageError):
                MALFORMED.inc()
                log.error("dropping malformed window %s: %s", entry_id, item)
            else:
                jobs.append(Job(entry_id, item))
        self._maps.clear()
        results = self._score(jobs)
        # Before publishing: an alert event of this batch may point at one of these frames.
        store_thumbs(self.r, [j.window for j in jobs], results, self.publisher.peak_candidates, self._threshold_for)
        store_maps(self.r, [j.window for j in jobs], self._maps)
        self._maps.clear()
        if results:
            self.publisher.submit(results)
        topics.ack_windows(self.r, [entry_id for entry_id, _ in entries])
        self.windows_done += len(jobs)

    def _score(self, jobs: list[Job]) -> list[ScoredWindow]:
        by_model: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            by_model[job.window.model].append(job)
        results: list[ScoredWindow] = []
        for ref, group in by_model.items():
            try:
                model = self.models.get(ref)
            except ModelUnavailableError as e:
                ERRORS.labels("worker", "model_unavailable").inc()
                log.error("%d window(s) not scored: %s", len(group), e)
                results.extend(_failed(job.window, ref, str(e)) for job in group)
                continue
            fitted = []
            for job in group:
                try:
                    fitted.append((job, fit_window(job.window, model)))
                except ModelUnavailableError as e:
                    ERRORS.labels("worker", "bad_window").inc()
                    log.error("window %d of camera %s not scored: %s", job.window.seq, job.window.camera, e)
                    results.append(_failed(job.window, model.ref, str(e)))
            for batch in make_batches(fitted, self.cfg.max_batch):
                results.extend(self._score_batch(model, batch))
        return results

    def _score_batch(self, model: LoadedModel, batch: list[tuple[Job, np.ndarray]]) -> list[ScoredWindow]:
        """Score a batch; if the forward pass fails, retry window by window so one bad window (or an OOM at
        this batch size) cannot make the whole batch come back forever through claims."""
        try:
            raw = self._forward(model, batch)  # (B, N, S)
        except (RuntimeError, ModelUnavailableError) as e:  # torch raises RuntimeError (CUDA OOM included)
            if len(batch) == 1:
                job = batch[0][0]
                ERRORS.labels("worker", "inference").inc()
                log.error("window %d of camera %s not scored: %s", job.window.seq, job.window.camera, e)
                return [_failed(job.window, model.ref, f"{type(e).__name__}: {e}")]
            log.warning("batch of %d failed (%s); scoring its windows one by one", len(batch), e)
            return [r for item in batch for r in self._score_batch(model, [item])]
        return [_scored(job.window, model.ref, raw[i]) for i, (job, _) in enumerate(batch)]

    def _forward(self, model: LoadedModel, batch: list[tuple[Job, np.ndarray]]) -> np.ndarray:
        """(B, N, S) raw signals; a history model (VadCLIP) also reads and extends its cameras' snippet history, a
        model with a localisation map leaves the coarse maps of live windows in `self._maps` (heatmaps)."""
        frames = [frames for _, frames in batch]
        self._progress_at = time.monotonic()  # a loop scoring batch after batch is alive
        if isinstance(model.method, SnippetHistoryMethod):
            windows = [job.window for job, _ in batch]
            return score_with_history(self.r, model, windows, frames, self.device, self.cfg.history_ttl_s)
        live = [job.window.source != "job" for job, _ in batch]  # jobs have no live page (as thumbnails)
        if self.cfg.heatmaps and model.method.localizes and any(live):
            raw, maps = score_frames_maps(model, frames, self.device)  # one forward pass, in the card's precision
            for (job, _), m, keep in zip(batch, maps, live, strict=True):
                if keep:
                    self._maps[(job.window.camera, job.window.seq)] = m
            return raw
        return score_frames(model, frames, self.device)  # in the precision of the model's card


def _scored(window: WindowMsg, model: str, raw: np.ndarray | None, error: str | None = None) -> ScoredWindow:
    """The result of one window; raw None + error is a tombstone (see `_failed`)."""
    return ScoredWindow(
        camera=window.camera,
        seq=window.seq,
        model=model,
        first_frame=window.first_frame,
        pts=window.pts,
        capture_ts=window.capture_ts,
        raw=[] if raw is None else raw.tolist(),
        error=error,
        source=window.source,
        job_id=window.job_id,
        health=window.health,
        chroma=window.chroma,
    )


def _failed(window: WindowMsg, model: str, error: str) -> ScoredWindow:
    """A tombstone: the seq is passed over in order instead of stalling the camera until the gap timeout."""
    return _scored(window, model, None, error)

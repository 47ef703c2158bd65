"""A camera's health inside its ingester: the monitor (models/health) over every decoded frame, and what it reports.

Why here and not in the worker: the ingester sees every decoded frame at source resolution with its colour planes
(the worker gets model-size frames, gray for gray models, after decimation), it knows which packets failed to
decode and which frames the decoder concealed, and it runs at the camera's frame rate whether or not workers keep
up. The flags travel with the frames (WindowMsg.health/.chroma) to the worker, which holds flagged frames back
from alerts and feeds the chroma to the camera's calibration (scene profiles).

`CameraHealthTracker` is the shell around the pure monitor: it stores the camera's health (`vigil:camera_health`)
and its reference views, publishes an event per raised or cleared condition (`vigil:health:events`, `/ws/health`,
webhooks), keeps the metrics, and asks the camera's calibration to relearn when the view changed for good (moved, or
lit differently, for `relearn_s`). Every
Redis write is best effort: a Redis outage must not stop decoding.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from models.calibration.camera import CalibrationParams
from models.health.monitor import Change, HealthMonitor
from models.health.params import CONDITIONS, HealthParams, names_of
from service import calibration, metrics
from service.bus import topics
from service.bus.client import REDIS_ERRORS
from service.errors import MessageError, VigilServiceError
from service.ingest.source import VideoFrame
from service.messages import CameraConfig, CameraHealth, HealthCondition, HealthEvent
from service.settings import Settings

log = logging.getLogger(__name__)

_READ_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, MessageError, ValueError)
_RELEARN_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, VigilServiceError)  # busy camera, bad state
MEMORY_SAVE_S = 60.0  # how often a camera's reference views (which follow slow change) are stored at most
RELEARN_PROFILES = ["colour", "mono"]  # a changed view makes every scene profile's reference stale


@dataclass(frozen=True)
class HealthContext:
    """What every camera's health needs from the service settings."""

    defaults: HealthParams
    chroma_bounds: tuple[float, float]  # the calibration's (mono_below, colour_above): one notion of colour vs IR
    learn_s: float  # how long a camera relearns its calibration after its view changed for good
    on_event: Callable[[HealthEvent], None] | None = None  # webhooks subscribed to health events

    @classmethod
    def of(cls, settings: Settings, on_event: Callable[[HealthEvent], None] | None = None) -> HealthContext:
        c = settings.calibration
        return cls(settings.health, (c.mono_below, c.colour_above), c.learn_s, on_event)


_CALIB = CalibrationParams()
DEFAULT_HEALTH = HealthContext(HealthParams(), (_CALIB.mono_below, _CALIB.colour_above), _CALIB.learn_s)


class CameraHealthTracker:
    """Runs one camera's health monitor over its decoded frames (module docstring)."""

    def __init__(self, config: CameraConfig, ctx: HealthContext, r: redis.Redis) -> None:
        self.camera, self.ctx, self.r = config.id, ctx, r
        params = HealthParams.merge(ctx.defaults, config.health.model_dump(exclude_none=True))
        stored, memory = None, None
        try:
            stored = topics.get_camera_health(r, self.camera)
            memory = topics.load_health_memory(r, self.camera)
        except _READ_ERRORS as e:  # starts afresh: learns its reference view again
            log.warning("camera %s: stored health not read, the checks start afresh: %s", self.camera, e)
        self.monitor = HealthMonitor(params, ctx.chroma_bounds, memory)
        self.health = stored if stored is not None else CameraHealth(camera=self.camera)
        self._carried = stored is not None and bool(stored.conditions)  # raised before this ingester took over
        self._memory_saved = time.monotonic()
        for name in CONDITIONS:  # every series exists from the start (dashboards: 0 = ok)
            metrics.HEALTH_CONDITION.labels(camera=self.camera, condition=name).set(name in self.health.conditions)

    def reset_stream(self) -> None:
        """After a reconnect: the frames before it are no reference for the change between frames."""
        self.monitor.reset_stream()

    def check(self, frame: VideoFrame) -> VideoFrame:
        """Check one decoded frame; returns it with its health flags and chroma (and without its measurements)."""
        if frame.info is None:
            return frame
        t = frame.pts if frame.pts is not None else frame.capture_ts
        if self._carried:  # conditions raised before the takeover stay raised until the checks see them clear
            self._carried = False
            for name in self.health.conditions:
                self.monitor.active[name] = t
                self.monitor.details[name] = self.health.conditions[name].detail
        out = self.monitor.step(frame.info, t)
        for name in names_of(out.flags):
            metrics.HEALTH_FRAMES_FLAGGED.labels(camera=self.camera, condition=name).inc()
        for change in out.changes:
            self._report(change, frame.capture_ts)
        if out.relearn:
            self._relearn()
        self._save_memory()
        return dataclasses.replace(frame, health=out.flags, chroma=out.chroma, info=None)

    def _report(self, change: Change, ts: float) -> None:
        conditions = dict(self.health.conditions)
        raised = conditions.pop(change.condition, None)
        since = raised.since_ts if raised is not None else None
        if change.kind == "raised":
            conditions[change.condition] = HealthCondition(since_ts=ts, detail=change.detail)
        self.health = CameraHealth(camera=self.camera, state="unhealthy" if conditions else "ok", conditions=conditions)
        event = HealthEvent(
            kind=change.kind,
            camera=self.camera,
            condition=change.condition,
            ts=ts,
            detail=change.detail,
            since_ts=since,
            health=self.health,
        )
        metrics.HEALTH_CONDITION.labels(camera=self.camera, condition=change.condition).set(change.kind == "raised")
        metrics.HEALTH_EVENTS.labels(camera=self.camera, condition=change.condition, kind=change.kind).inc()
        level = logging.WARNING if change.kind == "raised" else logging.INFO
        log.log(level, "camera %s: health %s %s: %s", self.camera, change.condition, change.kind, change.detail)
        try:
            topics.publish_health_event(self.r, event)
        except REDIS_ERRORS as e:  # the next change writes the whole state again
            log.warning("camera %s: health event not stored: %s", self.camera, e)
        if self.ctx.on_event is not None:
            self.ctx.on_event(event)

    def _save_memory(self) -> None:
        """Store the reference views when they were learned or forgotten, and now and then as they follow the scene."""
        due = time.monotonic() - self._memory_saved >= MEMORY_SAVE_S
        if not (self.monitor.memory_changed or due):
            return
        self.monitor.memory_changed = False
        self._memory_saved = time.monotonic()
        try:
            topics.save_health_memory(self.r, self.camera, self.monitor.memory)
        except REDIS_ERRORS as e:
            log.debug("camera %s: health memory not stored: %s", self.camera, e)

    def _relearn(self) -> None:
        """The view changed for good: the camera's calibration learns its new normal (in the background, as it waits
        for the camera's scoring lock)."""
        log.warning("camera %s: its view changed for good; it relearns its reference view and calibration", self.camera)
        threading.Thread(target=self._request_learning, name=f"health-relearn-{self.camera}", daemon=True).start()

    def _request_learning(self) -> None:
        try:
            calibration.request_learning(self.r, self.camera, self.ctx.learn_s, RELEARN_PROFILES, "view changed")
        except _RELEARN_ERRORS as e:
            log.error("camera %s: could not make its calibration relearn after its view changed: %s", self.camera, e)

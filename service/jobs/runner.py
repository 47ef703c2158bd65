"""One job inside an ingester: read the video to the end, publish its windows exactly once, await the scores.

Frames are decoded with the reader `vigil score` uses (models.data.video) and cut into windows by the
ingester's `WindowSampler` without fps decimation, so the workers see the same pixels offline scoring sees; each
frame goes through a fresh camera's health checks (models/health, the service's defaults), as in `vigil score`.
Publishing waits while the job has `jobs.queue_windows` windows unscored (WAIT backpressure on the bus,
nothing dropped) and goes as fast as the workers take them. Each publish records the next frame in Redis
in the same step, so a runner that restarts (another ingester, a crash) re-reads the video and skips
exactly what is already on the bus.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import redis

from models.data.video import open_video
from models.errors import DatasetError
from models.health.monitor import HealthMonitor
from models.store import ModelStore
from service.bus import keys, topics
from service.bus.client import REDIS_ERRORS
from service.footage import FootageError, FootagePolicy
from service.ingest.camera import SpecResolver
from service.ingest.sampler import FpsDecimator, Window, WindowSampler
from service.ingest.source import VideoFrame
from service.jobs.inputs import JobInputError
from service.jobs.results import JobFailed, write_results
from service.messages import JobRecord, WindowMsg
from service.settings import Settings

log = logging.getLogger(__name__)

_BACKLOG_POLL_S = 0.005  # how often a waiting reader re-checks the job's backlog
_SCORES_POLL_S = 0.1
_DRAIN_TIMEOUT_S = 60.0  # a failed job waits this long for its windows already on the bus before cleaning up


class LeaseLost(Exception):
    """Another reader published the frame this one was about to: it runs the job now, this one stops."""


class JobCancelled(Exception):
    """The job's record says cancelled (POST /jobs/{id}/cancel): stop without writing anything more."""


class JobRunner:
    """Runs one job in a daemon thread until it is done, failed, or `stop()` is called."""

    def __init__(
        self, job: JobRecord, settings: Settings, r: redis.Redis, owner: str, resolve_spec: SpecResolver
    ) -> None:
        self.job, self.settings, self.r, self.owner = job, settings, r, owner
        self.resolve_spec = resolve_spec
        self.stream = keys.job_stream(job.id)
        self.stop_event = threading.Event()
        self.next_frame: int | None = None  # first frame not yet on the bus (None: nothing published yet)
        self.path: Path | None = None  # the video being read (its alerts' clips are cut from it)
        self.last_pts: float | None = None  # of the newest frame read
        self._thread = threading.Thread(target=self._run, name=f"job-{job.id}", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout_s)

    # --- the job's phases ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            started = self.job.started_ts or time.time()  # a resumed job keeps its first start
            self._update(state="running", reason="reading frames", owner=self.owner, started_ts=started)
            progress = topics.job_progress(self.r, self.job.id)
            if "frames_total" not in progress:  # not read to the end yet (or never started)
                self.next_frame = int(progress["next_frame"]) if "next_frame" in progress else None
                self._publish_all()
            if self.stop_event.is_set():
                return
            self._update(reason="waiting for the workers' scores")
            while not topics.job_scores_done(self.r, self.job.id):
                if self.stop_event.wait(_SCORES_POLL_S):
                    return
            self._finish(write_results(self.job, self.r, self.settings, ModelStore(self.settings.store.root)))
        except JobFailed as e:
            log.warning("job %s failed: %s", self.job.id, e)
            self._finish(self.job.model_copy(update={"state": "failed", "reason": str(e)}))
        except LeaseLost as e:
            log.warning("job %s: %s", self.job.id, e)
        except JobCancelled:
            log.info("job %s: cancelled; stopped reading", self.job.id)
        except REDIS_ERRORS as e:  # the job stays active: the manager restarts a runner, which resumes
            log.warning("job %s: Redis unavailable, the job resumes when it is back: %s", self.job.id, e)
        except Exception as e:  # a bug must not leave the job running forever
            log.exception("job %s: unexpected error", self.job.id)
            self._finish(self.job.model_copy(update={"state": "failed", "reason": f"internal error: {e}"}))

    def _publish_all(self) -> None:
        """Decode every frame, publish every window; record frame count, rate and warm-up pts at the end."""
        try:
            spec = self.resolve_spec(self.job.model)
            path = Path(self.job.input)
            if self.job.source == "path":  # checked again here: a symlink may have been swapped in since
                path = FootagePolicy.of(self.settings).resolve(self.job.input)
            reader = open_video(path)
            self.path = path
        except (ValueError, DatasetError, JobInputError, FootageError) as e:
            raise JobFailed(str(e)) from e
        sampler = WindowSampler(spec, self.settings.ingest.window_frames)
        sampler.decimator = FpsDecimator(None, None)  # every frame, as `vigil score` scores them
        calib = self.settings.calibration
        health = HealthMonitor(self.settings.health, (calib.mono_below, calib.colour_above))
        head_pts: list[float] = []  # pts of the warm-up frames, which no window carries
        limit = self.settings.jobs.max_frames
        try:
            for index, pts, image, info in reader.iter_measured(spec):  # prepared as `vigil score` does
                if self.stop_event.is_set():
                    return
                if index >= limit:
                    msg = f"the video has more than {limit} frames (jobs.max_frames); split it into shorter parts"
                    raise JobFailed(msg)
                self.last_pts = pts
                if len(head_pts) < spec.context:
                    head_pts.append(pts)
                checked = health.step(info, pts)
                frame = VideoFrame(image, index, pts, time.time(), health=checked.flags, chroma=checked.chroma)
                window = sampler.push(frame)
                if window is not None:
                    self._publish(window)
        except DatasetError as e:
            raise JobFailed(f"reading the video failed: {e}") from e
        last = sampler.flush()
        if last is not None:
            self._publish(last)
        fields: dict[str, str | int | float] = {
            "frames_total": sampler.next_frame,
            "fps": reader.fps,
            "head_pts": json.dumps(head_pts),
        }
        topics.set_job_progress(self.r, self.job.id, fields)
        self._update(frames_total=sampler.next_frame, context=min(spec.context, sampler.next_frame))

    def _publish(self, window: Window) -> None:
        """Publish the part of `window` not yet on the bus, once the job's backlog has room."""
        first, n = window.first_frame, window.num_scored
        skip = 0 if self.next_frame is None else self.next_frame - first
        if skip >= n:
            return  # published before this runner (re)started
        skip = max(skip, 0)
        message = WindowMsg(
            camera=self.stream,
            model=self.job.model,
            context=window.context,
            first_frame=first + skip,
            pts=list(window.pts[skip:]),
            capture_ts=list(window.capture_ts[skip:]),
            source="job",
            job_id=self.job.id,
            health=list(window.health[skip:]),
            chroma=list(window.chroma[skip:]),
            frames=window.frames[skip:],  # (context + n - skip, h, w, C): the context moves along with the start
        )
        while topics.camera_backlog(self.r, self.stream) >= self.settings.jobs.queue_windows:
            if self.stop_event.wait(_BACKLOG_POLL_S):
                return
        seq, next_frame = topics.publish_job_window(self.r, message)
        if seq == 0:
            msg = f"frame {message.first_frame} was published by another reader (it is at frame {next_frame})"
            raise LeaseLost(msg)
        self.next_frame = next_frame

    # --- the record --------------------------------------------------------------------------------------

    def _update(self, **changes: object) -> None:
        self.job = self.job.model_copy(update=changes)
        if not topics.put_job(self.r, self.job):
            raise JobCancelled

    def _finish(self, job: JobRecord) -> None:
        """Record the end, then clean up the job's stream (a failed job's windows in flight are awaited first)."""
        self.job = job.model_copy(update={"finished_ts": time.time()})
        try:
            if not topics.put_job(self.r, self.job):
                log.info("job %s: cancelled before it could be recorded %s", job.id, job.state)
                return  # the cancel already let the job's stream expire
            log.info("job %s %s: %s", job.id, job.state, job.reason or f"{job.frames_scored} frames scored")
            drained = job.state == "done" or self._await_in_flight()
            # Scores arriving after the stream was dropped would recreate it without a TTL: only drop it once
            # nothing is in flight, else let it expire.
            topics.expire_job_stream(self.r, job.id, self.settings.alerts.retention_s, drop_scores=drained)
        except REDIS_ERRORS as e:  # the job stays active; a later runner finds the results and finishes again
            log.warning("job %s: could not record its end: %s", job.id, e)

    def _await_in_flight(self) -> bool:
        """Wait (bounded) until the workers are through the windows this job already published."""
        deadline = time.monotonic() + _DRAIN_TIMEOUT_S
        while not topics.job_scores_done(self.r, self.job.id):
            if time.monotonic() > deadline or self.stop_event.wait(_SCORES_POLL_S):
                return False
        return True

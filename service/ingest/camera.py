"""One camera inside an ingester: a reader thread (decode -> sample -> buffer) and a publisher thread (buffer -> bus).

The reader owns the state machine: it connects, streams, detects stalls and reconnects with exponential
backoff and jitter; errors become state `error` with a reason and are retried (live cameras) or final
(files, which do not heal by waiting). The publisher survives Redis outages by retrying the same window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from models.types import InputSpec
from service import metrics
from service.bus import topics
from service.bus.client import REDIS_ERRORS, Backoff
from service.clips.buffer import PacketBuffer
from service.clips.recorder import BufferSource, ClipSource, FileSource
from service.errors import EndOfStream, SourceError
from service.footage import FootageError, FootagePolicy, is_local, local_path
from service.ingest.backpressure import BoundedBuffer, BufferClosed, Policy
from service.ingest.health import DEFAULT_HEALTH, CameraHealthTracker, HealthContext
from service.ingest.sampler import Window, WindowSampler
from service.ingest.source import SourceOptions, StallError, VideoFrame, VideoSource
from service.ingest.state import StreamStateMachine
from service.messages import CameraConfig, CameraStatus, WindowMsg
from service.settings import ClipSettings, IngestSettings

log = logging.getLogger(__name__)

SpecResolver = Callable[[str], InputSpec]  # model ref -> the input spec on its card
UNCONFINED = FootagePolicy(None, dev=True)  # tests' default; the ingester passes FootagePolicy.of(settings)


class _Resync(Exception):
    """The publisher was refused a file camera's window: the reader re-reads the file from the camera's next frame."""


class CameraRunner:
    """Runs one camera until `stop()`; `config` is immutable: a changed camera gets a new runner."""

    def __init__(
        self,
        config: CameraConfig,
        settings: IngestSettings,
        r: redis.Redis,
        owner: str,
        resolve_spec: SpecResolver,
        footage: FootagePolicy = UNCONFINED,
        health: HealthContext = DEFAULT_HEALTH,
        clips: ClipSettings | None = None,
    ) -> None:
        self.config, self.settings, self.r, self.owner = config, settings, r, owner
        self.resolve_spec = resolve_spec
        self.footage = footage
        self.health_context = health
        self._health: CameraHealthTracker | None = None  # created at the first connection (it reads Redis)
        self._sampler: WindowSampler | None = None
        self._playback: topics.Playback | None = None  # a file camera's play-through, once opened
        self._resync = threading.Event()  # set by the publisher when Redis refused a file window
        self._resync_at = 0  # the camera's next frame as Redis had it then
        self._last_error = ""  # reason of the last error logged, so a retry loop logs it once
        self.state = StreamStateMachine(config.id)
        self.stop_event = threading.Event()
        policy = Policy.for_kind(config.kind)
        capacity = settings.live_queue_windows if policy is Policy.DROP_OLDEST else settings.file_queue_windows
        self.buffer: BoundedBuffer[WindowMsg] = BoundedBuffer(capacity, policy, on_drop=self._on_drop)
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.windows_published = 0
        self.last_frame_ts: float | None = None
        self.last_pts: float | None = None  # of the newest decoded frame: where a file camera's partial clip ends
        # A live camera's pre-roll packets for alert clips (None: clips off, or a file camera, cut from its file)
        self.packets: PacketBuffer | None = None
        if clips is not None and clips.enabled and config.kind == "live":
            self.packets = PacketBuffer(clips.pre_roll_s + clips.max_delay_s, clips.buffer_bytes)
        self._clips_on = clips is not None and clips.enabled
        self._fps = _RateMeter(settings.status_interval_s)
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"ingest-read-{config.id}", daemon=True),
            threading.Thread(target=self._publish_loop, name=f"ingest-publish-{config.id}", daemon=True),
        ]

    @property
    def camera(self) -> str:
        return self.config.id

    def start(self) -> None:
        for t in reversed(self._threads):  # the publisher first: a reader that fails at once joins it
            t.start()

    def stop(self, timeout_s: float = 10.0, write_status: bool = True) -> None:
        """Stop reading, publish what is buffered (bounded by `timeout_s`), mark the camera stopped.

        `write_status=False` when another ingester owns the camera now: its status is theirs to write.
        """
        self.stop_event.set()
        self._threads[0].join(max(timeout_s, self.settings.open_timeout_s + 1))  # an open() in flight ends by then
        self.buffer.close()
        self._threads[1].join(timeout_s)
        if self._threads[0].is_alive():  # stuck in FFmpeg past every timeout: leave the daemon thread be
            log.warning("camera %s: the reader did not stop within %.0f s", self.camera, timeout_s)
        elif self.state.state != "stopped":
            self.state.to("stopped", "camera stopped by the ingester")
        if write_status:
            self.write_status()
        if self.packets is not None:  # open recordings end here; the memory goes
            self.packets.reset(None)
            metrics.CLIP_BUFFER_BYTES.labels(self.camera).set(0)

    def clip_source(self) -> ClipSource | None:
        """Where this camera's alert clips come from: its packet buffer (live) or its file; None when clips are off."""
        if self.packets is not None:
            return BufferSource(self.packets)
        if not self._clips_on or self.config.kind != "file":
            return None
        try:
            return FileSource(Path(self._source_url()), lambda: self.last_pts)
        except SourceError:
            return None

    @property
    def alive(self) -> bool:
        return self._threads[0].is_alive()

    # --- reader ---------------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = Backoff(self.settings.reconnect_initial_s, self.settings.reconnect_max_s)
        while not self.stop_event.is_set():
            self.state.to("connecting", "opening the source" if self.reconnects == 0 else "reconnecting")
            self.write_status()
            done = self._attempt(backoff)
            if done:  # a finished file reads as stopped only once its last window is on the bus
                self.buffer.close()
                self._threads[1].join()
                self._mark_finished()
            self.write_status()
            if done or self.stop_event.is_set():
                return
            self.reconnects += 1
            metrics.RECONNECTS.labels(camera=self.camera).inc()
            backoff.sleep(self.stop_event)

    def _attempt(self, backoff: Backoff) -> bool:
        """One connection: open, stream until it ends or fails. True when the camera is done for good."""
        try:
            url = self._source_url()
            sampler = self._sampler_for(self.resolve_spec(self.config.model))
            try:
                self._stream(url, sampler, backoff)
            finally:
                last = sampler.flush()
                if last is not None:  # frames decoded before the end or the drop are scored too
                    self._enqueue(last)
        except _Resync as e:
            self._resync.clear()
            log.info("camera %s: %s", self.camera, e)
            self.state.to("connecting", str(e))
        except REDIS_ERRORS as e:  # a file camera reads where its play-through stands from Redis
            self.state.to("connecting", f"waiting for Redis: {e}")
        except EndOfStream as e:
            if self.config.kind == "file":
                self.state.to("stopped", self._finished(e))
                return True
            self.state.to("connecting", f"stream ended, reconnecting: {e}")
        except StallError as e:
            self.state.to("stalled", str(e))
        except (SourceError, ValueError, OSError) as e:  # ValueError: unknown model or a bad card
            self.state.to("error", str(e))
            metrics.ERRORS.labels(component="ingest", kind=type(e).__name__).inc()  # dashboard: broken cameras
            # the same failure every backoff period is news once; after that it only shows in the status
            level = logging.DEBUG if self.state.reason == self._last_error else logging.WARNING
            log.log(level, "camera %s: %s", self.camera, self.state.reason)
            self._last_error = self.state.reason
            return self.config.kind == "file"  # a corrupt or missing file does not heal; a camera update retries
        except Exception as e:  # a bug must not silently kill the camera thread: show it, count it, retry
            log.exception("camera %s: unexpected error", self.camera)
            metrics.ERRORS.labels(component="ingest", kind=type(e).__name__).inc()
            self.state.to("error", f"internal error: {type(e).__name__}: {e}")
        return False

    def _source_url(self) -> str:
        """The url to open: for a file camera the real path the footage policy allows (checked at every open)."""
        if not is_local(self.config.url):
            return self.config.url
        try:
            return str(self.footage.resolve(local_path(self.config.url)))
        except FootageError as e:
            raise SourceError(str(e)) from e

    def _sampler_for(self, spec: InputSpec) -> WindowSampler:
        """The camera's sampler, kept across reconnects (frame numbers go on) unless the model's spec changed.

        A new sampler (this ingester just took the camera, or the spec changed) numbers on from the camera's
        last published frame, so a camera's frame numbers never restart when another ingester takes over."""
        if self.config.kind == "file":
            return self._resume(spec)
        if self._sampler is None or self._sampler.spec != spec:
            self._sampler = WindowSampler(spec, self.settings.window_frames, self.config.target_fps)
            self._sampler.next_frame = topics.camera_next_frame(self.r, self.camera)
        self._sampler.reset()  # the frames before a reconnect are no context for the frames after it
        return self._sampler

    def _resume(self, spec: InputSpec) -> WindowSampler:
        """A file camera's sampler at the next frame of its play-through, as Redis has it (at every open).

        Frames are numbered from the play-through's origin, so frame origin + k is the k-th (sampled) frame of the
        recording whoever reads it; the frames an earlier reader published (an ingester that was killed, an earlier
        attempt) are decoded fast and skipped, the `context` frames before the next one are the warm-up."""
        sampler = WindowSampler(spec, self.settings.window_frames, self.config.target_fps)
        source = topics.playback_source(self.config.url, self.config.target_fps)
        playback = topics.resume_playback(self.r, self.camera, source, spec.context, sampler.stream)
        self._sampler, self._playback = sampler, playback
        if playback.end is not None:
            msg = f"{self.config.redacted_url} was read to the end before (frames up to {playback.end - 1})"
            raise EndOfStream(msg)
        sampler.stream, sampler.next_frame = playback.stream, playback.origin
        sampler.skip_before = max(playback.origin, playback.next_frame - spec.context)
        if playback.next_frame > playback.origin + spec.context:
            log.info("camera %s: resuming at frame %d, published up to there before", self.camera, playback.next_frame)
        return sampler

    def _finished(self, end: EndOfStream) -> str:
        """Why a file camera stopped: the end of its file, and why no frame was scored when none was."""
        sampler, playback = self._sampler, self._playback
        if sampler is None or playback is None or playback.end is not None:
            return f"finished: {end}"
        frames, context = sampler.next_frame - playback.origin, sampler.spec.context
        if frames > context:
            return f"finished: {end}; frames {playback.origin + context}-{sampler.next_frame - 1} scored"
        reason = (
            f"finished: {end}; no frame was scored: {self.config.model} scores a frame from the {context} frames "
            f"before it, and the file gave {frames}"
        )
        log.warning("camera %s: %s", self.camera, reason)
        return reason

    def _mark_finished(self) -> None:
        """Record that a file was read to the end and all of it is on the bus, so no new owner reads it again."""
        playback = self._playback
        if playback is None or playback.end is not None or self._sampler is None or self.state.state != "stopped":
            return
        try:
            if topics.camera_next_frame(self.r, self.camera) >= self._sampler.next_frame:
                topics.finish_playback(self.r, self.camera, self._sampler.next_frame)
        except REDIS_ERRORS as e:  # a new owner then reads the file to its end again and publishes nothing
            log.warning("camera %s: end of the file not recorded: %s", self.camera, e)

    def _options(self, spec: InputSpec) -> SourceOptions:
        return SourceOptions(
            rtsp_transport=self.settings.rtsp_transport,
            open_timeout_s=self.settings.open_timeout_s,
            read_timeout_s=self.settings.stall_timeout_s,
            realtime=self.config.realtime,
            spec=spec,  # frames leave the source at the model's size, prepared as `vigil score` prepares them
            measure=True,  # every decoded frame goes through the camera's health checks
        )

    def _stream(self, url: str, sampler: WindowSampler, backoff: Backoff) -> None:
        """Decode until the source ends or fails (raises); returns only when asked to stop."""
        if self._health is None:
            self._health = CameraHealthTracker(self.config, self.health_context, self.r)
        health = self._health
        health.reset_stream()
        source = VideoSource(url, self._options(sampler.spec))
        source.packet_buffer = self.packets
        with source:
            sampler.set_source_fps(source.fps)
            source.catching_up = sampler.next_frame < sampler.skip_before
            corrupt_seen = 0
            for frame in source:
                if self.stop_event.is_set():
                    return
                if self._resync.is_set():
                    msg = f"re-reading from frame {self._resync_at}: Redis refused a window of this reader"
                    raise _Resync(msg)
                if self.state.state != "streaming":
                    self.state.to("streaming", f"decoding at {source.fps or 0:.1f} fps")
                    self._last_error = ""
                    backoff.reset()
                    self.write_status()
                self._count_frame(frame)
                frame = health.check(frame)
                if source.corrupt_packets > corrupt_seen:
                    metrics.FRAMES_DROPPED.labels(camera=self.camera, reason="corrupt").inc(
                        source.corrupt_packets - corrupt_seen
                    )
                    corrupt_seen = source.corrupt_packets
                kept_before = sampler.frames_kept
                window = sampler.push(frame)
                source.catching_up = sampler.next_frame < sampler.skip_before
                if sampler.frames_kept == kept_before:
                    metrics.FRAMES_DROPPED.labels(camera=self.camera, reason="decimation").inc()
                if window is not None:
                    self._enqueue(window)

    def _count_frame(self, frame: VideoFrame) -> None:
        self.frames_decoded += 1
        self.last_frame_ts, self.last_pts = frame.capture_ts, frame.pts
        metrics.FRAMES_DECODED.labels(camera=self.camera).inc()
        fps = self._fps.tick()
        if fps is not None:
            metrics.INGEST_FPS.labels(camera=self.camera).set(fps)
            if self.packets is not None:
                metrics.CLIP_BUFFER_BYTES.labels(self.camera).set(self.packets.bytes)
            self.write_status()  # about once a status interval, with the fresh fps

    def _enqueue(self, window: Window) -> None:
        msg = WindowMsg(
            camera=self.camera,
            model=self.config.model,
            context=window.context,
            first_frame=window.first_frame,
            pts=list(window.pts),
            capture_ts=list(window.capture_ts),
            source="file" if self.config.kind == "file" else "live",
            stream=window.stream,
            health=list(window.health),
            chroma=list(window.chroma),
            frames=window.frames,
        )
        while not self.stop_event.is_set():  # WAIT policy: block in short steps so stop() stays prompt
            if self._resync.is_set():  # refused anyway: the reader re-reads from the camera's next frame
                return
            try:
                if self.buffer.put(msg, timeout=0.2):
                    return
            except BufferClosed:
                return

    def _on_drop(self, window: WindowMsg) -> None:
        self.frames_dropped += window.num_scored
        metrics.FRAMES_DROPPED.labels(camera=self.camera, reason="backpressure").inc(window.num_scored)

    # --- publisher ------------------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        backoff = Backoff(0.1, 2.0)
        while True:
            window = self.buffer.get(timeout=0.5)
            if window is None:
                if self.buffer.closed:
                    return
                continue
            while True:  # retry this window until Redis takes it: a Redis restart loses nothing we hold
                try:
                    published = self._publish(window)
                except redis.ResponseError as e:  # the server refused it (OOM, ...): retrying will not help
                    log.error("camera %s: Redis refused a window, dropping it: %s", self.camera, e)
                    metrics.ERRORS.labels(component="ingest", kind="publish").inc()
                    metrics.FRAMES_DROPPED.labels(camera=self.camera, reason="publish_error").inc(window.num_scored)
                    break
                except REDIS_ERRORS as e:
                    if self.buffer.closed and self.stop_event.is_set():
                        log.warning("camera %s: dropping a window at shutdown, Redis is down: %s", self.camera, e)
                        return
                    log.warning("camera %s: publishing a window failed, retrying: %s", self.camera, e)
                    backoff.sleep()
                    continue
                backoff.reset()
                if published:
                    self.windows_published += 1
                    metrics.WINDOWS_PUBLISHED.labels(camera=self.camera).inc()
                break

    def _publish(self, window: WindowMsg) -> bool:
        """Put a window on the bus. A file camera's window goes only if it starts at the camera's next frame: when
        it does not (another reader took over, or Redis lost writes), it is dropped and the reader re-reads."""
        if self._playback is None:
            topics.publish_window(self.r, window)
            return True
        seq, next_frame = topics.publish_file_window(self.r, window, self._playback)
        if seq:
            return True
        if not self._resync.is_set():
            log.warning(
                "camera %s: frame %d is not the camera's next frame (%d); re-reading from there",
                self.camera,
                window.first_frame,
                next_frame,
            )
        self._resync_at = next_frame
        self._resync.set()
        return False

    # --- status ---------------------------------------------------------------------------------------

    def status(self) -> CameraStatus:
        return CameraStatus(
            camera=self.camera,
            state=self.state.state,
            reason=self.state.reason,
            owner=self.owner,
            fps=self._fps.value,
            frames_decoded=self.frames_decoded,
            frames_dropped=self.frames_dropped,
            last_frame_ts=self.last_frame_ts,
            reconnects=self.reconnects,
        )

    def write_status(self) -> None:
        """Best effort: the API shows the newest status; a Redis outage must not stop decoding."""
        try:
            topics.set_camera_status(self.r, self.status())
        except REDIS_ERRORS as e:
            log.debug("camera %s: status not written: %s", self.camera, e)


class _RateMeter:
    """Frames per second over windows of about one second; `tick()` returns a fresh value once per window."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self.value = 0.0
        self._count = 0
        self._start = time.monotonic()

    def tick(self) -> float | None:
        self._count += 1
        elapsed = time.monotonic() - self._start
        if elapsed < self.period_s:
            return None
        self.value = self._count / elapsed
        self._count, self._start = 0, time.monotonic()
        return self.value

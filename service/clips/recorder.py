"""The clip recorder of one ingester: follows the alert event stream and writes the clips of the alerts of its own
cameras and jobs (one thread; one clip encodes at a time, on one core).

Per alert: `opened` -> a recording starts (a live camera: its packets from the key frame before start - pre-roll,
then every new packet; a file camera or job: nothing to hold, the recording file is cut later) and a partial clip
is written at once, then rewritten every `partial_interval_s`; `closed` -> the final clip [start - pre, end + post]
once the stream is past end + post (a file at once). Clips stop at `max_clip_s`. The alert event stream is read
from "now" on: an ingester that (re)starts misses alerts opened before it and clips only those closing later
(from what its buffer still holds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av.error
import redis

from service import metrics
from service.bus import topics
from service.bus.client import REDIS_ERRORS, Backoff
from service.clips.buffer import PacketBuffer, Recording
from service.clips.decode import ClipSourceError, decode_file, decode_packets
from service.clips.encode import ClipResult, EncodeOptions, Overlay, write_clip
from service.clips.store import ClipStore
from service.footage import FootageError
from service.messages import Alert, AlertClip, AlertEvent
from service.settings import Settings

log = logging.getLogger(__name__)

_BLOCK_MS = 250  # how long one read of the event stream waits; also the recorder's tick


@dataclass(frozen=True)
class BufferSource:
    """A live camera: clips come from its packet buffer."""

    buffer: PacketBuffer


@dataclass(frozen=True)
class FileSource:
    """A file camera or a job: clips are cut from the recording. `position()`: the newest pts its reader decoded
    (where a partial clip ends), None when unknown."""

    path: Path
    position: Callable[[], float | None]


ClipSource = BufferSource | FileSource
SourceLookup = Callable[[str], ClipSource | None]  # camera -> where its clips come from, None: not this ingester's
HeatmapOverlays = Callable[[Alert], Overlay | None]  # the heatmap drawer for an alert (issue 11 item 2)


@dataclass
class _Open:
    """An alert being recorded."""

    alert: Alert
    source: ClipSource
    recording: Recording | None  # live cameras
    next_partial: float  # monotonic time of the next partial write
    closed: bool = False
    written_to: float | None = None  # the newest source pts when the last partial clip was written
    partials: int = 0


class ClipRecorder:
    def __init__(
        self,
        settings: Settings,
        r: redis.Redis,
        sources: SourceLookup,
        heatmaps: HeatmapOverlays | None = None,
    ) -> None:
        self.settings, self.r, self.sources, self.heatmaps = settings, r, sources, heatmaps
        c = settings.clips
        self.store = ClipStore(c.dir)
        self.options = EncodeOptions(width=c.width, crf=c.crf, preset=c.preset)
        self.open: dict[str, _Open] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()  # alerts whose final clip is written (a late close)
        self._next_sweep = 0.0
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clips", daemon=True)

    def start(self) -> ClipRecorder:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout_s)

    def overlay_for(self, alert: Alert) -> Overlay | None:
        """The one place where the heatmap overlay is wired: `clips.heatmap_overlay` on and a heatmap drawer given
        (`heatmaps`, from the ingester) -> that alert's overlay, drawn on every frame of its clip."""
        if not self.settings.clips.heatmap_overlay or self.heatmaps is None:
            return None
        return self.heatmaps(alert)

    # --- the loop ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(0.5, 10.0)
        last_id: str | None = None
        while not self.stop_event.is_set():
            try:
                if last_id is None:  # "now" by the server's clock: unlike "$" it holds between reads, so events
                    seconds, micros = self.r.time()  # added while a clip is being written are read after it
                    last_id = f"{int(seconds) * 1000 + int(micros) // 1000}-0"
                for stream_id, event in topics.read_alert_events(self.r, last_id, block_ms=_BLOCK_MS):
                    last_id = stream_id
                    self.on_event(event)
                self.tick()
                backoff.reset()
            except REDIS_ERRORS as e:
                log.warning("clips: Redis unavailable, recordings go on: %s", e)
                backoff.sleep(self.stop_event)
            except Exception as e:  # a bug must not end clip writing for good: show it, count it, go on
                log.exception("clips: unexpected error")
                metrics.ERRORS.labels(component="clips", kind=type(e).__name__).inc()
                backoff.sleep(self.stop_event)
        for o in self.open.values():  # the ingester stops: the recordings end with what they have
            if o.recording is not None:
                o.recording.end()

    def on_event(self, event: AlertEvent) -> None:
        alert = event.alert
        if event.kind == "opened" and alert.id not in self.open and alert.id not in self._finished:
            self._begin(alert)
        elif event.kind == "closed" and alert.id not in self._finished:
            o = self.open.get(alert.id) or self._begin(alert)
            if o is not None:
                o.alert, o.closed = alert, True
                if o.recording is not None:
                    o.recording.finish(self._stop_s(alert))

    def tick(self, now: float | None = None) -> None:
        """Write what is due: final clips whose footage is complete, partial clips whose time came; sweep."""
        now = time.monotonic() if now is None else now
        for alert_id, o in list(self.open.items()):
            complete = o.recording.done if o.recording is not None else o.closed
            if complete or self._too_long(o):
                self._write(o, final=True)
                del self.open[alert_id]
                self._finished[alert_id] = None
                while len(self._finished) > 10_000:
                    self._finished.popitem(last=False)
            elif now >= o.next_partial:
                o.next_partial = now + self.settings.clips.partial_interval_s
                newest = self._newest_s(o)
                if o.partials == 0 or newest != o.written_to:  # nothing new (a file that ended): keep the last one
                    o.written_to, o.partials = newest, o.partials + 1
                    self._write(o, final=False)
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.clips.sweep_interval_s
            self.sweep()

    def sweep(self) -> None:
        c = self.settings.clips
        result = self.store.sweep(c.retention_s, c.max_bytes)
        topics.delete_alert_clips(self.r, [a for ids in result.removed.values() for a in ids])

    # --- one alert ----------------------------------------------------------------------------------------

    def _begin(self, alert: Alert) -> _Open | None:
        source = self.sources(alert.camera)
        if source is None:
            return None  # another ingester's camera (or job)
        if alert.start_pts is None:
            metrics.CLIPS_FAILED.labels("no_pts").inc()
            log.warning("alert %s: no clip, the source gives its frames no timestamps", alert.id)
            return None
        recording = None
        if isinstance(source, BufferSource):
            c = self.settings.clips
            recording = source.buffer.record(alert.start_pts - c.pre_roll_s, c.recording_bytes)
            if recording is None:
                metrics.CLIPS_FAILED.labels("no_packets").inc()
                log.warning("alert %s: no clip, nothing buffered for camera %s", alert.id, alert.camera)
                return None
        o = _Open(alert, source, recording, next_partial=0.0)  # the first partial clip is written at the next tick
        self.open[alert.id] = o
        return o

    def _stop_s(self, alert: Alert) -> float:
        start = alert.start_pts if alert.start_pts is not None else 0.0
        end = alert.end_pts if alert.end_pts is not None else start
        return min(end + self.settings.clips.post_roll_s, start + self.settings.clips.max_clip_s)

    def _too_long(self, o: _Open) -> bool:
        newest = self._newest_s(o)
        start = o.alert.start_pts
        return newest is not None and start is not None and newest - start >= self.settings.clips.max_clip_s

    def _newest_s(self, o: _Open) -> float | None:
        if o.recording is not None:
            return o.recording.newest_s
        assert isinstance(o.source, FileSource)
        return o.source.position()

    def _span(self, o: _Open, final: bool) -> tuple[float, float]:
        """[start, stop] in source seconds of the clip written now."""
        c, start = self.settings.clips, o.alert.start_pts
        assert start is not None  # checked in _begin
        stop = self._stop_s(o.alert) if o.closed else min(self._newest_s(o) or start, start + c.max_clip_s)
        if final and not o.closed:
            stop = start + c.max_clip_s
        return start - c.pre_roll_s, stop

    def _write(self, o: _Open, final: bool) -> ClipResult | None:
        alert = o.alert
        start_s, stop_s = self._span(o, final)
        kind: Literal["buffer", "file"] = "buffer" if o.recording is not None else "file"
        try:
            dest = self.store.path(alert.camera, alert.id)
            frames = (
                decode_packets(o.recording.info, o.recording.snapshot())
                if o.recording is not None
                else decode_file(o.source.path, start_s, stop_s)  # type: ignore[union-attr]
            )
            result = write_clip(frames, start_s, stop_s, dest, self.options, self.overlay_for(alert), title=alert.id)
        except (ClipSourceError, FootageError) as e:
            metrics.CLIPS_FAILED.labels("source").inc()
            log.warning("alert %s: clip not written: %s", alert.id, e)
            return None
        except (av.error.FFmpegError, OSError) as e:
            metrics.CLIPS_FAILED.labels("write").inc()
            log.warning("alert %s: clip not written: %s", alert.id, e)
            return None
        if result is None:
            if final:
                metrics.CLIPS_FAILED.labels("no_frames").inc()
                log.warning("alert %s: no frames for its clip in [%.2f, %.2f] s", alert.id, start_s, stop_s)
            return None
        metrics.CLIP_SECONDS.labels(kind).observe(result.cpu_s)
        truncated = final and (result.last_s < stop_s - 1.0 or (o.recording is not None and o.recording.truncated))
        if final:
            metrics.CLIPS_WRITTEN.labels(kind).inc()
        record = AlertClip(
            alert=alert.id,
            camera=alert.camera,
            state="final" if final else "partial",
            start_pts=result.first_s,
            end_pts=result.last_s,
            frames=result.frames,
            bytes=result.bytes,
            source=kind,
            truncated=truncated,
        )
        topics.put_alert_clip(self.r, record, self.settings.alerts.retention_s)
        log.info(
            "alert %s: %s clip, %.1f s (%d frames, %.0f KiB) in %.2f s CPU",
            alert.id, record.state, result.duration_s, result.frames, result.bytes / 1024, result.cpu_s,
        )  # fmt: skip
        return result

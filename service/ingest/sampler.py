"""Decoded frames -> windows for one model: fps decimation, `prepare` to the input spec, context + W frames.

Pure (no I/O, no clock): the same frames in give the same windows out, so it is unit-tested with tables.
A window holds `context` frames before the W frames it asks to score. The first window of a stream (and
the first after `reset()`, i.e. after a reconnect) starts with `context` warm-up frames that get no
score; later windows take their context from the frames of the previous window.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

import numpy as np

from models.data.transforms import prepare
from models.health.monitor import spread
from models.types import InputSpec
from service.ingest.source import VideoFrame

_EPS = 1e-6


class FpsDecimator:
    """Keeps frames so the output rate is at most `target_fps`, by timestamp (pts, else index / source fps).

    Keeps a frame when its time reaches the next due time; the due time advances by one period per kept
    frame, so 25 -> 10 fps keeps an even 2-3-2-3 pattern rather than drifting. A jump in time (seek,
    reconnect) re-anchors the schedule instead of flushing a burst of frames.
    """

    def __init__(self, target_fps: float | None, source_fps: float | None) -> None:
        if target_fps is not None and target_fps <= 0:
            msg = f"target_fps must be > 0 or None (keep every frame), got {target_fps}"
            raise ValueError(msg)
        self.period = 0.0 if target_fps is None else 1.0 / target_fps
        self.source_fps = source_fps
        self._due: float | None = None

    def keep(self, index: int, pts: float | None) -> bool:
        if self.period == 0.0:
            return True
        t = pts if pts is not None else (index / self.source_fps if self.source_fps else None)
        if t is None:  # no time at all: cannot decimate honestly, keep everything
            return True
        if self._due is None or t < self._due - 2 * self.period or t > self._due + 2 * self.period:
            self._due = t + self.period  # first frame or a jump: keep it and re-anchor
            return True
        if t + _EPS >= self._due:
            self._due += self.period
            return True
        return False

    def reset(self) -> None:
        self._due = None


@dataclass(frozen=True)
class Window:
    """`frames` (context + N, h, w, C) uint8; `pts`/`capture_ts` and `first_frame` describe the N scored frames."""

    frames: np.ndarray
    context: int
    first_frame: int  # camera frame number of the first scored frame (counts kept frames, across reconnects)
    pts: tuple[float | None, ...]
    capture_ts: tuple[float, ...]
    stream: str = ""  # the sampler's numbering (WindowSampler.stream): frame numbers are unique within it
    # Per scored frame: camera-health flags of the frame and of the `context` frames before it (models/health
    # `spread`: the model predicts the frame from them), and its chroma (VideoFrame.health, .chroma).
    health: tuple[int, ...] = ()
    chroma: tuple[float | None, ...] = ()

    @property
    def num_scored(self) -> int:
        return int(self.frames.shape[0]) - self.context


class WindowSampler:
    """Builds windows of `window_frames` new frames plus `spec.context` frames before them."""

    def __init__(
        self, spec: InputSpec, window_frames: int, target_fps: float | None = None, source_fps: float | None = None
    ) -> None:
        if window_frames < 1:
            msg = f"window_frames must be >= 1, got {window_frames}"
            raise ValueError(msg)
        self.spec = spec
        self.window_frames = window_frames
        fps = target_fps if target_fps is not None else spec.fps  # the camera's wish first, else the model's
        self.decimator = FpsDecimator(fps, source_fps)
        self.next_frame = 0  # camera frame number of the next kept frame (the camera's ingester sets where it goes on)
        # Kept frames numbered below this are only counted (not prepared, not windowed): a file camera resuming a
        # play-through skips what an earlier reader published; the `context` frames before it are its warm-up.
        self.skip_before = 0
        # Names this sampler's run of frames, so per-frame state kept elsewhere (the worker's snippet history) never
        # reaches across a handover between ingesters, where the video has a gap.
        self.stream = uuid.uuid4().hex[:12]
        self._context: deque[np.ndarray] = deque(maxlen=spec.context)
        self._context_health: deque[int] = deque(maxlen=spec.context)  # health flags of the `_context` frames
        self._frames: list[np.ndarray] = []  # prepared (h, w, C) frames, warm-up context first after a reset
        # (frame number, pts, capture_ts, health flags, chroma) per frame
        self._meta: list[tuple[int, float | None, float, int, float | None]] = []
        self._skipped_health = 0  # health flags of frames decimated away since the last kept frame
        self.frames_kept = 0
        self.frames_skipped = 0

    def set_source_fps(self, source_fps: float | None) -> None:
        self.decimator.source_fps = source_fps

    def push(self, frame: VideoFrame) -> Window | None:
        """Add one decoded frame; returns a window when W new frames (after the warm-up) have gathered."""
        if not self.decimator.keep(frame.index, frame.pts):
            self.frames_skipped += 1
            self._skipped_health |= frame.health  # a damaged frame dropped here still damaged the stream
            return None
        health, self._skipped_health = frame.health | self._skipped_health, 0
        self.frames_kept += 1
        number = self.next_frame
        self.next_frame += 1
        if number < self.skip_before:
            return None
        image = frame.image if frame.image.ndim == 3 else frame.image[:, :, None]
        self._frames.append(prepare(image[None], self.spec)[0])  # (h, w, C)
        self._meta.append((number, frame.pts, frame.capture_ts, health, frame.chroma))
        warmup = self.spec.context - len(self._context)  # frames still needed as context, not scored
        if len(self._frames) < warmup + self.window_frames:
            return None
        return self._emit(warmup)

    def flush(self) -> Window | None:
        """At the end of a finite source: the last, shorter window, so every frame after the warm-up is scored."""
        warmup = self.spec.context - len(self._context)
        if len(self._frames) <= warmup:
            return None
        return self._emit(warmup)

    def _emit(self, warmup: int) -> Window:
        scored = self._meta[warmup:]
        frames = np.stack([*self._context, *self._frames])  # (context + W, h, w, C)
        flags = np.array([*self._context_health, *(m[3] for m in self._meta)], dtype=np.int64)
        health = spread(flags, self.spec.context)[len(flags) - len(scored) :]
        self._context.extend(self._frames)  # the last `context` frames become the next window's context
        self._context_health.extend(m[3] for m in self._meta)
        self._frames, self._meta = [], []
        return Window(
            frames=frames,
            context=self.spec.context,
            first_frame=scored[0][0],
            pts=tuple(m[1] for m in scored),
            capture_ts=tuple(m[2] for m in scored),
            stream=self.stream,
            health=tuple(int(h) for h in health),
            chroma=tuple(m[4] for m in scored),
        )

    def reset(self) -> None:
        """After a reconnect: the old frames are no context for the new ones; frame numbers keep counting."""
        self._context.clear()
        self._context_health.clear()
        self._frames, self._meta = [], []
        self._skipped_health = 0
        self.decimator.reset()

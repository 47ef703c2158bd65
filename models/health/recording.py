"""A recording's health, as a camera playing it would have had it: every frame through one monitor, flags spread
over each frame's context. What `vigil eval`, `vigil score` and the batch jobs hand to the camera calibration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from models.health.measure import FrameInfo
from models.health.monitor import Change, HealthMonitor, spread
from models.health.params import HealthParams


class MeasuredReader(Protocol):
    """What a recording's check reads: models.data.video's readers (a protocol, so that models.data, which measures
    frames with models.health while it decodes them, is not imported back)."""

    def iter_measured(self) -> Iterable[tuple[int, float, object, FrameInfo]]: ...


@dataclass(frozen=True)
class RecordingHealth:
    """Per decoded frame of one recording."""

    flags: np.ndarray  # (N,) int64 health flags of the frame and of the `context` frames before it (0 = healthy)
    chroma: np.ndarray  # (N,) float64 chroma as scene-profile evidence, NaN where the frame is none
    events: list[tuple[int, float, Change]] = field(default_factory=list)  # (frame, stream time, change)

    def scored(self, context: int) -> tuple[np.ndarray, np.ndarray]:
        """(chroma, usable) of the frames a model with `context` scores: what `CameraCalibrator.step` takes."""
        return self.chroma[context:], self.flags[context:] == 0


def check_recording(
    reader: MeasuredReader,
    params: HealthParams,
    chroma_bounds: tuple[float, float],
    context: int,
    fps: float | None = None,
) -> RecordingHealth:
    """Run a fresh camera's health checks over every frame of `reader` (times: pts, or frame / `fps` when given, as
    frame folders carry no times)."""
    monitor = HealthMonitor(params, chroma_bounds)
    flags: list[int] = []
    chroma: list[float] = []
    events: list[tuple[int, float, Change]] = []
    for index, pts, _, info in reader.iter_measured():
        t = index / fps if fps else pts
        out = monitor.step(info, t)
        flags.append(out.flags)
        chroma.append(np.nan if out.chroma is None else out.chroma)
        events.extend((index, t, change) for change in out.changes)
    return RecordingHealth(spread(np.asarray(flags, dtype=np.int64), context), np.asarray(chroma), events)

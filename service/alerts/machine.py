"""The per-camera alert state machine: threshold with hysteresis, minimum duration, cooldown. Pure.

Scores come in already smoothed (the camera calibration's output), in frame order, any number at a time:

    idle --score >= threshold--> pending --run of min_duration_frames--> active (alert "opened")
    pending --score < threshold--> idle
    active --score >= threshold - hysteresis--> active ("updated" when the peak rises)
    active --score < threshold - hysteresis--> cooldown ("closed"; the alert ends at the previous frame)
    cooldown --cooldown_frames frames later--> idle (no alert can open while cooling down)

With cooldown_frames = 0 the machine goes straight back to idle. A frame that may not alert (held back while the
camera calibration learns or settles, or flagged by a health check) is fed as -inf: it never opens or extends an
alert, closes an open one and breaks a pending run.

The machine jumps from transition to transition over the score array (the next frame below the threshold, above
it, below the close level), so one call costs O(frames) in numpy plus O(transitions) in Python: the live worker
feeds it one window at a time, `replay` a day of one camera at once, with the same result.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import numpy as np

from service.messages import Alert, AlertEvent, AlertParams, AlertTrack


@dataclass(frozen=True)
class FrameScore:
    frame: int
    ts: float  # capture wall-clock time
    score: float


@dataclass(frozen=True)
class ScoreRun:
    """Consecutive frames as arrays: frame numbers, capture times and the scores the machine sees (-inf = held), and
    optionally the frames' pts (stream seconds, NaN where a frame has none), which alerts carry so a clip can be cut
    from the recording or the ingester's packet buffer (service/clips)."""

    frames: np.ndarray  # (N,) int64
    ts: np.ndarray  # (N,) float64
    scores: np.ndarray  # (N,) float64
    pts: np.ndarray | None = None  # (N,) float64

    @classmethod
    def of(cls, frames: list[FrameScore]) -> ScoreRun:
        return cls(
            np.array([f.frame for f in frames], dtype=np.int64),
            np.array([f.ts for f in frames], dtype=np.float64),
            np.array([f.score for f in frames], dtype=np.float64),
        )

    @classmethod
    def held(
        cls,
        frames: np.ndarray,
        ts: np.ndarray,
        scores: np.ndarray,
        alertable: np.ndarray,
        pts: np.ndarray | None = None,
    ) -> ScoreRun:
        """Scores with the frames that may not alert replaced by -inf."""
        effective = np.where(np.asarray(alertable, dtype=bool), np.asarray(scores, dtype=np.float64), -np.inf)
        stream_s = None if pts is None else np.asarray(pts, dtype=np.float64)
        return cls(np.asarray(frames, dtype=np.int64), np.asarray(ts, dtype=np.float64), effective, stream_s)

    def pts_at(self, i: int) -> float | None:
        """The pts of frame i of the run in seconds, None when unknown."""
        if self.pts is None or not np.isfinite(self.pts[i]):
            return None
        return float(self.pts[i])


def new_alert_id(camera: str, start_frame: int) -> str:
    """Readable and unique: camera, start frame, random suffix (frame numbers restart with a stream)."""
    return f"{camera}-{start_frame}-{uuid.uuid4().hex[:8]}"


def advance(
    track: AlertTrack, params: AlertParams, frames: list[FrameScore] | ScoreRun, camera: str, model: str
) -> tuple[AlertTrack, list[AlertEvent]]:
    """Feed consecutive frames; returns the new state and the events, consecutive "updated" ones merged."""
    run = frames if isinstance(frames, ScoreRun) else ScoreRun.of(frames)
    stepper = _Stepper(track.model_copy(deep=True), params, run, camera, model)
    stepper.run()
    return stepper.track, stepper.events


def _next_index(mask: np.ndarray) -> np.ndarray:
    """(N,) bool -> (N + 1,) int: for each i the smallest j >= i with mask[j], N if there is none."""
    n = len(mask)
    idx = np.where(mask, np.arange(n), n)
    return np.asarray(np.r_[np.minimum.accumulate(idx[::-1])[::-1], n], dtype=np.int64)


class _Stepper:
    """One `advance` call: walks the run from transition to transition (see the module docstring)."""

    def __init__(self, track: AlertTrack, params: AlertParams, run: ScoreRun, camera: str, model: str) -> None:
        self.track, self.params, self.run_, self.camera, self.model = track, params, run, camera, model
        self.events: list[AlertEvent] = []
        s = run.scores
        self.below_threshold = _next_index(s < params.threshold)
        self.above_threshold = _next_index(s >= params.threshold)
        self.below_close = _next_index(s < params.threshold - params.hysteresis)

    def run(self) -> None:
        i, n = 0, len(self.run_.scores)
        while i < n:
            phase = self.track.phase
            if phase == "cooldown":
                i = self._cool(i, n)
            elif phase == "active":
                i = self._active(i, n)
            else:
                i = self._idle_or_pending(i, n)

    def _emit(self, event: AlertEvent) -> None:
        if event.kind == "updated" and self.events and self.events[-1].kind == "updated":
            self.events[-1] = event
        else:
            self.events.append(event)

    def _extend(self, start: int, stop: int) -> bool:
        """Add frames [start, stop) to the current run; True when one of them raised the peak."""
        t, r = self.track, self.run_
        t.run_len += stop - start
        t.run_end_frame, t.run_end_ts = int(r.frames[stop - 1]), float(r.ts[stop - 1])
        t.run_end_pts = r.pts_at(stop - 1)
        best = start + int(np.argmax(r.scores[start:stop]))  # the first frame at the maximum
        if r.scores[best] > t.run_peak:
            t.run_peak, t.run_peak_frame = float(r.scores[best]), int(r.frames[best])
            t.run_peak_pts = r.pts_at(best)
            return True
        return False

    def _cool(self, i: int, n: int) -> int:
        t = self.track
        k = max(1, min(t.cooldown_left, n - i))  # each frame in cooldown only counts down
        t.cooldown_left -= k
        if t.cooldown_left <= 0:
            t.phase = "idle"
        return i + k

    def _active(self, i: int, n: int) -> int:
        t = self.track
        if t.alert is None:  # a state written by hand or a bug: recover rather than crash the camera
            t.phase = "idle"
            return i + 1
        j = int(self.below_close[i])
        if j > i and self._extend(i, j):
            t.alert = t.alert.model_copy(
                update={
                    "peak_score": t.run_peak,
                    "peak_frame": t.run_peak_frame,
                    "peak_pts": t.run_peak_pts,
                    "updated_ts": time.time(),
                }
            )
            self._emit(AlertEvent(kind="updated", alert=t.alert))
        if j >= n:
            return n
        closed = t.alert.model_copy(
            update={
                "state": "closed",
                "end_frame": t.run_end_frame,
                "end_ts": t.run_end_ts,
                "end_pts": t.run_end_pts,
                "updated_ts": time.time(),
            }
        )
        t.alert = None
        t.cooldown_left = self.params.cooldown_frames
        t.phase = "cooldown" if self.params.cooldown_frames > 0 else "idle"
        self._emit(AlertEvent(kind="closed", alert=closed))
        return j + 1  # the closing frame is consumed (it is below the close level, so it starts nothing)

    def _idle_or_pending(self, i: int, n: int) -> int:
        t, r = self.track, self.run_
        if t.phase == "idle":
            j = int(self.above_threshold[i])
            if j >= n:
                return n
            t.phase = "pending"
            t.run_start_frame, t.run_start_ts, t.run_len = int(r.frames[j]), float(r.ts[j]), 0
            t.run_start_pts = r.pts_at(j)
            t.run_peak, t.run_peak_frame, t.run_peak_pts = -1.0, int(r.frames[j]), t.run_start_pts
            i = j
        stop = int(self.below_threshold[i])  # the run of frames at or above the threshold ends here
        need = self.params.min_duration_frames - t.run_len
        if stop - i < need:
            if stop > i:
                self._extend(i, stop)
            if stop < n:
                t.phase = "idle"
            return stop
        opened_at = i + need
        self._extend(i, opened_at)
        t.phase = "active"
        t.alert = Alert(
            id=new_alert_id(self.camera, t.run_start_frame),
            camera=self.camera,
            model=self.model,
            state="open",
            start_frame=t.run_start_frame,
            start_ts=t.run_start_ts,
            start_pts=t.run_start_pts,
            peak_score=t.run_peak,
            peak_frame=t.run_peak_frame,
            peak_pts=t.run_peak_pts,
            opened_frame=int(r.frames[opened_at - 1]),
        )
        self._emit(AlertEvent(kind="opened", alert=t.alert))
        return opened_at


def replay(
    run: ScoreRun, params: AlertParams, camera: str, model: str, track: AlertTrack | None = None
) -> tuple[list[Alert], AlertTrack]:
    """Every alert `run` produces from `track` (idle by default): closed ones, then one still open at the end."""
    track, events = advance(track or AlertTrack(), params, run, camera, model)
    alerts: dict[str, Alert] = {}
    for event in events:
        alerts[event.alert.id] = event.alert
    return list(alerts.values()), track

"""The per-camera alert state machine: threshold with hysteresis, minimum duration, cooldown. Pure.

Scores come in already smoothed (the calibrated score's EMA), one frame at a time, in frame order:

    idle --score >= threshold--> pending --run of min_duration_frames--> active (alert "opened")
    pending --score < threshold--> idle
    active --score >= threshold - hysteresis--> active ("updated" when the peak rises)
    active --score < threshold - hysteresis--> cooldown ("closed"; the alert ends at the previous frame)
    cooldown --cooldown_frames frames later--> idle (no alert can open while cooling down)

With cooldown_frames = 0 the machine goes straight back to idle.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from service.messages import Alert, AlertEvent, AlertParams, AlertTrack


@dataclass(frozen=True)
class FrameScore:
    frame: int
    ts: float  # capture wall-clock time
    score: float


def new_alert_id(camera: str, start_frame: int) -> str:
    """Readable and unique: camera, start frame, random suffix (frame numbers restart with a stream)."""
    return f"{camera}-{start_frame}-{uuid.uuid4().hex[:8]}"


def advance(
    track: AlertTrack, params: AlertParams, frames: list[FrameScore], camera: str, model: str
) -> tuple[AlertTrack, list[AlertEvent]]:
    """Feed consecutive frames; returns the new state and the events, consecutive "updated" ones merged."""
    track = track.model_copy(deep=True)
    events: list[AlertEvent] = []
    for f in frames:
        event = _step(track, params, f, camera, model)
        if event is None:
            continue
        if event.kind == "updated" and events and events[-1].kind == "updated":
            events[-1] = event
        else:
            events.append(event)
    return track, events


def _start_run(track: AlertTrack, f: FrameScore) -> None:
    track.run_start_frame, track.run_start_ts, track.run_len = f.frame, f.ts, 0
    track.run_peak, track.run_peak_frame = -1.0, f.frame


def _extend_run(track: AlertTrack, f: FrameScore) -> bool:
    """Add a frame to the current run; True when it raised the peak."""
    track.run_len += 1
    track.run_end_frame, track.run_end_ts = f.frame, f.ts
    if f.score > track.run_peak:
        track.run_peak, track.run_peak_frame = f.score, f.frame
        return True
    return False


def _step(track: AlertTrack, params: AlertParams, f: FrameScore, camera: str, model: str) -> AlertEvent | None:
    if track.phase == "cooldown":
        track.cooldown_left -= 1
        if track.cooldown_left <= 0:
            track.phase = "idle"
        return None
    if track.phase == "active":
        return _step_active(track, params, f)
    if f.score < params.threshold:
        track.phase = "idle"
        return None
    if track.phase == "idle":
        track.phase = "pending"
        _start_run(track, f)
    _extend_run(track, f)
    if track.run_len < params.min_duration_frames:
        return None
    track.phase = "active"
    track.alert = Alert(
        id=new_alert_id(camera, track.run_start_frame),
        camera=camera,
        model=model,
        state="open",
        start_frame=track.run_start_frame,
        start_ts=track.run_start_ts,
        peak_score=track.run_peak,
        peak_frame=track.run_peak_frame,
    )
    return AlertEvent(kind="opened", alert=track.alert)


def _step_active(track: AlertTrack, params: AlertParams, f: FrameScore) -> AlertEvent | None:
    alert = track.alert
    if alert is None:  # a state written by hand or a bug: recover rather than crash the camera
        track.phase = "idle"
        return None
    if f.score >= params.threshold - params.hysteresis:
        if not _extend_run(track, f):
            return None
        track.alert = alert.model_copy(
            update={"peak_score": track.run_peak, "peak_frame": track.run_peak_frame, "updated_ts": time.time()}
        )
        return AlertEvent(kind="updated", alert=track.alert)
    closed = alert.model_copy(
        update={
            "state": "closed",
            "end_frame": track.run_end_frame,
            "end_ts": track.run_end_ts,
            "updated_ts": time.time(),
        }
    )
    track.alert = None
    track.cooldown_left = params.cooldown_frames
    track.phase = "cooldown" if params.cooldown_frames > 0 else "idle"
    return AlertEvent(kind="closed", alert=closed)

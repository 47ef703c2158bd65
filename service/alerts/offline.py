"""The live scoring path run over recordings: camera calibration, then the alert machine, as the worker does it.

`vigil eval` and `vigil score` call `run_camera` with the raw signals of recorded videos, so their scores and alerts
are those a camera would have published for the same frames (tests/integration/test_alert_replay.py checks it
against the live stack). Two modes: `stream` plays the recordings back to back as one camera (calibration and alert
state carry over, as a real camera would see them); `per-video` restarts both at each recording, from the same
learned reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.calibration.camera import (
    CalibrationParams,
    CalibState,
    CameraCalibrator,
    CameraReference,
    FrameState,
    Profile,
)
from models.card import Calibration
from models.evaluate.events import AlertSpan, Mode
from service.alerts.machine import ScoreRun, advance
from service.messages import Alert, AlertParams, AlertTrack


@dataclass(frozen=True)
class Recording:
    """The raw signals of one recording's scored frames, in order."""

    name: str
    raw: np.ndarray  # (N, S)
    times: np.ndarray  # (N,) stream seconds (pts)
    chroma: np.ndarray | None = None  # (N,) colourfulness (scene profile), None = unknown
    usable: np.ndarray | None = None  # (N,) False where a health check flagged the frame (models/health)


@dataclass(frozen=True)
class ScoredRecording:
    """What the camera path published for one recording."""

    name: str
    scores: np.ndarray  # (N,)
    alertable: np.ndarray  # (N,) bool
    states: list[FrameState]
    profiles: list[Profile]
    values: np.ndarray  # (N,) what the reference scored (smoothed value minus drift)
    levels: np.ndarray  # (N,) smoothed value before drift (levels - values = the drift offset at each frame)
    alerts: list[Alert]  # alerts overlapping this recording, frame numbers local to it (open at the end: closed)


@dataclass(frozen=True)
class CameraRun:
    recordings: list[ScoredRecording]
    spans: list[AlertSpan]  # every alert on the recordings' frames concatenated (what event metrics take)
    reference: CameraReference | None  # the reference at the end (learned during the run, if it learned)


def run_camera(
    card: Calibration,
    model: str,
    recordings: list[Recording],
    calib: CalibrationParams,
    alerts: AlertParams,
    mode: Mode = "stream",
    reference: CameraReference | None = None,
    camera: str = "offline",
) -> CameraRun:
    """Score `recordings` as camera `camera` with the given learned `reference` (None: it learns from its first
    `calib.learn_s` seconds, alerts held back meanwhile, as a new live camera does)."""
    close = alerts.threshold - alerts.hysteresis
    calibrator = CameraCalibrator(card, model, calib, reference=reference)
    start_state = calibrator.state.model_copy(deep=True)
    track = AlertTrack()
    events_alerts: dict[str, Alert] = {}
    open_until: dict[str, int] = {}  # alert id -> last frame of the footage it was still open at
    outs = []
    offset = 0
    for rec in recordings:
        if mode == "per-video":  # state restarts; what was learned stays
            calibrator = CameraCalibrator(card, model, calib, state=_fresh(start_state), reference=reference)
            track = AlertTrack()
        out = calibrator.step(rec.raw, rec.times, close, chroma=rec.chroma, usable=rec.usable)
        frames = np.arange(offset, offset + len(rec.raw), dtype=np.int64)
        track, events = advance(
            track, alerts, ScoreRun.held(frames, rec.times, out.scores, out.alertable, rec.times), camera, model
        )
        for event in events:
            events_alerts[event.alert.id] = event.alert
        if mode == "per-video":
            _note_open(track, open_until, offset + len(rec.raw) - 1)
        outs.append(out)
        offset += len(rec.raw)
    if mode == "stream":
        _note_open(track, open_until, offset - 1)
    ends = {a.id: a.end_frame if a.end_frame is not None else open_until[a.id] for a in events_alerts.values()}
    spans = [AlertSpan(a.start_frame, ends[a.id], a.opened_frame or 0) for a in events_alerts.values()]
    scored, start = [], 0
    for rec, out in zip(recordings, outs, strict=True):
        stop = start + len(rec.raw)
        local = [
            _localise(a, start, stop, ends[a.id])
            for a in events_alerts.values()
            if a.start_frame < stop and ends[a.id] >= start
        ]
        scored.append(
            ScoredRecording(
                rec.name, out.scores, out.alertable, out.states, out.profiles, out.values, out.levels, local
            )
        )
        start = stop
    return CameraRun(scored, sorted(spans, key=lambda s: s.start), calibrator.reference)


def _fresh(state: CalibState) -> CalibState:
    return state.model_copy(deep=True)


def _note_open(track: AlertTrack, open_until: dict[str, int], last_frame: int) -> None:
    """An alert still open where the footage (or, per video, the camera session) ends stays open in the output, as
    live; event metrics count it as lasting to that frame."""
    if track.alert is not None:
        open_until[track.alert.id] = last_frame


def _localise(alert: Alert, start: int, stop: int, end: int) -> Alert:
    """An alert in the concatenated frame numbers (lasting to `end`) -> the part inside one recording, in its own
    frame numbers. One still open where its footage ends keeps no end frame, as live; one going on into the next
    recording ends at this one's last frame."""
    peak = alert.peak_frame if start <= alert.peak_frame < stop else max(alert.start_frame, start)
    opened = alert.opened_frame
    still_open = alert.end_frame is None and end < stop
    return alert.model_copy(
        update={
            "start_frame": max(alert.start_frame, start) - start,
            "end_frame": None if still_open else min(end, stop - 1) - start,
            "peak_frame": peak - start,
            "opened_frame": opened - start if opened is not None and start <= opened < stop else None,
        }
    )

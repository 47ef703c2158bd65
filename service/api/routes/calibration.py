"""A camera's own calibration over REST: its state, relearning, what-if replays, and operator feedback on alerts.

- `GET /cameras/{id}/calibration`: learning or ready, the reference version, the active scene profile, per profile
  what it was learned from and its drift, and what the alert threshold means in false rises per hour.
- `POST /cameras/{id}/calibration` (operator): learn again from the next live frames (`live`), from an archived
  time range (`range`), or use the model card's held-out frames (`card`).
- `POST /cameras/{id}/replay` (viewer): the alerts other alert parameters (or another profile) would have produced
  over an archived time range, computed by the service's own alert machine; nothing live changes.
- `POST /alerts/{id}/feedback` (operator): false_alarm | confirmed, once per alert.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.calibration.camera import LearningState, card_reference
from models.calibration.reference import score_to_rate
from service import calibration
from service.alerts.machine import ScoreRun, replay
from service.api.deps import OperatorDep, RedisDep, SettingsDep, StoreDep, ViewerDep
from service.api.errors import ConflictError, InvalidRequestError, NotFoundError
from service.api.routes.alerts import AlertId
from service.api.routes.cameras import CameraId, existing_camera
from service.bus import topics
from service.bus.topics.calibration import PROFILE_CODES
from service.messages import MAX_ALERT_FRAMES, Alert, AlertFeedback, AlertParams, CameraConfig, Verdict
from service.metrics import ALERT_FEEDBACK
from service.settings import Settings

router = APIRouter(tags=["calibration"])
ProfileName = Literal["colour", "mono"]


class ProfileView(BaseModel):
    frames: int  # frames learned from
    fps: float
    learned_ts: float
    source: str
    feedback_frames: int  # false-alarm frames that joined it
    drift: float  # offset the camera's level has moved since it was learned (in standardised units)
    median: float
    spread: float


class CalibrationView(BaseModel):
    camera: str
    model: str | None  # resolved model the calibration belongs to (None before the first scored frame)
    state: Literal["learning", "ready", "new"]  # new: nothing scored yet
    version: int  # reference version (0 = none learned: scores come from the model card's frames)
    profile: str | None  # active scene profile
    profiles: dict[str, ProfileView]
    learning: dict[str, LearningState]
    threshold: float
    threshold_rises_per_hour: float  # how often the camera's normal footage reaches the threshold, by its scale
    archive_from: float | None  # oldest and newest archived frame (replays and range learning work inside)
    archive_to: float | None


class CalibrationRequest(BaseModel):
    """`live`: learn from the next `seconds` of frames (default VIGIL_CALIBRATION__LEARN_S), alerts held back;
    `range`: learn now from the archived frames captured between `start` and `end` (unix seconds);
    `card`: use the model card's held-out normal frames as the reference now (no learning, alerts at once)."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["live", "range", "card"]
    seconds: float | None = Field(default=None, gt=0, le=86_400)
    start: float | None = Field(default=None, ge=0, le=1e11)
    end: float | None = Field(default=None, ge=0, le=1e11)
    profiles: list[ProfileName] | None = Field(default=None, max_length=2)  # default: the active one (live)

    @model_validator(mode="after")
    def _fields_of_source(self) -> CalibrationRequest:
        if self.source == "range" and (self.start is None or self.end is None or self.start >= self.end):
            msg = "source 'range' needs start < end (unix seconds of archived frames)"
            raise ValueError(msg)
        if self.source != "range" and (self.start is not None or self.end is not None):
            msg = f"start/end belong to source 'range', not {self.source!r}"
            raise ValueError(msg)
        if self.source != "live" and self.seconds is not None:
            msg = f"seconds belongs to source 'live', not {self.source!r}"
            raise ValueError(msg)
        return self


class ReplayRequest(BaseModel):
    """Alert parameters to try (absent = the camera's current ones) over archived frames in [start, end]."""

    model_config = ConfigDict(extra="forbid")
    start: float = Field(ge=0, le=1e11)
    end: float = Field(ge=0, le=1e11)
    threshold: float | None = Field(default=None, gt=0, lt=1)
    hysteresis: float | None = Field(default=None, ge=0, lt=1)
    min_duration_frames: int | None = Field(default=None, ge=1, le=MAX_ALERT_FRAMES)
    cooldown_frames: int | None = Field(default=None, ge=0, le=MAX_ALERT_FRAMES)
    profile: ProfileName | None = None  # score every frame against this profile's current reference instead

    @model_validator(mode="after")
    def _ordered(self) -> ReplayRequest:
        if self.start >= self.end:
            msg = f"start ({self.start}) must be before end ({self.end})"
            raise ValueError(msg)
        return self


class ReplayResult(BaseModel):
    camera: str
    start: float
    end: float
    params: AlertParams
    profile: str | None
    frames: int  # archived frames replayed
    held_back: int  # frames that could not alert (learning, settling)
    alerts: list[Alert]  # oldest first; one still open at `end` has no end_frame
    elapsed_s: float


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Verdict
    note: str = Field(default="", max_length=1000)


def _view(redis: RedisDep, camera: CameraConfig, settings: Settings) -> CalibrationView:
    state = topics.load_scoring_state(redis, camera.id)
    stored = topics.load_reference(redis, camera.id) if state.calib_version else None
    calib = state.calib
    profiles = {}
    if stored is not None and stored.model == calib.model:
        for name, ref in stored.profiles.items():
            profiles[name] = ProfileView(
                frames=ref.frames,
                fps=ref.fps,
                learned_ts=ref.learned_ts,
                source=ref.source,
                feedback_frames=len(ref.feedback),
                drift=calib.drift.get(name, 0.0),
                median=ref.median,
                spread=ref.spread,
            )
    span = topics.signals_span(redis, camera.id)
    params = AlertParams.merge(settings.alerts, camera.alerts)
    return CalibrationView(
        camera=camera.id,
        model=calib.model,
        state="new" if calib.model is None else "learning" if calib.learning else "ready",
        version=state.calib_version if profiles else 0,
        profile=calib.profile,
        profiles=profiles,
        learning=calib.learning,
        threshold=params.threshold,
        threshold_rises_per_hour=score_to_rate(params.threshold),
        archive_from=span[0] if span else None,
        archive_to=span[1] if span else None,
    )


@router.get("/cameras/{camera_id}/calibration", response_model=CalibrationView)
def show_calibration(camera_id: CameraId, redis: RedisDep, settings: SettingsDep, _: ViewerDep) -> CalibrationView:
    return _view(redis, existing_camera(redis, camera_id), settings)


@router.post("/cameras/{camera_id}/calibration", response_model=CalibrationView)
def recalibrate(
    camera_id: CameraId,
    body: CalibrationRequest,
    redis: RedisDep,
    store: StoreDep,
    settings: SettingsDep,
    _: OperatorDep,
) -> CalibrationView:
    """Learn the camera's reference again (see CalibrationRequest); returns the calibration after the change."""
    camera = existing_camera(redis, camera_id)
    params = settings.calibration
    state = topics.load_scoring_state(redis, camera_id)
    try:
        if body.source == "live":
            profiles = body.profiles or [state.calib.profile or "colour"]
            seconds = body.seconds or params.learn_s
            calibration.request_learning(redis, camera_id, seconds, list(profiles), "requested")
        elif body.source == "range":
            assert body.start is not None  # checked by the model, as end is
            assert body.end is not None
            _check_in_archive(redis, camera_id, body.start, body.end)
            model, fitted = calibration.fit_range(redis, camera_id, body.start, body.end, params)
            wanted = {p: r for p, r in fitted.items() if body.profiles is None or p in body.profiles}
            if not wanted:
                msg = f"the range holds frames of profiles {sorted(fitted)} only, not {body.profiles}"
                raise InvalidRequestError(msg)
            calibration.install(redis, camera_id, model, wanted)
        else:
            version = store.resolve(camera.model)
            card = version.card().calibration
            if card is None:
                msg = f"model {version.ref} has no calibration in its card; register a calibrated version"
                raise InvalidRequestError(msg)
            ref = card_reference(card, params)
            calibration.install(redis, camera_id, version.ref, dict.fromkeys(body.profiles or PROFILE_CODES, ref))
    except calibration.CalibrationError as e:
        raise ConflictError(str(e)) from e
    return _view(redis, camera, settings)


def _check_in_archive(redis: RedisDep, camera: str, start: float, end: float) -> None:
    span = topics.signals_span(redis, camera)
    if span is None:
        msg = f"camera {camera!r} has no archived frames yet (it has not been scored since the archive started)"
        raise ConflictError(msg)
    if end < span[0] or start > span[1]:
        msg = (
            f"[{start:.3f}, {end:.3f}] is outside the archive, which holds frames captured from {span[0]:.3f} to "
            f"{span[1]:.3f} (unix seconds; VIGIL_CALIBRATION__REPLAY_RETENTION_S)"
        )
        raise InvalidRequestError(msg)


@router.post("/cameras/{camera_id}/replay", response_model=ReplayResult)
def replay_alerts(
    camera_id: CameraId, body: ReplayRequest, redis: RedisDep, settings: SettingsDep, _: ViewerDep
) -> ReplayResult:
    """What-if: the alerts the given parameters would have produced over the archived range (live state untouched).

    The replay starts idle at `start` and sees the scores the camera published (or, with `profile`, the archived
    smoothed values scored against that profile's current reference); frames held back live stay held back."""
    began = time.perf_counter()
    camera = existing_camera(redis, camera_id)
    _check_in_archive(redis, camera_id, body.start, body.end)
    overrides = body.model_dump(include={"threshold", "hysteresis", "min_duration_frames", "cooldown_frames"})
    current = AlertParams.merge(settings.alerts, camera.alerts).model_dump()
    params = AlertParams.model_validate({**current, **{k: v for k, v in overrides.items() if v is not None}})
    records = topics.read_signals(redis, camera_id, body.start, body.end)
    scores = records.scores
    if body.profile is not None:
        state = topics.load_scoring_state(redis, camera_id)
        stored = topics.load_reference(redis, camera_id)
        ref = stored.profiles.get(body.profile) if stored is not None else None
        if ref is None:
            msg = f"camera {camera_id!r} has not learned a {body.profile!r} reference (GET .../calibration shows them)"
            raise InvalidRequestError(msg)
        scores = ref.score(records.levels - state.calib.drift.get(body.profile, 0.0))  # uncapped: a close estimate
    run = ScoreRun.held(records.frames, records.ts, scores, records.alertable)
    alerts = replay(run, params, camera_id, records.models[-1] if records.models else "")[0]
    return ReplayResult(
        camera=camera_id,
        start=body.start,
        end=body.end,
        params=params,
        profile=body.profile,
        frames=len(records),
        held_back=int((~records.alertable).sum()),
        alerts=alerts,
        elapsed_s=time.perf_counter() - began,
    )


@router.post("/alerts/{alert_id}/feedback", response_model=Alert)
def alert_feedback(
    alert_id: AlertId,
    redis: RedisDep,
    settings: SettingsDep,
    role: OperatorDep,
    body: Annotated[FeedbackRequest, Body()],
) -> Alert:
    """An operator's verdict: `false_alarm` adds the alert's frames to the camera's normal reference (a new version),
    `confirmed` only records it. Given once per alert (409 after that); the alert's event stream shows it."""
    # With no admin key configured (dev) anyone may act: the verdict says so rather than naming a role.
    verdict = AlertFeedback(verdict=body.verdict, note=body.note, role=role.name.lower() if role else "anyone (dev)")
    try:
        alert = calibration.feedback(redis, alert_id, verdict, settings.alerts.retention_s)
    except LookupError as e:
        raise NotFoundError(str(e)) from e
    except calibration.CalibrationError as e:
        raise ConflictError(str(e)) from e
    ALERT_FEEDBACK.labels(alert.camera, body.verdict).inc()
    return alert

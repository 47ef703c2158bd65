"""Wire schemas (pydantic) of everything that crosses Redis: cameras, status, windows, scores, alerts.

Each top-level message carries `schema_version`; a reader refuses any other version with a
`SchemaVersionError`. Encoding to bytes happens only in `service/bus/topics/`.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.calibration.camera import CalibState, CameraReference, FrameState
from models.health.params import CheckName, HealthOverrides
from models.store import ModelRef
from service.alerts.schema import (
    DEFAULT_INCIDENT_GAP_S,
    DEFAULT_NOTIFY_MAX,
    DEFAULT_NOTIFY_PERIOD_S,
    AlertAck,
    AlertNotification,
    MuteWindow,
    TriageState,
    check_timezone,
)
from service.urls import check_camera_url, mask_credentials

__all__ = ["mask_credentials"]  # the one masking function (service/urls.py), re-exported where it always was

SCHEMA_VERSION = 1
CAMERA_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CAMERA_URL_MAX_LENGTH = 2048
MAX_ALERT_FRAMES = 1_000_000  # bound of alert durations and cooldowns: about 11 hours at 25 fps
MAX_INCIDENT_GAP_S = 7 * 24 * 3600  # bounds of the triage settings (AlertOverrides, Settings.alerts)
MAX_NOTIFY_PERIOD_S = 7 * 24 * 3600
MAX_MUTE_WINDOWS = 16

CameraKind = Literal["live", "file"]
SourceKind = Literal["live", "file", "job"]
StreamState = Literal["connecting", "streaming", "stalled", "error", "stopped"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = SCHEMA_VERSION


def _check_model_ref(ref: str) -> str:
    ModelRef.parse(ref)  # raises ValueError naming the allowed alphabet
    return ref


class AlertOverrides(BaseModel):
    """Per-camera alert parameters; None = use `Settings.alerts`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float | None = Field(default=None, gt=0, lt=1)
    hysteresis: float | None = Field(default=None, ge=0, lt=1)
    min_duration_frames: int | None = Field(default=None, ge=1, le=MAX_ALERT_FRAMES)
    cooldown_frames: int | None = Field(default=None, ge=0, le=MAX_ALERT_FRAMES)
    incident_gap_s: float | None = Field(default=None, ge=0, le=MAX_INCIDENT_GAP_S)
    notify_max: int | None = Field(default=None, ge=1, le=10_000)
    notify_period_s: float | None = Field(default=None, gt=0, le=MAX_NOTIFY_PERIOD_S)
    mute: list[MuteWindow] | None = Field(default=None, max_length=MAX_MUTE_WINDOWS)
    timezone: str | None = Field(default=None, max_length=64)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else check_timezone(v)


class AlertParams(BaseModel):
    """The effective alert parameters of a camera (overrides merged over `Settings.alerts`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float = Field(gt=0, lt=1)
    hysteresis: float = Field(ge=0, lt=1)
    min_duration_frames: int = Field(ge=1, le=MAX_ALERT_FRAMES)
    cooldown_frames: int = Field(ge=0, le=MAX_ALERT_FRAMES)
    # Triage (service/alerts/triage.py): incident grouping, flood control, mute windows.
    incident_gap_s: float = Field(default=DEFAULT_INCIDENT_GAP_S, ge=0, le=MAX_INCIDENT_GAP_S)
    notify_max: int = Field(default=DEFAULT_NOTIFY_MAX, ge=1, le=10_000)
    notify_period_s: float = Field(default=DEFAULT_NOTIFY_PERIOD_S, gt=0, le=MAX_NOTIFY_PERIOD_S)
    mute: list[MuteWindow] = Field(default_factory=list, max_length=MAX_MUTE_WINDOWS)
    timezone: str = Field(default="UTC", max_length=64)

    MACHINE_FIELDS: ClassVar[tuple[str, ...]] = ("threshold", "hysteresis", "min_duration_frames", "cooldown_frames")

    def describe(self) -> str:
        """The alert machine's parameters in one line, e.g. `threshold 0.5, hysteresis 0.1, ...`."""
        return ", ".join(f"{k} {getattr(self, k):g}" for k in self.MACHINE_FIELDS)

    @classmethod
    def merge(cls, defaults: Any, overrides: AlertOverrides | None) -> AlertParams:
        """`defaults` is `Settings.alerts` (or anything with the four attributes)."""
        data = {k: getattr(defaults, k) for k in cls.model_fields}
        if overrides is not None:
            data.update(overrides.model_dump(exclude_none=True))
        return cls.model_validate(data)


class CameraConfig(_Message):
    """A camera as stored in Redis. `url` may hold credentials: never log it or return it; use `public()`."""

    id: str
    url: str = Field(repr=False, max_length=CAMERA_URL_MAX_LENGTH)  # RTSP/HTTP(S) URL, file:// URL or absolute path
    model: str  # model ref: name, name@v3 or name@production
    enabled: bool = True
    kind: CameraKind = "live"  # live: drop oldest under backpressure; file: wait
    target_fps: float | None = Field(default=None, gt=0, le=240)  # decimate to this rate; None = native
    realtime: bool = True  # files: play at native rate (True) or as fast as the pipeline takes them
    alerts: AlertOverrides = AlertOverrides()
    health: HealthOverrides = HealthOverrides()  # per-check health settings over `Settings.health`

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not CAMERA_ID_RE.match(v):
            msg = f"invalid camera id {v!r}: use 1-64 of a-z, 0-9, '_', '-', starting with a letter or digit"
            raise ValueError(msg)
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_camera_url(v)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return _check_model_ref(v)

    @property
    def redacted_url(self) -> str:
        return mask_credentials(self.url)

    def public(self) -> dict[str, Any]:
        """What the API may show: everything but the URL, plus the URL with its password masked."""
        data = self.model_dump(mode="json", exclude={"url"})
        data["url"] = self.redacted_url
        return data


class ControlMsg(_Message):
    """Announced on CONTROL_CHANNEL when the camera registry changes; ingesters re-read the camera."""

    op: Literal["put", "delete"]
    camera: str


class CameraStatus(_Message):
    """Per-camera state written by the ingester that owns the camera, read by the API."""

    camera: str
    state: StreamState
    reason: str = ""  # why the state was entered (error text, credentials masked)
    owner: str = ""  # ingester id holding the lease
    fps: float = 0.0
    frames_decoded: int = 0
    frames_dropped: int = 0
    last_frame_ts: float | None = None  # unix seconds of the newest decoded frame
    reconnects: int = 0
    updated_ts: float = Field(default_factory=time.time)

    @field_validator("reason")
    @classmethod
    def _mask(cls, v: str) -> str:
        return mask_credentials(v)


class WindowMsg(_Message):
    """A window of frames for one model: `context` leading frames, then the N frames to score.

    `frames` is (T, h, w, C) uint8 with T = context + N; `pts` and `capture_ts` describe the N scored
    frames (seconds; capture_ts is wall-clock unix time, so latency is measurable end to end).
    `seq` is 0 until `topics.publish_window` assigns the camera's next sequence number.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    camera: str
    seq: int = Field(default=0, ge=0)
    model: str
    context: int = Field(ge=0)
    first_frame: int = Field(ge=0)  # frame index (in the camera's stream) of the first scored frame
    pts: list[float | None]
    capture_ts: list[float]
    source: SourceKind = "live"
    job_id: str | None = None
    # The ingester sampler that cut the window (new with each ingester taking the camera, or each model spec).
    # Frame numbers go on across samplers, but the frames before a handover are no continuous past of the ones
    # after it: per-frame state (the snippet history of VadCLIP-like models) is keyed by (camera, stream, frame).
    stream: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    # Camera health of the N scored frames (models/health): the flags (BITS) of each frame and of the `context`
    # frames its score is predicted from (0 = healthy), and its chroma as scene-profile evidence (None: the frame is
    # none, e.g. blank). None: not checked (an older ingester).
    health: list[int] | None = None
    chroma: list[float | None] | None = None
    frames: Annotated[np.ndarray, Field(repr=False)]

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return _check_model_ref(v)

    @model_validator(mode="after")
    def _shapes(self) -> WindowMsg:
        f = self.frames
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] not in (1, 3):
            msg = f"window frames must be uint8 (T, h, w, C) with C in (1, 3), got {f.dtype} {f.shape}"
            raise ValueError(msg)
        n = f.shape[0] - self.context
        if n < 1 or len(self.pts) != n or len(self.capture_ts) != n:
            msg = (
                f"a window of {f.shape[0]} frames with context {self.context} scores {n} frames, "
                f"but has {len(self.pts)} pts and {len(self.capture_ts)} capture times"
            )
            raise ValueError(msg)
        _check_health_lengths(n, self.health, self.chroma)
        return self

    @property
    def num_scored(self) -> int:
        return int(self.frames.shape[0]) - self.context


def _check_health_lengths(n: int, health: list[int] | None, chroma: list[float | None] | None) -> None:
    for name, values in (("health", health), ("chroma", chroma)):
        if values is not None and len(values) != n:
            msg = f"{name} must have one entry per scored frame ({n}), got {len(values)}"
            raise ValueError(msg)


class ScoreCalibration(BaseModel):
    """Which calibration produced a score (models/calibration/camera.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=0)  # the camera's reference version; 0 = none learned yet (the model card's frames)
    profile: str  # scene profile: "colour" (day) or "mono" (IR / grey)
    state: FrameState  # ready | learning | settling (after a profile switch); only ready frames can alert


class ScoreMsg(_Message):
    """The calibrated score of one frame, as published on the camera's score stream.

    `score` is 0.5 - 0.1 * log10(how often per hour the camera's normal footage reaches this level): 0.5 = about
    once an hour, 0.6 = once in 10 hours (models/calibration/reference.py).
    """

    camera: str
    frame: int  # frame index in the camera's stream
    seq: int  # window the frame came in
    score: float = Field(ge=0, le=1)
    signals: list[float]  # raw signals, in the model card's signal_names order
    model: str  # resolved name@version that scored it
    pts: float | None = None
    capture_ts: float
    published_ts: float
    source: SourceKind = "live"
    job_id: str | None = None
    calibration: ScoreCalibration | None = None
    alertable: bool = True  # False: held back (learning, settling): scored, but never opens or extends an alert
    health: list[CheckName] = Field(default_factory=list)  # health conditions that flagged it (never alertable)


Verdict = Literal["false_alarm", "confirmed"]


class AlertFeedback(BaseModel):
    """An operator's verdict on an alert: a false alarm's frames join the camera's normal reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    verdict: Verdict
    note: str = Field(default="", max_length=1000)
    role: str  # the role of the key that gave it (operator or admin)
    ts: float = Field(default_factory=time.time)
    frames: int = 0  # frames that joined the reference (false alarms)
    reference_version: int | None = None  # the camera reference version it produced


class Alert(_Message):
    """An anomalous span of one camera. `end_*` are None while the alert is open."""

    id: str
    camera: str
    model: str
    state: Literal["open", "closed"]
    start_frame: int
    start_ts: float  # capture time of the first frame
    end_frame: int | None = None  # last frame at or above threshold - hysteresis
    end_ts: float | None = None
    # pts (stream seconds) of the first and last frame, None where the source gives none: where its clip is cut
    start_pts: float | None = None
    end_pts: float | None = None
    peak_score: float
    peak_frame: int
    peak_pts: float | None = None  # pts of the peak frame: where in its clip the heatmap overlay belongs
    opened_frame: int | None = None  # the frame that completed min_duration_frames: when the alert fired
    updated_ts: float = Field(default_factory=time.time)
    feedback: AlertFeedback | None = None  # an operator's verdict (POST /alerts/{id}/feedback)
    ack: AlertAck | None = None  # acknowledged or resolved by an operator (POST /alerts/{id}/ack)
    incident: str | None = None  # the incident it belongs to (GET /incidents/{id})
    notification: AlertNotification | None = None  # notified (webhooks, MQTT) or not, and why
    # The path of its clip (GET /alerts/{id}/clip.mp4) once an ingester wrote one, partial while the alert is open;
    # filled in by the API from the clip's record (vigil:alert:<id>:clip), never stored with the alert.
    clip: str | None = None


class AlertClip(_Message):
    """An alert's clip as its ingester last wrote it (service/clips/): partial while the alert is open, final once
    the post-roll after its end was recorded."""

    alert: str
    camera: str
    state: Literal["partial", "final"]
    start_pts: float  # source pts (seconds) of its first and last frame
    end_pts: float
    frames: int
    bytes: int
    source: Literal["buffer", "file"]  # a live camera's packet buffer, or the recording (file camera, job)
    truncated: bool = False  # it ends before end + post-roll (clips.max_clip_s or the byte cap, a reconnect)
    updated_ts: float = Field(default_factory=time.time)


AlertEventKind = Literal["opened", "updated", "closed", "feedback", "acknowledged", "resolved"]


class AlertEvent(_Message):
    kind: AlertEventKind
    alert: Alert


class AlertPage(BaseModel):
    """One page of `list_alerts`: alerts changed after the cursor, oldest change first."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alerts: list[Alert]
    next_cursor: int  # pass as `since` to get the next page; equal to `since` when nothing is new


HealthState = Literal["ok", "unhealthy"]
HealthEventKind = Literal["raised", "cleared"]
HealthConditionName = CheckName


class HealthCondition(BaseModel):
    """One raised health condition of a camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    since_ts: float  # capture time of the frame that raised it
    detail: str = ""  # what the check saw then


class CameraHealth(_Message):
    """A camera's health as its ingester last wrote it: ok, or the raised conditions with since-when."""

    camera: str
    state: HealthState = "ok"
    conditions: dict[HealthConditionName, HealthCondition] = Field(default_factory=dict)
    updated_ts: float = Field(default_factory=time.time)


class HealthEvent(_Message):
    """A health condition raised or cleared (stream `vigil:health:events`, `/ws/health`, webhooks)."""

    kind: HealthEventKind
    camera: str
    condition: HealthConditionName
    ts: float  # capture time of the frame at which it was raised or cleared
    detail: str = ""
    since_ts: float | None = None  # cleared: when it was raised
    health: CameraHealth  # the camera's health after the event


class Heartbeat(_Message):
    """Liveness plus what the process is doing; stored with a TTL so a dead process disappears."""

    component: Literal["worker", "ingest", "api"]
    id: str
    pid: int
    host: str
    ts: float = Field(default_factory=time.time)
    activity: str = ""  # e.g. "scoring", "idle", "loading ffp-small@v3"
    details: dict[str, Any] = Field(default_factory=dict)


class ScoredWindow(_Message):
    """Raw signals of one window, stashed per camera until its turn comes (worker/ordering.py)."""

    camera: str
    seq: int
    model: str  # resolved name@version
    first_frame: int
    pts: list[float | None]
    capture_ts: list[float]
    raw: list[list[float]]  # (N, S) raw signals, larger = more anomalous; empty when `error` is set
    error: str | None = None  # the window could not be scored: its seq is passed over, nothing published
    source: SourceKind = "live"
    job_id: str | None = None
    health: list[int] | None = None  # the window's health flags and chroma (WindowMsg)
    chroma: list[float | None] | None = None


AlertPhase = Literal["idle", "pending", "active", "cooldown"]


class AlertTrack(BaseModel):
    """The alert state machine's per-camera state (service/alerts/machine.py), persisted between windows."""

    model_config = ConfigDict(extra="forbid")
    phase: AlertPhase = "idle"
    run_start_frame: int = 0  # first frame of the current run above threshold (pending/active)
    run_start_ts: float = 0.0
    run_len: int = 0  # frames in the current run
    run_peak: float = 0.0
    run_peak_frame: int = 0
    run_end_frame: int = 0  # newest frame of the run (at or above threshold - hysteresis while active)
    run_end_ts: float = 0.0
    run_start_pts: float | None = None  # pts of the run's first and newest frame (stream seconds), if known
    run_end_pts: float | None = None
    run_peak_pts: float | None = None
    cooldown_left: int = 0
    alert: Alert | None = None  # the open alert while active


class ScoringState(_Message):
    """Per-camera scoring state kept in Redis, so any worker can score any camera's next window."""

    next_seq: int = 1  # the next window sequence number to publish
    # Written by versions before per-camera calibration (the card's EMA); read and ignored so such states decode.
    ema: float | None = None
    ema_model: str | None = None
    gap_since: float | None = None  # unix time we started waiting for `next_seq` while later ones wait
    skipped: int = 0  # sequence numbers given up on so far
    track: AlertTrack = AlertTrack()
    calib: CalibState = CalibState()  # the camera calibration's per-frame state (smoothing, profile, drift, learning)
    calib_version: int = 0  # the camera reference version the state goes with (0 = none learned)
    triage: TriageState = TriageState()  # incident grouping and flood control (service/alerts/triage.py)


class CameraReferenceDoc(_Message):
    """The stored form of a camera's learned reference (keys.camera_reference_key)."""

    reference: CameraReference


JobState = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_CALIBRATION_PATTERN = r"^(card|learn|camera:[a-z0-9][a-z0-9_-]{0,63})$"
JOB_ID_RE = re.compile(r"^[0-9a-f]{16}$")


class JobRecord(_Message):
    """A batch re-scoring job as stored in Redis: written by the API (queued), then by the ingester running it.

    `input` is the absolute path the ingester reads (the upload in the job's folder, or a file under the
    footage root); the API never returns it. Frames before `context` get no score, as in `vigil score`.
    """

    id: str
    state: JobState = "queued"
    reason: str = ""  # why it failed, or what it is doing
    model: str  # resolved name@version, pinned at submission so an alias moving mid-job changes nothing
    source: Literal["upload", "path"]
    name: str  # the uploaded file's name, or the path as given
    input: str = Field(repr=False)
    owner: str = ""  # ingester id running it
    created_ts: float = Field(default_factory=time.time)
    started_ts: float | None = None
    finished_ts: float | None = None
    frames_total: int | None = None  # from the container at submission (may be an estimate), exact once read
    frames_scored: int = 0  # final count once done; while running the API counts the job's score stream
    context: int = Field(default=0, ge=0)
    alerts: int = 0  # alerts found (final count once done)
    calibration: str = Field(default="card", pattern=JOB_CALIBRATION_PATTERN)  # the reference it was scored on

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not JOB_ID_RE.match(v):
            msg = f"invalid job id {v!r}: 16 lowercase hex digits"
            raise ValueError(msg)
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return _check_model_ref(v)

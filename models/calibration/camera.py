"""Per-camera calibration: raw signals of consecutive frames -> scores on the camera's own normal reference.

One frame at a time, in order (so the result does not depend on how frames were cut into windows or chunks):

1. the model card's per-signal centre/scale/weights standardise and combine the raw signals (`card.combine`);
2. a causal EMA (`CalibrationParams.ema_alpha`) smooths them, restarted when the scene profile switches. Two run
   side by side: the *level* (every frame as it is), which learning, feedback and the archive use, and the *scored*
   one, into which a frame beyond the level that scores 0.99 enters at that level, so one extreme frame (tens of
   standardised units above normal) cannot hold the score up, and an alert open, for many frames after it;
3. the frame's *scene profile* ("colour" or "mono": day colour vs night IR / grey footage, from the frame's
   chroma, switched only after `switch_frames` frames on the other side) picks which reference applies;
4. the camera's reference of that profile (reference.py) turns the value, minus the profile's drift offset, into
   a score: 0.5 - 0.1 log10(expected rises to this level per hour of the camera's normal footage);
5. while a profile learns, or for `settle_frames` after a switch, frames are scored but not *alertable* (the alert
   machine never opens or extends an alert on them); learning frames are collected and, once `learn_s` seconds of
   stream time are in, fitted into a new reference version;
6. drift: each alertable frame that scores below the alert's close level moves the profile's offset towards the
   reference median by a bounded step, with time constant `drift_tau_s`, so slow level shifts (light, weather,
   a busier season) are followed while frames inside an anomaly (at or above the close level) are never absorbed.

The worker (service/worker/ordering.py) keeps `CalibState` in the camera's scoring state and the `CameraReference`
in its own Redis key; `vigil eval`/`vigil score` run the same class offline with the same inputs. Without a learned
reference, a profile is scored against the model card's held-out normal frames (`card_reference`), flagged learning.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.calibration.card import LEVELS, combine, smooth
from models.calibration.reference import SATURATION_SCORE, ProfileReference, fit_reference
from models.card import Calibration

Profile = Literal["colour", "mono"]
FrameState = Literal["ready", "learning", "settling"]
CARD_FALLBACK_FPS = 25.0  # hourly rates of a card without recorded footage rate (older cards) assume this rate


class CalibrationParams(BaseModel):
    """How a camera calibrates itself; `Settings.calibration` in the service, the same defaults offline."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ema_alpha: float = Field(default=0.2, gt=0, le=1)  # weight of the newest frame in the smoothed signal
    learn_s: float = Field(default=180.0, gt=0, le=86_400)  # stream seconds a profile learns from
    min_learn_frames: int = Field(default=200, ge=20, le=1_000_000)
    max_learn_frames: int = Field(default=20_000, ge=100, le=1_000_000)  # bounds the learning buffer
    # Time constant of the level tracking. 5 min follows a level rising by 3 over 30 min with 32 short alerts (0.9%
    # of the time in alerts) where 10 min gives 225 (9.7%); frames in alerts never move it, so a 5-minute anomaly
    # stays one alert (scripts/calibration_drift.py, docs/RESULTS.md).
    drift_tau_s: float = Field(default=300.0, gt=0, le=30 * 86_400)
    num_quantiles: int = Field(default=512, ge=16, le=4096)
    tail_share: float = Field(default=0.02, gt=0, lt=0.5)
    feedback_weight: float = Field(default=10.0, gt=0, le=1000)  # learned frames one false-alarm frame counts as
    mono_below: float = Field(default=4.0, ge=0, le=255)  # chroma at or below which a frame looks mono (IR, grey)
    colour_above: float = Field(default=8.0, ge=0, le=255)  # chroma above which it looks colour
    switch_frames: int = Field(default=15, ge=1, le=10_000)  # frames on the other side before the profile switches
    settle_frames: int = Field(default=15, ge=0, le=10_000)  # frames held back after a switch


class LearningState(BaseModel):
    """A profile collecting frames for a new reference."""

    model_config = ConfigDict(extra="forbid")
    reason: str  # "new camera", "model changed", "new scene profile", "requested"
    target_s: float = Field(gt=0)
    frames: int = 0
    seconds: float = 0.0  # stream time covered, gaps longer than a second not counted
    last_t: float | None = None
    started_ts: float = Field(default_factory=time.time)


class CalibState(BaseModel):
    """The small, per-frame part of a camera's calibration, persisted with its scoring state."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None  # resolved model the EMA, offsets and reference belong to
    ema: float | None = None  # the smoothed level (every frame as it is)
    ema_scored: float | None = None  # the smoothed value that is scored (frames capped at the 0.99 level)
    profile: Profile | None = None  # active scene profile
    candidate: Profile | None = None  # the other profile while frames argue for a switch
    candidate_frames: int = 0
    settle_left: int = 0
    learning: dict[str, LearningState] = Field(default_factory=dict)  # profile -> learning in progress
    drift: dict[str, float] = Field(default_factory=dict)  # profile -> offset subtracted before scoring
    last_version: int = 0  # the newest reference version issued for this camera (any model): versions only grow


class CameraReference(BaseModel):
    """The learned references of one camera, versioned: a new version with every learning, range fit or feedback."""

    model_config = ConfigDict(extra="forbid")
    model: str  # resolved name@version whose signals the references describe
    version: int = Field(ge=1)
    profiles: dict[str, ProfileReference] = Field(default_factory=dict)
    updated_ts: float = Field(default_factory=time.time)


class LearnBuffer(Protocol):
    """Where a learning profile's values gather (a Redis string live, a list offline)."""

    def extend(self, profile: str, values: list[float]) -> None: ...

    def values(self, profile: str) -> np.ndarray: ...

    def clear(self, profile: str) -> None: ...


@dataclass
class MemoryLearnBuffer:
    """Offline learning buffer. Values are kept as float32, as the live one (a Redis string of float32) keeps them,
    so a reference learned offline is the one a camera learns from the same frames."""

    data: dict[str, list[float]] = field(default_factory=dict)

    def extend(self, profile: str, values: list[float]) -> None:
        self.data.setdefault(profile, []).extend(np.asarray(values, dtype=np.float32).tolist())

    def values(self, profile: str) -> np.ndarray:
        return np.asarray(self.data.get(profile, []), dtype=np.float64)

    def clear(self, profile: str) -> None:
        self.data.pop(profile, None)


@dataclass(frozen=True)
class ScoredFrames:
    """What `CameraCalibrator.step` produced for N consecutive frames."""

    scores: np.ndarray  # (N,) in [0, 1)
    values: np.ndarray  # (N,) the scored smoothed value minus drift: what the reference scored
    levels: np.ndarray  # (N,) the smoothed level (no cap, no drift): what references learn and feedback adds from
    drifts: np.ndarray  # (N,) the profile's drift offset the frame was scored with
    alertable: np.ndarray  # (N,) bool: may open or extend an alert
    states: list[FrameState]
    profiles: list[Profile]
    version: int  # reference version after the step (0 = none learned)
    fitted: list[str]  # profiles whose learning finished in this step


def card_reference(card: Calibration, params: CalibrationParams) -> ProfileReference:
    """The model card's held-out normal frames as a reference (what a camera uses until it has learned its own)."""
    if card.normal_values:
        parts = np.split(np.asarray(card.normal_values), np.cumsum(card.normal_segments)[:-1])
        smoothed = [smooth(p, params.ema_alpha) for p in parts if len(p)]
        return fit_reference(
            smoothed,
            card.normal_fps or CARD_FALLBACK_FPS,
            f"model card: {card.source}",
            num_quantiles=params.num_quantiles,
            tail_share=params.tail_share,
            min_frames=2,
            feedback_weight=params.feedback_weight,
        )
    # Older cards keep only CDF quantiles (of the card's own smoothing): rebuild evenly spaced ranks from them.
    ranks = (np.arange(101) + 0.5) / 101
    values = np.interp(ranks, np.asarray(card.levels or LEVELS), np.asarray(card.quantiles))
    run = (2 - card.ema_alpha) / card.ema_alpha
    ref = fit_reference([values], CARD_FALLBACK_FPS, f"model card quantiles: {card.source}", min_frames=2)
    return ref.model_copy(update={"run_frames": max(run, 1.0), "frames": max(card.num_frames, 2)})


def profile_of(chroma: float | None, current: Profile | None, params: CalibrationParams) -> Profile:
    """The profile a frame's chroma argues for; between the two bounds it keeps the current one."""
    if chroma is None or not math.isfinite(chroma):
        return current or "colour"
    if chroma <= params.mono_below:
        return "mono"
    if chroma > params.colour_above:
        return "colour"
    return current or ("mono" if chroma <= (params.mono_below + params.colour_above) / 2 else "colour")


class CameraCalibrator:
    """Steps one camera's calibration over its frames (module docstring). Holds no I/O: state and reference come in
    and go out, learning values go through a `LearnBuffer`."""

    def __init__(
        self,
        card: Calibration,
        model: str,
        params: CalibrationParams,
        state: CalibState | None = None,
        reference: CameraReference | None = None,
        buffer: LearnBuffer | None = None,
        fallback: ProfileReference | None = None,
    ) -> None:
        self.card, self.model, self.params = card, model, params
        self.state = state.model_copy(deep=True) if state is not None else CalibState()
        self.reference = reference if reference is not None and reference.model == model else None
        self.buffer = buffer if buffer is not None else MemoryLearnBuffer()
        self.fallback = fallback if fallback is not None else card_reference(card, params)
        if self.state.model != model:  # a new model: nothing learned for the old one applies
            self.state = CalibState(model=model, last_version=self.state.last_version)

    @property
    def version(self) -> int:
        return self.reference.version if self.reference is not None else 0

    def request_learning(self, profiles: list[str], seconds: float, reason: str) -> None:
        """Start (or restart) learning of the given profiles from the next frames on."""
        for p in profiles:
            self.state.learning[p] = LearningState(reason=reason, target_s=seconds)
            self.buffer.clear(p)

    def step(
        self,
        raw: np.ndarray,
        times: np.ndarray,
        close_level: float,
        chroma: np.ndarray | None = None,
        usable: np.ndarray | None = None,
    ) -> ScoredFrames:
        """Score N consecutive frames.

        Args:
            raw: (N, S) raw signals in the card's signal order.
            times: (N,) stream time of each frame in seconds (pts, else capture time).
            close_level: the alert close level (threshold - hysteresis): drift learns only from alertable frames
                scoring below it, i.e. from frames outside alerts.
            chroma: (N,) colourfulness of each frame (None: unknown, the profile stays as it is).
            usable: (N,) False for frames a health check flagged: scored, never alertable, never learned from, and
                kept out of the smoothing (a broken frame's error would otherwise hold the score up after it).
        """
        x = combine(self.card, np.asarray(raw, dtype=np.float64))
        n = len(x)
        usable = np.ones(n, dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
        scores, values, levels, drifts = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        alertable = np.zeros(n, dtype=bool)
        states: list[FrameState] = []
        profiles: list[Profile] = []
        fitted: list[str] = []
        alpha = self.params.ema_alpha
        for i in range(n):
            profile = self._switch(None if chroma is None else float(chroma[i]))
            s = self.state
            ref = self._reference(profile)
            drift = s.drift.get(profile, 0.0)
            xi = float(x[i])
            capped = min(xi, ref.level_at_score(SATURATION_SCORE) + drift)  # see the module docstring (2.)
            ema = xi if s.ema is None else alpha * xi + (1 - alpha) * s.ema
            ema_scored = capped if s.ema_scored is None else alpha * capped + (1 - alpha) * s.ema_scored
            if usable[i]:  # a flagged frame is scored but stays out of the smoothing: the frames after it start clean
                s.ema, s.ema_scored = ema, ema_scored
            v = ema_scored - drift
            score = float(ref.score(np.array([v]))[0])
            learning = s.learning.get(profile)
            state: FrameState = "learning" if learning is not None else "settling" if s.settle_left > 0 else "ready"
            s.settle_left = max(0, s.settle_left - 1)
            if learning is not None and usable[i] and self._learn(profile, learning, ema, float(times[i])):
                fitted.append(profile)
            ok = state == "ready" and bool(usable[i])
            if ok and score < close_level:
                step = float(np.clip(v - ref.median, -ref.spread, ref.spread))
                s.drift[profile] = s.drift.get(profile, 0.0) + step / (self.params.drift_tau_s * ref.fps)
            scores[i], values[i], levels[i], drifts[i], alertable[i] = score, v, ema, drift, ok
            states.append(state)
            profiles.append(profile)
        return ScoredFrames(scores, values, levels, drifts, alertable, states, profiles, self.version, fitted)

    # --- internals -------------------------------------------------------------------------------------------

    def _reference(self, profile: str) -> ProfileReference:
        if self.reference is not None and profile in self.reference.profiles:
            return self.reference.profiles[profile]
        return self.fallback

    def _switch(self, chroma: float | None) -> Profile:
        """Update the active profile from one frame's chroma; a switch restarts smoothing and holds frames back."""
        s, p = self.state, self.params
        wanted = profile_of(chroma, s.profile, p)
        if s.profile is None:
            s.profile = wanted
            self._ensure_learned(wanted, "new camera" if self.reference is None else "new scene profile")
        elif wanted == s.profile:
            s.candidate, s.candidate_frames = None, 0
        else:
            s.candidate_frames = s.candidate_frames + 1 if s.candidate == wanted else 1
            s.candidate = wanted
            if s.candidate_frames >= p.switch_frames:
                s.profile, s.candidate, s.candidate_frames = wanted, None, 0
                s.ema, s.ema_scored, s.settle_left = None, None, p.settle_frames
                self._ensure_learned(wanted, "new scene profile")
        return s.profile

    def _ensure_learned(self, profile: str, reason: str) -> None:
        known = self.reference is not None and profile in self.reference.profiles
        if not known and profile not in self.state.learning:
            self.request_learning([profile], self.params.learn_s, reason)

    def _learn(self, profile: str, learning: LearningState, value: float, t: float) -> bool:
        """Collect one frame; True when the profile has learned enough and got its new reference."""
        if learning.last_t is not None and math.isfinite(t):
            learning.seconds += min(max(t - learning.last_t, 0.0), 1.0)
        learning.last_t = t if math.isfinite(t) else learning.last_t
        learning.frames += 1
        self.buffer.extend(profile, [value])
        enough_time = learning.seconds >= learning.target_s and learning.frames >= self.params.min_learn_frames
        if not (enough_time or learning.frames >= self.params.max_learn_frames):
            return False
        fps = (learning.frames - 1) / learning.seconds if learning.seconds > 0 else CARD_FALLBACK_FPS
        ref = fit_reference(
            [self.buffer.values(profile)],
            fps,
            f"{learning.frames} live frames ({learning.seconds:.0f} s), {learning.reason}",
            num_quantiles=self.params.num_quantiles,
            tail_share=self.params.tail_share,
            min_frames=self.params.min_learn_frames,
            feedback_weight=self.params.feedback_weight,
        )
        self.install(profile, ref)
        del self.state.learning[profile]
        self.buffer.clear(profile)
        return True

    def install(self, profile: str, ref: ProfileReference) -> None:
        """Make `ref` the profile's reference in a new reference version; its drift starts from zero."""
        profiles = dict(self.reference.profiles) if self.reference is not None else {}
        profiles[profile] = ref
        version = max(self.state.last_version, self.version) + 1
        self.reference = CameraReference(model=self.model, version=version, profiles=profiles)
        self.state.last_version = version
        self.state.drift[profile] = 0.0


def smoothed_segments(card: Calibration, raw_segments: list[np.ndarray], alpha: float) -> list[np.ndarray]:
    """Raw signals of separate recordings -> their smoothed combined values, the EMA restarted per recording."""
    return [smooth(combine(card, np.asarray(r, dtype=np.float64)), alpha) for r in raw_segments if len(r)]


def fit_from_footage(
    card: Calibration, raw_segments: list[np.ndarray], fps: float, params: CalibrationParams, source: str
) -> ProfileReference:
    """A reference from footage marked normal (separate recordings, each (N_i, S) raw signals)."""
    return fit_reference(
        smoothed_segments(card, raw_segments, params.ema_alpha),
        fps,
        source,
        num_quantiles=params.num_quantiles,
        tail_share=params.tail_share,
        min_frames=params.min_learn_frames,
        feedback_weight=params.feedback_weight,
    )

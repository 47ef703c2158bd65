"""Changes to a camera's calibration from outside the worker: relearn, install a reference, operator feedback.

Each runs under the camera's drain lock (`keys.camera_lock_key`, the workers' own lock) and writes the reference
and the scoring state in one transaction, so a worker never scores half of a change and a change never lands
between a worker's read and its write. The math is models/calibration; the archive it reads is the per-frame
signal record the workers keep (`topics.read_signals`).
"""

from __future__ import annotations

import time

import redis

from models.calibration.camera import CalibrationParams, CameraReference, LearningState
from models.calibration.reference import ProfileReference, fit_reference
from service.alerts.annotate import Change, change_alert
from service.bus import keys, topics
from service.bus.topics.calibration import PROFILE_CODES, STATE_CODES
from service.errors import VigilServiceError
from service.locks import CameraBusyError, camera_lock  # noqa: F401  (CameraBusyError: imported from here too)
from service.messages import Alert, AlertFeedback, ScoringState


class CalibrationError(VigilServiceError):
    """A calibration change that cannot be made (no frames in range, unknown profile, nothing learned yet)."""


def _write(r: redis.Redis, camera: str, state: ScoringState, reference: CameraReference | None) -> None:
    pipe = r.pipeline(transaction=True)
    if reference is not None:
        topics.save_reference(pipe, camera, reference)
    topics.save_scoring_state(pipe, camera, state)
    pipe.execute()


def install(
    r: redis.Redis, camera: str, model: str, profiles: dict[str, ProfileReference]
) -> tuple[CameraReference, ScoringState]:
    """Make `profiles` the camera's references for `model` in a new version (other profiles of the same model are
    kept); their drift restarts at zero and any learning of them ends. Returns the new reference and state."""
    with camera_lock(r, camera):
        state = topics.load_scoring_state(r, camera)
        stored = topics.load_reference(r, camera)
        calib = state.calib.model_copy(deep=True)
        if calib.model != model:  # the worker would reset a state of another model anyway: start it clean here
            calib = type(calib)(model=model, last_version=calib.last_version)
        kept = dict(stored.profiles) if stored is not None and stored.model == model else {}
        version = max(calib.last_version, stored.version if stored is not None else 0) + 1
        reference = CameraReference(model=model, version=version, profiles={**kept, **profiles})
        for p in profiles:
            calib.drift[p] = 0.0
            calib.learning.pop(p, None)
        calib.last_version = version
        state = state.model_copy(update={"calib": calib, "calib_version": version})
        pipe = r.pipeline(transaction=True)
        for p in profiles:
            pipe.delete(keys.camera_learning_key(camera, p))
        pipe.execute()
        _write(r, camera, state, reference)
        return reference, state


def request_learning(r: redis.Redis, camera: str, seconds: float, profiles: list[str], reason: str) -> ScoringState:
    """Learn the given profiles again from the camera's next frames (alerts held back meanwhile)."""
    with camera_lock(r, camera):
        state = topics.load_scoring_state(r, camera)
        calib = state.calib.model_copy(deep=True)
        for p in profiles:
            calib.learning[p] = LearningState(reason=reason, target_s=seconds)
        pipe = r.pipeline(transaction=True)
        for p in profiles:
            pipe.delete(keys.camera_learning_key(camera, p))
        topics.save_scoring_state(pipe, camera, state.model_copy(update={"calib": calib}))
        pipe.execute()
        return state.model_copy(update={"calib": calib})


def fit_range(
    r: redis.Redis, camera: str, start_ts: float, end_ts: float, params: CalibrationParams
) -> tuple[str, dict[str, ProfileReference]]:
    """References of every scene profile seen in the archived frames of [start_ts, end_ts] that are usable (not
    flagged by a health check), learned from their smoothed values. Returns (model, profile -> reference)."""
    records = topics.read_signals(r, camera, start_ts, end_ts)
    if not len(records):
        msg = f"camera {camera!r} has no archived frames between {start_ts:.3f} and {end_ts:.3f}"
        raise CalibrationError(msg)
    model = records.models[-1]
    if len(records.models) > 1:  # values of another model mean something else: learn from the newest only
        msg = f"the range spans models {', '.join(records.models)}; choose a range scored by one model only"
        raise CalibrationError(msg)
    span = float(records.ts[-1] - records.ts[0])
    fps = (len(records) - 1) / span if span > 0 else 25.0
    out: dict[str, ProfileReference] = {}
    start_text, end_text = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) for t in (start_ts, end_ts))
    when = f"{start_text} to {end_text}"
    for code, profile in enumerate(PROFILE_CODES):
        levels = records.levels[(records.profiles == code) & (records.states != STATE_CODES.index("settling"))]
        if len(levels) < params.min_learn_frames:
            continue
        out[profile] = fit_reference(
            [levels],
            fps,
            f"{len(levels)} archived frames, {when} UTC",
            num_quantiles=params.num_quantiles,
            tail_share=params.tail_share,
            min_frames=params.min_learn_frames,
            feedback_weight=params.feedback_weight,
        )
    if not out:
        msg = (
            f"the range holds {len(records)} frames, fewer than calibration.min_learn_frames "
            f"({params.min_learn_frames}) of any one scene profile; choose a longer range"
        )
        raise CalibrationError(msg)
    return model, out


def feedback(r: redis.Redis, alert_id: str, verdict: AlertFeedback, retention_s: int) -> Alert:
    """Record an operator's verdict on an alert, once. A false alarm's frames (their scored values, per scene profile)
    join the camera's reference in a new version, so a repeat of the same level scores far below where it alerted.
    The check for an earlier verdict, the reference, the scoring state (whose open alert carries the verdict on into
    later events) and the alert event commit together (service/alerts/annotate.py)."""

    def apply(alert: Alert, state: ScoringState) -> Change:
        if alert.feedback is not None:
            msg = f"alert {alert.id} already has feedback ({alert.feedback.verdict}); a verdict is given once"
            raise CalibrationError(msg)
        reference, frames = None, 0
        if verdict.verdict == "false_alarm":
            reference, frames = _with_false_alarm(r, alert, state)
            version = reference.version
            state = state.model_copy(
                update={"calib": state.calib.model_copy(update={"last_version": version}), "calib_version": version}
            )
        given = verdict.model_copy(
            update={"frames": frames, "reference_version": reference.version if reference else None}
        )
        return Change(alert.model_copy(update={"feedback": given}), state, reference)

    return change_alert(r, alert_id, "feedback", retention_s, apply)


def _with_false_alarm(r: redis.Redis, alert: Alert, state: ScoringState) -> tuple[CameraReference, int]:
    """The camera's reference with the alert's alertable frames added as false-alarm values, as a new version."""
    stored = topics.load_reference(r, alert.camera)
    end = alert.end_ts if alert.end_ts is not None else time.time()
    records = topics.read_signals(r, alert.camera, alert.start_ts, end)
    last = alert.end_frame if alert.end_frame is not None else 2**62
    records = records.select((records.frames >= alert.start_frame) & (records.frames <= last) & records.alertable)
    if stored is None or stored.model != alert.model or not len(records):
        msg = (
            f"alert {alert.id}: the camera has no learned reference of {alert.model} or the alert's frames left the "
            "signal archive (calibration.replay_retention_s), so they cannot join it; nothing was recorded"
        )
        raise CalibrationError(msg)
    profiles, frames = dict(stored.profiles), 0
    for code, profile in enumerate(PROFILE_CODES):
        # The frames' own levels (not the values the score was capped to): a repeat of a saturating false alarm
        # must land on them, however far beyond the 0.99 level it went.
        values = (records.levels - records.drifts)[records.profiles == code]
        if len(values) and profile in profiles:
            profiles[profile] = profiles[profile].with_feedback(values)
            frames += len(values)
    version = max(state.calib.last_version, stored.version) + 1
    return CameraReference(model=stored.model, version=version, profiles=profiles), frames

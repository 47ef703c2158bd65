"""The camera calibration (models/calibration/{reference,camera}.py): the rate scale, learning, drift, profiles,
saturation, feedback, and that frames cut into windows any way give the same scores."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import fit_calibration
from models.calibration.camera import (
    CalibrationParams,
    CameraCalibrator,
    CameraReference,
    card_reference,
    fit_from_footage,
    profile_of,
)
from models.calibration.reference import fit_reference, rate_to_score, score_to_rate

FPS = 10.0
PARAMS = CalibrationParams(learn_s=30.0, min_learn_frames=100, drift_tau_s=60.0, switch_frames=5, settle_frames=5)


def _ar1(n: int, seed: int, rho: float = 0.8) -> np.ndarray:
    """Correlated normal noise, like a smoothed per-frame error (unit variance)."""
    from scipy.signal import lfilter

    noise = np.random.default_rng(seed).normal(size=n) * np.sqrt(1 - rho**2)
    return np.asarray(lfilter([1.0], [1.0, -rho], noise))


def _level(ref, score: float) -> float:  # type: ignore[no-untyped-def]
    """The value the reference scores `score` (bisection: the score is increasing in the value)."""
    lo, hi = -100.0, 100.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ref.score(np.array([mid]))[0] < score else (lo, mid)
    return hi


CARD = fit_calibration(np.random.default_rng(0).normal(10.0, 2.0, (500, 1)), ["err"], fps=FPS)


def _raw(z: np.ndarray) -> np.ndarray:
    """Standardised values -> raw signals the card maps back onto them."""
    s = CARD.signals[0]
    return (s.center + s.scale * np.asarray(z))[:, None]


def test_score_scale_is_a_fixed_map_of_hourly_rate() -> None:
    assert rate_to_score(np.array([1.0]))[0] == pytest.approx(0.5)
    assert rate_to_score(np.array([10.0]))[0] == pytest.approx(0.4)
    assert rate_to_score(np.array([0.1]))[0] == pytest.approx(0.6)
    assert rate_to_score(np.array([1e9]))[0] == 0.0
    rates = np.logspace(-30, 6, 400)
    scores = rate_to_score(rates)
    assert (np.diff(scores[::-1]) >= 0).all()
    assert scores.max() < 1.0
    for score in (0.1, 0.35, 0.5, 0.8, 0.95, 0.999):
        assert rate_to_score(np.array([score_to_rate(score)]))[0] == pytest.approx(score)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        score_to_rate(1.0)


def test_reference_predicts_how_often_held_out_normal_footage_rises() -> None:
    """Learn on 2 h of correlated normal noise, then count rises in 20 h more: the scale's rate is right within 2x
    at levels from 1000/h down to about 3/h (where 20 h still has some 60 rises)."""
    learn, test = _ar1(72_000, 1), _ar1(720_000, 2)
    ref = fit_reference([learn], FPS, "noise")
    survival = ref.survival(np.sort(learn)[::7])
    assert (np.diff(survival) <= 0).all()
    for score in (0.2, 0.3, 0.4, 0.45):
        above = test > _level(ref, score)
        runs = int(np.sum(above[1:] & ~above[:-1]))
        measured = runs / (len(test) / FPS / 3600)
        assert score_to_rate(score) / 2 < measured < score_to_rate(score) * 2, (score, measured)


def test_fit_refuses_too_few_or_broken_frames() -> None:
    with pytest.raises(ValueError, match="at least 50 normal frames, got 10"):
        fit_reference([np.zeros(10)], FPS, "x")
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_reference([np.r_[np.zeros(60), np.nan]], FPS, "x")


def test_feedback_pushes_the_false_alarm_level_below_the_close_level() -> None:
    ref = fit_reference([_ar1(1800, 3)], FPS, "3 min")
    alarm = np.full(20, ref.level_at_score(0.6))
    assert ref.score(alarm).min() > 0.55
    after = ref.with_feedback(alarm)
    assert after.score(alarm).max() < 0.4  # below the default close level (threshold 0.5 - hysteresis 0.1)
    assert after.score(alarm + 3 * ref.spread).max() > after.score(alarm).max()  # still ranked above it


def test_new_camera_learns_holds_alerts_back_then_scores_on_its_own_reference() -> None:
    calibrator = CameraCalibrator(CARD, "m@v1", PARAMS)
    z = 3.0 + _ar1(600, 4)  # this camera's normal level sits 3 card units above the card's frames
    out = calibrator.step(_raw(z), np.arange(600) / FPS, close_level=0.4)
    learning = np.array([s == "learning" for s in out.states])
    assert learning[:299].all()
    assert not learning[301:].any()
    assert not out.alertable[learning].any()
    assert out.alertable[~learning].all()
    assert out.version == 1
    assert out.fitted == ["colour"]
    assert calibrator.reference is not None
    assert calibrator.reference.profiles["colour"].frames == 301  # 30.0 s of frames 0.1 s apart
    assert np.median(out.scores[:300]) > 0.5  # against the card, this camera's normal level looks rare
    assert np.median(out.scores[310:]) < 0.3  # against its own reference, it is normal


@pytest.mark.parametrize("cut", [1, 7, 64, 1000])
def test_scores_do_not_depend_on_how_frames_are_cut(cut: int) -> None:
    z = np.r_[3.0 + _ar1(500, 5), 9.0 + _ar1(40, 6), 3.5 + _ar1(300, 7)]
    chroma = np.r_[np.full(450, 20.0), np.full(390, 1.0)]  # a switch to mono half way
    whole = CameraCalibrator(CARD, "m@v1", PARAMS).step(_raw(z), np.arange(len(z)) / FPS, 0.4, chroma)
    calibrator = CameraCalibrator(CARD, "m@v1", PARAMS)
    parts = [
        calibrator.step(_raw(z[i : i + cut]), np.arange(i, min(i + cut, len(z))) / FPS, 0.4, chroma[i : i + cut])
        for i in range(0, len(z), cut)
    ]
    np.testing.assert_array_equal(np.concatenate([p.scores for p in parts]), whole.scores)
    assert [s for p in parts for s in p.states] == whole.states


def test_drift_follows_a_slow_shift_but_not_an_anomaly() -> None:
    learned = fit_reference([_ar1(3000, 8)], FPS, "x")
    reference = CameraReference(model="m@v1", version=1, profiles={"colour": learned})
    n = 6000  # 10 minutes: the level rises by 4 (the tau is 60 s)
    slow = _ar1(n, 9) + np.linspace(0.0, 4.0, n)
    out = CameraCalibrator(CARD, "m@v1", PARAMS, reference=reference).step(_raw(slow), np.arange(n) / FPS, 0.4)
    assert np.median(out.scores[-600:]) < 0.3  # followed: the last minute scores as normal
    frozen = CameraCalibrator(CARD, "m@v1", PARAMS.model_copy(update={"drift_tau_s": 1e6}), reference=reference)
    assert np.median(frozen.step(_raw(slow), np.arange(n) / FPS, 0.4).scores[-600:]) > 0.4  # not followed
    # A 5-minute anomaly far above the close level: scored as an anomaly to its end, and the drift did not move.
    calibrator = CameraCalibrator(CARD, "m@v1", PARAMS, reference=reference)
    anomaly = 8.0 + _ar1(3000, 10)
    long = calibrator.step(_raw(anomaly), np.arange(3000) / FPS, 0.4)
    assert long.scores[20:].min() > 0.5  # at or above the default threshold throughout
    assert calibrator.state.drift.get("colour", 0.0) == 0.0  # no frame of it was below the close level


def test_profiles_switch_with_hysteresis_settle_and_learn() -> None:
    assert profile_of(1.0, "colour", PARAMS) == "mono"
    assert profile_of(20.0, "mono", PARAMS) == "colour"
    assert profile_of(6.0, "mono", PARAMS) == "mono"
    assert profile_of(6.0, "colour", PARAMS) == "colour"
    ref = fit_reference([_ar1(3000, 11)], FPS, "day")
    day = CameraReference(model="m@v1", version=1, profiles={"colour": ref})
    calibrator = CameraCalibrator(CARD, "m@v1", PARAMS, reference=day)
    chroma = np.r_[np.full(100, 20.0), [1.0, 1.0, 20.0], np.full(400, 1.0)]  # a 2-frame blip, then night
    z = np.r_[_ar1(103, 12), 4.0 + _ar1(400, 13)]  # IR footage has another level
    out = calibrator.step(_raw(z), np.arange(len(z)) / FPS, 0.4, chroma)
    assert out.profiles[:107] == ["colour"] * 107  # the blip and the first 4 night frames do not switch it
    assert out.profiles[107:] == ["mono"] * 396
    assert set(out.states[:103]) == {"ready"}
    assert set(out.states[107:407]) == {"learning"}  # a new profile learns; its settling frames are inside
    assert out.fitted == ["mono"]
    assert calibrator.reference is not None
    assert set(calibrator.reference.profiles) == {"colour", "mono"}
    assert np.median(out.scores[420:]) < 0.3


def test_extreme_frames_do_not_hold_the_score_up_after_they_end() -> None:
    ref = fit_reference([_ar1(3000, 14)], FPS, "x")
    reference = CameraReference(model="m@v1", version=1, profiles={"colour": ref})
    z = np.r_[_ar1(50, 15), np.full(20, 500.0), _ar1(50, 16)]
    out = CameraCalibrator(CARD, "m@v1", PARAMS, reference=reference).step(_raw(z), np.arange(120) / FPS, 0.4)
    assert out.scores[60:70].min() > 0.95
    assert (out.scores[82:] < 0.4).all()  # without the clip, 0.8**12 * 500 would still be far above normal


def test_card_reference_from_new_and_old_cards() -> None:
    new = card_reference(CARD, PARAMS)
    assert new.frames == 500
    assert new.fps == FPS
    old = CARD.model_copy(update={"normal_values": [], "normal_segments": [], "normal_fps": None})
    rebuilt = card_reference(old, PARAMS)
    assert rebuilt.fps == 25.0
    assert rebuilt.frames == 500
    assert rebuilt.score(np.array([0.0]))[0] < 0.3
    assert rebuilt.score(np.array([8.0]))[0] > 0.5


def test_model_change_drops_what_was_learned_but_versions_keep_growing() -> None:
    calibrator = CameraCalibrator(CARD, "m@v1", PARAMS)
    calibrator.step(_raw(_ar1(400, 17)), np.arange(400) / FPS, 0.4)
    assert calibrator.version == 1
    again = CameraCalibrator(CARD, "m@v2", PARAMS, state=calibrator.state, reference=calibrator.reference)
    assert again.reference is None
    assert again.state.model == "m@v2"
    out = again.step(_raw(_ar1(400, 18)), np.arange(400) / FPS, 0.4)
    assert out.states[0] == "learning"
    assert out.version == 2


def test_fit_from_footage_restarts_smoothing_per_recording() -> None:
    ref = fit_from_footage(CARD, [_raw(_ar1(300, 19)), _raw(5 + _ar1(300, 20))], FPS, PARAMS, "two recordings")
    assert ref.frames == 600
    assert ref.source == "two recordings"


def test_frames_flagged_by_a_health_check_stay_out_of_the_smoothing() -> None:
    """A broken burst (decoder garbage) is scored, never alertable, and leaves no trace in the frames after it."""
    z = _ar1(400, seed=21)
    ref = fit_reference([z], FPS, "test", min_frames=100)
    reference = CameraReference(model="m@v1", version=1, profiles={"colour": ref})
    broken = z.copy()
    broken[200:230] = 40.0  # far beyond anything normal
    usable = np.ones(400, dtype=bool)
    usable[200:230] = False
    t = np.arange(400) / FPS
    out = CameraCalibrator(CARD, "m@v1", PARAMS, reference=reference).step(_raw(broken), t, 0.4, usable=usable)
    kept = np.r_[0:200, 230:400]  # the same camera had the burst never been sent
    without = CameraCalibrator(CARD, "m@v1", PARAMS, reference=reference).step(_raw(z[kept]), t[kept], 0.4)
    assert not out.alertable[200:230].any()
    np.testing.assert_allclose(out.scores[kept], without.scores)

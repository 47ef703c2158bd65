"""The alert state machine as tables: score sequences in, alert events and spans out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.alerts.machine import FrameScore, ScoreRun, advance, replay
from service.messages import AlertParams, AlertTrack

PARAMS = AlertParams(threshold=0.9, hysteresis=0.1, min_duration_frames=3, cooldown_frames=2)
H, M, L = 0.95, 0.85, 0.1  # high (>= threshold), middle (in the hysteresis band), low


def _run(scores: list[float], params: AlertParams = PARAMS, chunks: int = 1) -> list[tuple[str, int, int | None]]:
    """Feed scores (frame i at time i) in `chunks` calls; return (kind, start, end) per event."""
    frames = [FrameScore(i, float(i), s) for i, s in enumerate(scores)]
    track, out = AlertTrack(), []
    size = -(-len(frames) // chunks)
    for i in range(0, len(frames), size):
        track, events = advance(track, params, frames[i : i + size], "cam", "m@v1")
        out.extend((e.kind, e.alert.start_frame, e.alert.end_frame) for e in events)
    return out


@pytest.mark.parametrize(
    ("scores", "events"),
    [
        ([L, L, L, L], []),
        ([H, H, L, H, H, L], []),  # runs shorter than min_duration never open
        ([L, H, H, H, L, L], [("opened", 1, None), ("closed", 1, 3)]),
        ([H, H, H, M, M, L], [("opened", 0, None), ("closed", 0, 4)]),  # hysteresis keeps it open in the band
        ([H, H, M, L], []),  # the band does not count towards opening
        (
            [H, H, H, L, L, L, H, H, H, L],
            [("opened", 0, None), ("closed", 0, 2), ("opened", 6, None), ("closed", 6, 8)],
        ),
        ([H, H, H, L, H, H, H], [("opened", 0, None), ("closed", 0, 2)]),  # cooldown: frames 4-5 are ignored
        ([H, H, H, H, H], [("opened", 0, None)]),  # still open at the end
    ],
)
def test_alert_table(scores, events):
    assert _run(scores) == events


def test_peak_updates_are_merged_per_call():
    params = PARAMS.model_copy(update={"min_duration_frames": 1})
    frames = [FrameScore(i, float(i), s) for i, s in enumerate([0.91, 0.92, 0.93, 0.94, L])]
    _, events = advance(AlertTrack(), params, frames, "cam", "m@v1")
    assert [e.kind for e in events] == ["opened", "updated", "closed"]
    assert (events[1].alert.peak_score, events[1].alert.peak_frame) == (0.94, 3)
    closed = events[2].alert
    assert (closed.state, closed.start_frame, closed.end_frame, closed.peak_frame) == ("closed", 0, 3, 3)
    assert len({e.alert.id for e in events}) == 1


@pytest.mark.parametrize("chunks", [1, 2, 3, 9])
def test_state_carries_across_windows(chunks):
    scores = [L, H, H, H, M, L, L, L, H]
    assert _run(scores, chunks=chunks) == [("opened", 1, None), ("closed", 1, 4)]


def test_no_cooldown_reopens_immediately():
    params = PARAMS.model_copy(update={"cooldown_frames": 0, "min_duration_frames": 1})
    assert _run([H, L, H], params) == [("opened", 0, None), ("closed", 0, 0), ("opened", 2, None)]


def test_track_round_trips_through_json():
    frames = [FrameScore(i, float(i), s) for i, s in enumerate([H, H, H])]
    track, _ = advance(AlertTrack(), PARAMS, frames, "cam", "m@v1")
    again = AlertTrack.model_validate_json(track.model_dump_json())
    assert again == track
    assert again.alert is not None
    assert again.phase == "active"


def _oracle(scores: list[float], params: AlertParams) -> list[tuple[int, int | None, float, int]]:
    """The machine's rules applied one frame at a time, written as plainly as possible: (start, end, peak, peak
    frame) of each alert, end None while open at the end. The jumping implementation must agree with it."""
    phase, run_start, run_len, peak, peak_at, end, cooldown = "idle", 0, 0, -1.0, 0, 0, 0
    out: list[tuple[int, int | None, float, int]] = []
    for i, s in enumerate(scores):
        if phase == "cooldown":
            cooldown -= 1
            phase = "idle" if cooldown <= 0 else phase
        elif phase == "active":
            if s >= params.threshold - params.hysteresis:
                end = i
                if s > peak:
                    peak, peak_at = s, i
            else:
                out[-1] = (run_start, end, peak, peak_at)
                cooldown = params.cooldown_frames
                phase = "cooldown" if cooldown > 0 else "idle"
        elif s < params.threshold:
            phase = "idle"
        else:
            if phase == "idle":
                phase, run_start, run_len, peak, peak_at = "pending", i, 0, -1.0, i
            run_len, end = run_len + 1, i
            if s > peak:
                peak, peak_at = s, i
            if run_len >= params.min_duration_frames:
                phase = "active"
                out.append((run_start, None, peak, peak_at))
    if phase == "active":
        out[-1] = (run_start, None, peak, peak_at)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_jumping_machine_equals_the_frame_by_frame_rules_however_frames_arrive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    levels = np.array([0.05, 0.35, 0.45, 0.5, 0.55, 0.9, -np.inf])
    scores = np.where(rng.random(n) < 0.7, levels[rng.integers(0, len(levels), n)], rng.random(n)).tolist()
    params = AlertParams(
        threshold=float(rng.choice([0.5, 0.9])),
        hysteresis=float(rng.choice([0.0, 0.1, 0.3])),
        min_duration_frames=int(rng.integers(1, 6)),
        cooldown_frames=int(rng.integers(0, 5)),
    )
    expected = _oracle(scores, params)
    frames = [FrameScore(i, float(i), s) for i, s in enumerate(scores)]
    cuts = sorted({0, n, *rng.integers(0, n, int(rng.integers(0, 6))).tolist()})
    track, alerts = AlertTrack(), {}
    for a, b in itertools.pairwise(cuts):
        track, events = advance(track, params, frames[a:b], "cam", "m@v1")
        alerts.update({e.alert.id: e.alert for e in events})
    got = [(a.start_frame, a.end_frame, a.peak_score, a.peak_frame) for a in alerts.values()]
    assert got == expected
    replayed = replay(ScoreRun.of(frames), params, "cam", "m@v1")[0]
    assert [(a.start_frame, a.end_frame, a.peak_score, a.peak_frame) for a in replayed] == expected


def test_held_frames_never_open_and_close_an_open_alert() -> None:
    """Frames that may not alert (learning, settling, a health flag) enter as -inf."""
    scores = np.array([H, H, H, H, H, H])
    held = np.array([True, True, True, True, False, True])
    run = ScoreRun.held(np.arange(6), np.arange(6.0), scores, held)
    alerts, track = replay(run, PARAMS, "cam", "m@v1")
    assert [(a.start_frame, a.end_frame, a.opened_frame) for a in alerts] == [(0, 3, 2)]
    assert track.phase == "cooldown"
    blocked = ScoreRun.held(np.arange(6), np.arange(6.0), scores, np.zeros(6, dtype=bool))
    assert replay(blocked, PARAMS, "cam", "m@v1")[0] == []


def test_replay_of_a_day_is_one_pass() -> None:
    """864,000 frames (24 h at 10 fps) with an alert every few thousand frames: the same alerts as the live machine
    fed 8 frames at a time (the speed is measured in bench/replay.py, not asserted here)."""
    rng = np.random.default_rng(0)
    n = 864_000
    scores = rng.uniform(0.0, 0.3, n)
    for start in rng.integers(0, n - 50, 200):
        scores[start : start + int(rng.integers(3, 40))] = rng.uniform(0.5, 0.99)
    run = ScoreRun(np.arange(n), np.arange(n) / 10.0, scores)
    params = PARAMS.model_copy(update={"threshold": 0.5})
    alerts, _ = replay(run, params, "cam", "m@v1")
    assert 100 < len(alerts) <= 200
    track, live = AlertTrack(), {}
    part = slice(0, 80_000)  # the live way over a part of it (8 frames per call)
    for a in range(part.start, part.stop, 8):
        track, events = advance(
            track, params, ScoreRun(run.frames[a : a + 8], run.ts[a : a + 8], scores[a : a + 8]), "cam", "m"
        )
        live.update({e.alert.id: e.alert for e in events})
    first = [(a.start_frame, a.end_frame) for a in alerts if a.start_frame < 79_000]
    assert [(a.start_frame, a.end_frame) for a in live.values() if a.start_frame < 79_000] == first


def test_alerts_carry_the_pts_of_their_first_and_last_frame() -> None:
    """Where a clip is cut (service/clips): the stream seconds of the first and last frame, across calls; None where
    the source has no pts."""
    scores = np.array([0.1, H, H + 0.01, H, H, 0.1, 0.1])
    pts = np.arange(7) * 0.04 + 100.0
    pts[4] = np.nan
    run = ScoreRun.held(np.arange(7), np.arange(7.0), scores, np.ones(7, dtype=bool), pts)
    track, events = AlertTrack(), []
    for a in range(0, 7, 2):  # two frames a call, as windows come
        part = ScoreRun(run.frames[a : a + 2], run.ts[a : a + 2], run.scores[a : a + 2], pts[a : a + 2])
        track, new = advance(track, PARAMS, part, "cam", "m@v1")
        events += new
    closed = [e.alert for e in events if e.kind == "closed"]
    assert len(closed) == 1
    assert closed[0].start_pts == pytest.approx(100.04)
    assert closed[0].peak_pts == pytest.approx(100.08)  # the peak frame's: where a heatmap overlay belongs
    assert closed[0].end_pts is None  # frame 4 had none
    no_pts = replay(ScoreRun.held(np.arange(7), np.arange(7.0), scores, np.ones(7, dtype=bool)), PARAMS, "c", "m")
    assert no_pts[0][0].start_pts is None

"""The alert state machine as tables: score sequences in, alert events and spans out."""

from __future__ import annotations

import pytest

from service.alerts.machine import FrameScore, advance
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

"""Triage without Redis: mute windows (midnight, weekdays, time zones), flood control with its one summary, incident
grouping by gap, and fields carried from an alert's opening onto its later events and the open alert of the track."""

from __future__ import annotations

import calendar

import numpy as np
import pytest
from pydantic import ValidationError

from service.alerts.machine import ScoreRun, advance
from service.alerts.schema import Incident, MuteWindow, NotifyState, TriageState
from service.alerts.triage import decide, group, mute_window_at, notified, triage
from service.messages import Alert, AlertOverrides, AlertParams, AlertTrack

# 2025-01-06 was a Monday.
MONDAY = calendar.timegm((2025, 1, 6, 0, 0, 0))


def _at(day: int, hh: int, mm: int) -> float:
    return MONDAY + day * 86400 + hh * 3600 + mm * 60


@pytest.mark.parametrize(
    ("window", "ts", "muted"),
    [
        ({"start": "09:00", "end": "17:00"}, _at(0, 12, 0), True),
        ({"start": "09:00", "end": "17:00"}, _at(0, 17, 0), False),  # the end is not in the window
        ({"start": "22:00", "end": "06:00"}, _at(0, 23, 30), True),
        ({"start": "22:00", "end": "06:00"}, _at(1, 5, 59), True),  # Tuesday morning: the window started Monday
        ({"start": "22:00", "end": "06:00"}, _at(1, 6, 0), False),
        ({"start": "22:00", "end": "06:00", "days": ["sat", "sun"]}, _at(5, 23, 0), True),  # Saturday night
        ({"start": "22:00", "end": "06:00", "days": ["sat", "sun"]}, _at(0, 3, 0), True),  # Monday 3:00, from Sunday
        ({"start": "22:00", "end": "06:00", "days": ["sat", "sun"]}, _at(1, 3, 0), False),  # Tuesday 3:00
    ],
)
def test_mute_windows_in_utc(window: dict, ts: float, muted: bool) -> None:
    assert (mute_window_at([MuteWindow.model_validate(window)], "UTC", ts) is not None) is muted


def test_mute_windows_follow_the_time_zone() -> None:
    window = [MuteWindow(start="09:00", end="10:00")]
    assert mute_window_at(window, "UTC", _at(0, 9, 30)) is not None
    assert mute_window_at(window, "America/New_York", _at(0, 9, 30)) is None  # 04:30 there
    assert mute_window_at(window, "America/New_York", _at(0, 14, 30)) is not None  # 09:30 EST


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"mute": [{"start": "25:00", "end": "06:00"}]}, "HH:MM on the 24-hour clock"),
        ({"mute": [{"start": "08:00", "end": "08:00"}]}, "is empty"),
        ({"mute": [{"start": "08:00", "end": "09:00", "days": ["monday"]}]}, "'mon'"),
        ({"timezone": "Mars/Olympus_Mons"}, "IANA name"),
        ({"timezone": "../../etc/passwd"}, "IANA name"),
        ({"notify_max": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_triage_overrides_say_what_would_work(overrides: dict, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertOverrides.model_validate(overrides)
    assert says in str(info.value)


def test_flood_control_sends_n_then_one_summary_then_tells_how_many_were_held() -> None:
    params = AlertParams(threshold=0.5, hysteresis=0.1, min_duration_frames=1, cooldown_frames=0, notify_max=3)
    state, decisions = NotifyState(), []
    for k in range(7):
        state, note = decide(state, params, 1000.0 + k)
        decisions.append(note.decision)
    assert decisions == ["sent", "sent", "sent", "summary", "suppressed", "suppressed", "suppressed"]
    state, summary = decide(NotifyState(period_start=1000.0, sent=3), params, 1010.0)
    assert summary.until_ts == 1000.0 + params.notify_period_s
    assert "recorded but not notified" in summary.reason
    state, next_one = decide(state.model_copy(update={"held": 4}), params, 1000.0 + params.notify_period_s)
    assert (next_one.decision, next_one.suppressed_before) == ("sent", 4)
    assert "4 alert(s) of the last flood" in next_one.reason
    assert (state.sent, state.held) == (1, 0)


def _alert(i: str, start_ts: float, end_ts: float | None = None) -> Alert:
    return Alert(
        id=i, camera="gate", model="m@v1", state="open" if end_ts is None else "closed", start_frame=0,
        start_ts=start_ts, end_ts=end_ts, peak_score=0.9, peak_frame=0,
    )  # fmt: skip


def test_incidents_join_within_the_gap() -> None:
    first = group(None, _alert("a", 100.0), 60.0, "inc-a")
    assert (first.id, first.alerts, first.state) == ("inc-a", 1, "open")
    ended = first.model_copy(update={"state": "closed", "end_ts": 110.0})
    joined = group(ended, _alert("b", 170.0), 60.0, "inc-b")
    assert (joined.id, joined.alerts, joined.alert_ids, joined.end_ts) == ("inc-a", 2, ["a", "b"], None)
    apart = group(ended, _alert("c", 170.1), 60.0, "inc-c")
    assert (apart.id, apart.alerts) == ("inc-c", 1)


def test_triage_gives_each_opened_alert_its_fields_for_the_rest_of_its_life() -> None:
    """The real alert machine over scores with three anomalies, fed in two parts: an alert opened in the first part and
    closed in the second keeps its incident and decision, and the incident follows it."""
    params = AlertParams(
        threshold=0.5, hysteresis=0.1, min_duration_frames=2, cooldown_frames=0, notify_max=1, incident_gap_s=1.0
    )
    scores = np.zeros(100)
    scores[[*range(10, 15), *range(20, 25), *range(80, 90)]] = 0.9  # 0.2 s apart, then 2.2 s apart at 25 fps
    frames = np.arange(100)
    ts = 1000.0 + frames / 25.0
    state, track, events = TriageState(), AlertTrack(), []
    for part in (slice(0, 85), slice(85, 100)):
        run = ScoreRun(frames[part], ts[part], scores[part])
        track, new = advance(track, params, run, "gate", "m@v1")
        out = triage(state, track, new, params, now=5000.0)
        state, track = out.state, out.track
        events += out.events
        if part.stop == 85:  # the third alert is open at the cut: the track holds it with its fields
            assert track.alert is not None
            assert track.alert.incident == out.events[-1].alert.incident
    by_id: dict[str, list] = {}
    for e in events:
        by_id.setdefault(e.alert.id, []).append(e)
    first, second, third = by_id.values()
    assert {e.alert.incident for e in first + second} == {f"inc-{first[0].alert.id}"}
    assert {e.alert.incident for e in third} == {f"inc-{third[0].alert.id}"}
    assert [e.alert.notification.decision for e in first + second + third if e.kind == "opened"] == [
        "sent", "summary", "suppressed",
    ]  # fmt: skip
    assert [notified(e) for e in third] == [False] * len(third)
    assert third[-1].kind == "closed"
    assert third[-1].alert.notification.decision == "suppressed"  # the closing event carries the opening's decision
    incident = state.incident
    assert isinstance(incident, Incident)
    assert (incident.id, incident.state, incident.alerts) == (third[0].alert.incident, "closed", 1)
    assert incident.end_ts == pytest.approx(ts[89])


def test_a_muted_alert_is_recorded_and_not_counted_by_flood_control() -> None:
    params = AlertParams(
        threshold=0.5, hysteresis=0.1, min_duration_frames=1, cooldown_frames=0, notify_max=1,
        mute=[MuteWindow(start="00:00", end="01:00")],
    )  # fmt: skip
    track, events = advance(AlertTrack(), params, ScoreRun(np.arange(3), np.zeros(3), np.full(3, 0.9)), "gate", "m")
    muted = triage(TriageState(), track, events, params, now=_at(0, 0, 30))
    note = muted.events[0].alert.notification
    assert (note.decision, "mute window 00:00-01:00 (UTC)" in note.reason) == ("muted", True)
    assert muted.state.notify == NotifyState()  # the flood budget is untouched
    assert not notified(muted.events[0])

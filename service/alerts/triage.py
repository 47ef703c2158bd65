"""Triage of a camera's alert events as the worker publishes them: incidents, flood control, mute windows. Pure.

When an alert opens it is given, once, for the rest of its life (its later events carry the same fields):

- an **incident**: it joins the camera's latest incident if that one is still open or ended at most
  `incident_gap_s` before the alert started (capture times), else it starts a new one;
- a **notification decision**: `muted` inside one of the camera's mute windows; otherwise flood control counts it.
  The first alert starts a period of `notify_period_s`; up to `notify_max` alerts in the period are `sent`; the next
  one is the `summary` (notified, saying that notifications pause until the period ends); the rest are `suppressed`.
  The first alert after the period starts the next one and says how many were held back (`suppressed_before`).

Every alert is recorded and listed whatever the decision; only webhooks and MQTT look at it (`notified`). The clock
(`now`) and the incident id come from the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from service.alerts.schema import (
    MAX_INCIDENT_ALERT_IDS,
    NOTIFIED,
    WEEKDAYS,
    AlertNotification,
    Incident,
    MuteWindow,
    NotifyState,
    TriageState,
)
from service.messages import Alert, AlertEvent, AlertParams, AlertTrack


def incident_id(first: Alert) -> str:
    """An incident is named after its first alert (unique already), so no clock or random id is needed."""
    return f"inc-{first.id}"


def notified(event: AlertEvent) -> bool:
    """Whether webhooks and MQTT get this event: alerts triaged as sent or summary (and alerts from before triage)."""
    note = event.alert.notification
    return note is None or note.decision in NOTIFIED


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def mute_window_at(windows: list[MuteWindow], timezone: str, ts: float) -> MuteWindow | None:
    """The mute window `ts` (unix seconds) falls in, in the local time of `timezone`, if any."""
    if not windows:
        return None
    local = datetime.fromtimestamp(ts, _zone(timezone))
    minute, day = local.hour * 60 + local.minute, local.weekday()
    today, yesterday = WEEKDAYS[day], WEEKDAYS[(day - 1) % 7]
    for w in windows:
        start, end = w.minutes()
        if start < end:
            if today in w.days and start <= minute < end:
                return w
        elif (today in w.days and minute >= start) or (yesterday in w.days and minute < end):  # spans midnight
            return w
    return None


def _clock(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def decide(state: NotifyState, params: AlertParams, now: float) -> tuple[NotifyState, AlertNotification]:
    """Flood control for one alert that is not muted (see the module docstring)."""
    if state.period_start is None or now >= state.period_start + params.notify_period_s:
        held = state.held
        told = f"{held} alert(s) of the last flood were recorded but not notified" if held else ""
        return NotifyState(period_start=now, sent=1), AlertNotification(
            decision="sent", reason=told, suppressed_before=held
        )
    until = state.period_start + params.notify_period_s
    if state.sent < params.notify_max:
        return state.model_copy(update={"sent": state.sent + 1}), AlertNotification(decision="sent")
    held = state.held + 1
    flood = f"flood: {params.notify_max} alert(s) notified since {_clock(state.period_start)}"
    if held == 1:
        reason = f"{flood}; this camera's alerts until {_clock(until)} are recorded but not notified"
        note = AlertNotification(decision="summary", reason=reason, until_ts=until)
    else:
        note = AlertNotification(decision="suppressed", reason=f"{flood}; notified again from {_clock(until)}")
        note = note.model_copy(update={"until_ts": until})
    return state.model_copy(update={"held": held}), note


def group(incident: Incident | None, alert: Alert, gap_s: float, new_id: str) -> Incident:
    """The incident a newly opened alert belongs to: the camera's latest one if still open or recent enough."""
    joins = incident is not None and (
        incident.state == "open" or (incident.end_ts is not None and alert.start_ts - incident.end_ts <= gap_s)
    )
    if incident is None or not joins:
        return Incident(
            id=new_id,
            camera=alert.camera,
            state="open",
            start_ts=alert.start_ts,
            alerts=1,
            alert_ids=[alert.id],
            last_alert=alert.id,
            peak_score=alert.peak_score,
        )
    ids = incident.alert_ids if len(incident.alert_ids) >= MAX_INCIDENT_ALERT_IDS else [*incident.alert_ids, alert.id]
    return incident.model_copy(
        update={
            "state": "open",
            "end_ts": None,
            "alerts": incident.alerts + 1,
            "alert_ids": ids,
            "last_alert": alert.id,
            "peak_score": max(incident.peak_score, alert.peak_score),
            "updated_ts": time.time(),
        }
    )


def _follow(incident: Incident, event: AlertEvent) -> Incident:
    """The incident after an updated or closed event of its alert."""
    a = event.alert
    update: dict[str, object] = {"peak_score": max(incident.peak_score, a.peak_score), "updated_ts": time.time()}
    if event.kind == "closed":
        update.update(state="closed", end_ts=a.end_ts)
    return incident.model_copy(update=update)


@dataclass(frozen=True)
class Triaged:
    state: TriageState
    track: AlertTrack
    events: list[AlertEvent]
    incidents: list[Incident]  # incidents that changed, newest version of each


def triage(
    state: TriageState,
    track: AlertTrack,
    events: list[AlertEvent],
    params: AlertParams,
    now: float,
    new_id: Callable[[Alert], str] = incident_id,
) -> Triaged:
    """Give the alerts that open in `events` their incident and notification decision, carry both onto their later
    events and onto the open alert in `track` (so the worker's next events keep them), and follow the incident."""
    incident, notify = state.incident, state.notify
    fields: dict[str, dict[str, object]] = {}  # alert id -> what its events carry
    changed: dict[str, Incident] = {}
    out: list[AlertEvent] = []
    for event in events:
        alert = event.alert
        if event.kind == "opened":
            incident = group(incident, alert, params.incident_gap_s, new_id(alert))
            window = mute_window_at(params.mute, params.timezone, now)
            if window is not None:
                reason = f"muted: inside the mute window {window.start}-{window.end} ({params.timezone})"
                note = AlertNotification(decision="muted", reason=reason)
            else:
                notify, note = decide(notify, params, now)
            fields[alert.id] = {"incident": incident.id, "notification": note}
        if alert.id in fields:
            alert = alert.model_copy(update=fields[alert.id])
            event = AlertEvent(kind=event.kind, alert=alert)
        if incident is not None and alert.incident == incident.id:
            if event.kind != "opened":
                incident = _follow(incident, event)
            changed[incident.id] = incident
        out.append(event)
    if track.alert is not None and track.alert.id in fields:
        track = track.model_copy(update={"alert": track.alert.model_copy(update=fields[track.alert.id])})
    return Triaged(TriageState(incident=incident, notify=notify), track, out, list(changed.values()))

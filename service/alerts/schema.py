"""Wire schemas of alert triage: an operator's acknowledgement, the notification decision, incidents, mute windows and
the per-camera state that decides them. `service/messages.py` puts them on `Alert` and `ScoringState`."""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AckState = Literal["acknowledged", "resolved"]
# What GET /alerts?state= selects: the alert's life (open, closed) or its review (unacknowledged, acknowledged,
# resolved); every alert is in one of each.
AlertFilter = Literal["open", "closed", "unacknowledged", "acknowledged", "resolved"]
ALERT_FILTERS: tuple[str, ...] = ("open", "closed", "unacknowledged", "acknowledged", "resolved")
# sent: notified as usual; summary: the first alert over the camera's flood limit, notified as the flood notice;
# suppressed: over the flood limit, not notified; muted: inside a mute window, not notified.
NotifyDecision = Literal["sent", "summary", "suppressed", "muted"]
NOTIFIED: frozenset[str] = frozenset({"sent", "summary"})
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Triage defaults (Settings.alerts; AlertParams built without settings): judgement, not measurement. Five minutes
# between alerts is one incident; ten notifications in ten minutes is as many as a person reads before muting.
DEFAULT_INCIDENT_GAP_S = 300.0
DEFAULT_NOTIFY_MAX = 10
DEFAULT_NOTIFY_PERIOD_S = 600.0
MAX_INCIDENT_ALERT_IDS = 200  # an incident lists its first alerts by id; `alerts` counts them all
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_TZ_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2}$")


class AlertAck(BaseModel):
    """An operator's acknowledgement (someone is on it) or resolution (handled), with a note."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    state: AckState
    note: str = Field(default="", max_length=1000)
    role: str  # the role of the key that gave it (operator or admin)
    ts: float = Field(default_factory=time.time)  # when it reached this state
    acknowledged_ts: float | None = None  # when it was first acknowledged (kept when it is resolved later)


class AlertNotification(BaseModel):
    """Whether the alert's events go to webhooks and MQTT, decided once when it opens, and why not if not."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    decision: NotifyDecision
    reason: str = ""
    until_ts: float | None = None  # summary/suppressed: notifications of the camera resume at this time
    suppressed_before: int = 0  # alerts of the camera held back by its last flood (said by the first one after it)


class MuteWindow(BaseModel):
    """A daily time range (local time of the camera's `timezone`) in which alerts are recorded but not notified.

    `start` > `end` spans midnight (22:00-06:00); `days` are the days the window starts on (default: every day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str = Field(max_length=5, description="HH:MM, 24 h")
    end: str = Field(max_length=5, description="HH:MM, 24 h; before start = the next day")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1, max_length=7)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            msg = f"{v!r} is not a time of day: use HH:MM on the 24-hour clock, e.g. 07:30 or 22:00"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> MuteWindow:
        if self.start == self.end:
            msg = f"a mute window from {self.start} to {self.end} is empty; give different times (22:00-06:00)"
            raise ValueError(msg)
        return self

    def minutes(self) -> tuple[int, int]:
        (sh, sm), (eh, em) = (map(int, t.split(":")) for t in (self.start, self.end))
        return sh * 60 + sm, eh * 60 + em


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def check_timezone(v: str) -> str:
    """An IANA time zone name this machine knows ("UTC" always works)."""
    if v == "UTC":
        return v
    if not _TZ_NAME.match(v) or v not in _zones():
        msg = (
            f"unknown time zone {v[:64]!r}: use an IANA name such as UTC, Europe/Berlin or America/New_York "
            "(the machine's tz database, Debian package tzdata, lists them)"
        )
        raise ValueError(msg)
    return v


class Incident(BaseModel):
    """Consecutive alerts of one camera, each starting within `alerts.incident_gap_s` of the end of the one before."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = 1
    id: str
    camera: str
    state: Literal["open", "closed"]  # open while one of its alerts is open
    start_ts: float  # capture time of its first alert's first frame
    end_ts: float | None = None  # end of its latest closed alert (None while one is open)
    alerts: int = 0  # alerts in it
    alert_ids: list[str] = Field(default_factory=list)  # the first MAX_INCIDENT_ALERT_IDS of them, oldest first
    last_alert: str = ""  # id of its newest alert
    peak_score: float = 0.0
    updated_ts: float = Field(default_factory=time.time)


class IncidentPage(BaseModel):
    """One page of incidents changed after the cursor, oldest change first (as `AlertPage`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    incidents: list[Incident]
    next_cursor: int


class NotifyState(BaseModel):
    """Flood control of one camera: notifications sent in the current period, alerts held back over the limit."""

    model_config = ConfigDict(extra="forbid")
    period_start: float | None = None  # when the current period began (its first notification)
    sent: int = 0  # notifications in the current period
    held: int = 0  # alerts over the limit in the current period (the summary included); told by the next period's first


class TriageState(BaseModel):
    """Per-camera state of incident grouping and flood control, committed with the camera's scores."""

    model_config = ConfigDict(extra="forbid")
    incident: Incident | None = None  # the camera's latest incident (open, or closed and still joinable)
    notify: NotifyState = NotifyState()


def alert_filters(alert: Any) -> tuple[str, str]:
    """The two `AlertFilter` states an `Alert` is in: its life and its review."""
    review = "unacknowledged" if alert.ack is None else alert.ack.state
    return alert.state, review

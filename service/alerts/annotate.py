"""Changes to a stored alert from outside the worker (operator feedback, acknowledgement), made the one safe way.

Under the camera's drain lock: re-read the alert (a concurrent change shows), let the caller check and change it,
copy the change onto the alert the camera's scoring state holds open (so the worker's later updated/closed events
keep it), and save the scoring state, any new reference and the alert event in one transaction. The event goes out
on `vigil:alerts:events`, so `/ws/alerts`, `GET /alerts` and MQTT all see the change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from models.calibration.camera import CameraReference
from service.alerts.schema import AlertAck
from service.bus import keys, topics
from service.errors import VigilServiceError
from service.locks import camera_lock
from service.messages import Alert, AlertEvent, AlertEventKind, ScoringState


class AlertChangeError(VigilServiceError):
    """A change the alert's current state does not allow (a second verdict, resolving a resolved alert)."""


@dataclass(frozen=True)
class Change:
    """What a change makes of an alert (and of its camera's scoring state and reference, if anything)."""

    alert: Alert
    state: ScoringState | None = None  # the scoring state to store (e.g. a new calibration version); None = as read
    reference: CameraReference | None = None  # a new camera reference to store with it


def unknown_alert(alert_id: str) -> str:
    return f"no alert {alert_id!r} (alerts expire after VIGIL_ALERTS__RETENTION_S); list them with GET /alerts"


def change_alert(
    r: redis.Redis,
    alert_id: str,
    kind: AlertEventKind,
    retention_s: int,
    apply: Callable[[Alert, ScoringState], Change],
) -> Alert:
    """Apply `apply(alert, state)` to the stored alert under its camera's lock (see the module docstring); returns the
    changed alert. LookupError for an unknown alert; `apply` raises to refuse (nothing is written then)."""
    alert = topics.get_alert(r, alert_id)
    if alert is None:
        raise LookupError(unknown_alert(alert_id))
    with camera_lock(r, alert.camera):
        alert = topics.get_alert(r, alert_id) or alert  # re-read under the lock: a concurrent change shows here
        state = topics.load_scoring_state(r, alert.camera)
        change = apply(alert, state)
        state = change.state or state
        updated = change.alert.model_copy(update={"updated_ts": time.time()})
        track = state.track
        if track.alert is not None and track.alert.id == alert.id:  # still open: later events keep the change
            state = state.model_copy(update={"track": track.model_copy(update={"alert": updated})})
        pipe = r.pipeline(transaction=True)
        if change.reference is not None:
            topics.save_reference(pipe, alert.camera, change.reference)
        topics.save_scoring_state(pipe, alert.camera, state)
        topics.queue_alert_event(pipe, AlertEvent(kind=kind, alert=updated), retention_s)
        pipe.execute()
        topics.relay_outbox(r, keys.partition_of(alert.camera))
        return updated


def acknowledge(r: redis.Redis, alert_id: str, ack: AlertAck, retention_s: int) -> Alert:
    """Acknowledge an alert (someone is on it) or resolve it (handled), with a note. An alert is acknowledged once and
    resolved once; resolving keeps when it was first acknowledged. Open alerts may be acknowledged and resolved too:
    the worker's later events carry the state."""

    def apply(alert: Alert, _: ScoringState) -> Change:
        had = alert.ack
        if had is not None and (had.state == "resolved" or had.state == ack.state):
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(had.ts))
            msg = f"alert {alert.id} is already {had.state} ({had.role}, {when}); acknowledged once, resolved once"
            raise AlertChangeError(msg)
        first = had.acknowledged_ts if had is not None else (ack.ts if ack.state == "acknowledged" else None)
        return Change(alert.model_copy(update={"ack": ack.model_copy(update={"acknowledged_ts": first})}))

    return change_alert(r, alert_id, ack.state, retention_s, apply)

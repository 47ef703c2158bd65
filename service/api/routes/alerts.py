"""Alerts over REST: cursor-paged polling (`GET /alerts?since=&state=`), one alert by id, and an operator's
acknowledgement or resolution (`POST /alerts/{id}/ack`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from service.alerts.annotate import AlertChangeError, acknowledge, unknown_alert
from service.alerts.schema import AckState, AlertAck, AlertFilter
from service.api.deps import OperatorDep, RedisDep, SettingsDep, ViewerDep
from service.api.errors import ConflictError, NotFoundError
from service.api.routes.cameras import CAMERA_ID_MAX, CAMERA_ID_PATTERN
from service.bus import topics
from service.locks import CameraBusyError
from service.messages import Alert, AlertPage
from service.metrics import ALERT_ACKS

router = APIRouter(prefix="/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="alert id")]


class AckRequest(BaseModel):
    """`acknowledge`: someone is on it; `resolve`: handled (an acknowledged alert or not). Each once per alert."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["acknowledge", "resolve"] = "acknowledge"
    note: str = Field(default="", max_length=1000)


@router.get("", response_model=AlertPage)
def list_alerts(
    redis: RedisDep,
    _: ViewerDep,
    since: Annotated[int, Query(ge=0, le=2**62, description="cursor: `next_cursor` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    camera: Annotated[str | None, Query(max_length=CAMERA_ID_MAX, pattern=CAMERA_ID_PATTERN)] = None,
    state: Annotated[
        AlertFilter | None,
        Query(description="only alerts now open, closed, unacknowledged, acknowledged or resolved (same cursor)"),
    ] = None,
) -> AlertPage:
    """Alerts changed after `since`, oldest change first; an alert reappears after each change (opened, closed,
    acknowledged). With `state`, only the alerts in that state now; page on with `next_cursor` as without it."""
    page = topics.list_alerts(redis, since=since, limit=limit, camera=camera, state=state)
    return page.model_copy(update={"alerts": topics.with_clip_paths(redis, page.alerts)})


@router.get("/{alert_id}", response_model=Alert)
def show_alert(alert_id: AlertId, redis: RedisDep, _: ViewerDep) -> Alert:
    alert = topics.get_alert(redis, alert_id)
    if alert is None:
        raise NotFoundError(unknown_alert(alert_id))
    return topics.with_clip_paths(redis, [alert])[0]


@router.post("/{alert_id}/ack", response_model=Alert, responses={404: {}, 409: {}, 503: {}})
def acknowledge_alert(
    alert_id: AlertId, redis: RedisDep, settings: SettingsDep, role: OperatorDep, body: Annotated[AckRequest, Body()]
) -> Alert:
    """Acknowledge or resolve an alert with a note (operator or admin key). The change goes out to every client as an
    `acknowledged` or `resolved` event on /ws/alerts and MQTT; `GET /alerts?state=` filters by it; 409 when the alert
    is already in that state (or resolved)."""
    state: AckState = "acknowledged" if body.action == "acknowledge" else "resolved"
    # With no admin key configured (dev) anyone may act: the record says so rather than naming a role.
    ack = AlertAck(state=state, note=body.note, role=role.name.lower() if role else "anyone (dev)")
    try:
        alert = acknowledge(redis, alert_id, ack, settings.alerts.retention_s)
    except LookupError as e:
        raise NotFoundError(str(e)) from e
    except AlertChangeError as e:
        raise ConflictError(str(e)) from e
    except CameraBusyError as e:
        raise HTTPException(503, str(e), headers={"Retry-After": "2"}) from e
    ALERT_ACKS.labels(alert.camera, state).inc()
    return topics.with_clip_paths(redis, [alert])[0]

"""Alerts over REST: cursor-paged polling (`GET /alerts?since=`) and one alert by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from service.api.deps import RedisDep, ViewerDep
from service.api.errors import NotFoundError
from service.api.routes.cameras import CAMERA_ID_MAX, CAMERA_ID_PATTERN
from service.bus import topics
from service.messages import Alert, AlertPage

router = APIRouter(prefix="/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="alert id")]


@router.get("", response_model=AlertPage)
def list_alerts(
    redis: RedisDep,
    _: ViewerDep,
    since: Annotated[int, Query(ge=0, le=2**62, description="cursor: `next_cursor` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    camera: Annotated[str | None, Query(max_length=CAMERA_ID_MAX, pattern=CAMERA_ID_PATTERN)] = None,
) -> AlertPage:
    """Alerts changed after `since`, oldest change first; an alert reappears after each change (opened, closed)."""
    return topics.list_alerts(redis, since=since, limit=limit, camera=camera)


@router.get("/{alert_id}", response_model=Alert)
def show_alert(alert_id: AlertId, redis: RedisDep, _: ViewerDep) -> Alert:
    alert = topics.get_alert(redis, alert_id)
    if alert is None:
        msg = f"no alert {alert_id!r} (alerts expire after VIGIL_ALERTS__RETENTION_S); list them with GET /alerts"
        raise NotFoundError(msg)
    return alert

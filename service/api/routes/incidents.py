"""Incidents over REST: consecutive alerts of a camera grouped by the workers (service/alerts/triage.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from service.alerts.schema import Incident, IncidentPage
from service.api.deps import RedisDep, ViewerDep
from service.api.errors import NotFoundError
from service.api.routes.cameras import CAMERA_ID_MAX, CAMERA_ID_PATTERN
from service.bus import keys, topics
from service.messages import Alert

router = APIRouter(prefix="/incidents", tags=["alerts"])
IncidentId = Annotated[str, Path(max_length=160, pattern=r"^[A-Za-z0-9_.:-]{1,160}$", description="incident id")]


class IncidentView(BaseModel):
    incident: Incident
    alerts: list[Alert]  # its alerts still stored (the first MAX_INCIDENT_ALERT_IDS), oldest first


@router.get("", response_model=IncidentPage)
def list_incidents(
    redis: RedisDep,
    _: ViewerDep,
    since: Annotated[int, Query(ge=0, le=2**62, description="cursor: `next_cursor` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    camera: Annotated[str | None, Query(max_length=CAMERA_ID_MAX, pattern=CAMERA_ID_PATTERN)] = None,
) -> IncidentPage:
    """Incidents changed after `since`, oldest change first; an incident reappears after each change (an alert
    joined, its alert closed)."""
    return topics.list_incidents(redis, since=since, limit=limit, camera=camera)


@router.get("/{incident_id}", response_model=IncidentView)
def show_incident(incident_id: IncidentId, redis: RedisDep, _: ViewerDep) -> IncidentView:
    incident = topics.get_incident(redis, incident_id)
    if incident is None:
        msg = f"no incident {incident_id!r} (they expire with their alerts); list them with GET /incidents"
        raise NotFoundError(msg)
    docs = redis.mget([keys.alert_key(i) for i in incident.alert_ids]) if incident.alert_ids else []
    alerts = [topics.decode_json(d, Alert, "alert") for d in docs if d is not None]
    return IncidentView(incident=incident, alerts=alerts)

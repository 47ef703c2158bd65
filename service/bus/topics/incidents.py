"""Incidents (service/alerts/triage.py): stored with revisions for cursor paging like alerts, and retention (written
through topics/outbox.py)."""

from __future__ import annotations

from typing import cast

import redis

from service.alerts.schema import Incident, IncidentPage
from service.bus import keys
from service.bus.topics.alerts import page_index
from service.bus.topics.codec import decode_json


def list_incidents(r: redis.Redis, since: int = 0, limit: int = 100, camera: str | None = None) -> IncidentPage:
    """Incidents changed after cursor `since`, oldest change first (each comes back after every change)."""
    index = keys.INCIDENTS_INDEX if camera is None else keys.camera_incidents_index(camera)
    incidents, cursor = page_index(r, index, since, limit, keys.incident_key, Incident, "incident")
    return IncidentPage(incidents=incidents, next_cursor=cursor)


def get_incident(r: redis.Redis, incident_id: str) -> Incident | None:
    data = r.get(keys.incident_key(incident_id))
    return None if data is None else decode_json(cast(bytes, data), Incident, "incident")

"""Incidents (service/alerts/triage.py): stored with revisions for cursor paging like alerts, and retention."""

from __future__ import annotations

from typing import cast

import redis

from service.alerts.schema import Incident, IncidentPage
from service.bus import keys
from service.bus.topics.alerts import page_index
from service.bus.topics.codec import AnyRedis, decode_json, encode_json

# One incident change: next revision, the document with retention, both indexes.
_SAVE_INCIDENT = """
local rev = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[3], rev, ARGV[3])
redis.call('ZADD', KEYS[4], rev, ARGV[3])
return rev
"""


def save_incident(pipe: AnyRedis, incident: Incident, retention_s: int) -> None:
    """Store the incident (expiring `retention_s` after its last change) and index it for cursor paging."""
    pipe.register_script(_SAVE_INCIDENT)(
        keys=[
            keys.INCIDENT_REVISION_KEY,
            keys.incident_key(incident.id),
            keys.INCIDENTS_INDEX,
            keys.camera_incidents_index(incident.camera),
        ],
        args=[encode_json(incident), retention_s, incident.id],
        client=pipe,
    )


def list_incidents(r: redis.Redis, since: int = 0, limit: int = 100, camera: str | None = None) -> IncidentPage:
    """Incidents changed after cursor `since`, oldest change first (each comes back after every change)."""
    index = keys.INCIDENTS_INDEX if camera is None else keys.camera_incidents_index(camera)
    incidents, cursor = page_index(r, index, since, limit, keys.incident_key, Incident, "incident")
    return IncidentPage(incidents=incidents, next_cursor=cursor)


def get_incident(r: redis.Redis, incident_id: str) -> Incident | None:
    data = r.get(keys.incident_key(incident_id))
    return None if data is None else decode_json(cast(bytes, data), Incident, "incident")

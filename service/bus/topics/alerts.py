"""Alerts: events with revisions for cursor paging, retention, and the peak-frame thumbnails."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import redis
from pydantic import BaseModel

from service.alerts.schema import AlertFilter
from service.bus import keys
from service.bus.topics.codec import AnyRedis, decode_json
from service.messages import (
    Alert,
    AlertEvent,
    AlertPage,
)

log = logging.getLogger(__name__)


# --- alerts (changes are stored through topics/outbox.py) ------------------------------------------------


D = TypeVar("D", bound=BaseModel)


def page_index(
    r: redis.Redis, index: str, since: int, limit: int, doc_key: Callable[[str], str], cls: type[D], what: str
) -> tuple[list[D], int]:
    """Documents whose ids `index` scores above cursor `since` (revisions), in revision order, at most `limit`, and
    the next cursor. Expired documents are dropped from the index as they are met."""
    if limit < 1:
        msg = f"limit must be >= 1, got {limit}"
        raise ValueError(msg)
    docs_out: list[D] = []
    cursor = since
    while len(docs_out) < limit:
        page: Any = r.zrangebyscore(index, f"({cursor}", "+inf", start=0, num=limit - len(docs_out), withscores=True)
        if not page:
            break
        ids = [m.decode() for m, _ in page]
        docs = r.mget([doc_key(i) for i in ids])
        expired = [i for i, d in zip(ids, docs, strict=True) if d is None]
        if expired:
            r.zrem(index, *expired)
        docs_out.extend(decode_json(d, cls, what) for d in docs if d is not None)
        cursor = int(page[-1][1])
    return docs_out, cursor


def list_alerts(
    r: redis.Redis, since: int = 0, limit: int = 100, camera: str | None = None, state: AlertFilter | None = None
) -> AlertPage:
    """Alerts changed after cursor `since` (0 = from the start), oldest change first, at most `limit`; with `state`,
    only those in that state now (open, closed, unacknowledged, acknowledged, resolved).

    An alert comes back again after each change (opened, peak raised, closed, acknowledged); `next_cursor` goes into
    the next call's `since`. A state filter pages over its own index with the same revisions, so the cursor works
    alike; an alert that leaves the state drops out of it (follow every change unfiltered or on /ws/alerts).
    """
    if state is not None:
        index = keys.alerts_state_index(state, camera)
    else:
        index = keys.ALERTS_INDEX if camera is None else keys.camera_alerts_index(camera)
    alerts, cursor = page_index(r, index, since, limit, keys.alert_key, Alert, "alert")
    return AlertPage(alerts=alerts, next_cursor=cursor)


def get_alert(r: redis.Redis, alert_id: str) -> Alert | None:
    data = r.get(keys.alert_key(alert_id))
    return None if data is None else decode_json(cast(bytes, data), Alert, "alert")


def read_alert_events(
    r: redis.Redis, last_id: str = "$", block_ms: int | None = None, count: int = 100
) -> list[tuple[str, AlertEvent]]:
    """Alert events after stream id `last_id` ("$" = only new ones), oldest first; XREAD, optionally blocking."""
    resp: Any = r.xread({keys.ALERT_EVENTS_STREAM: last_id}, count=count, block=block_ms) or []
    return [(i.decode(), decode_json(f[b"d"], AlertEvent, "alert event")) for _, entries in resp for i, f in entries]


# --- alert thumbnails -------------------------------------------------------------------------------------


def put_frame_thumbs(r: AnyRedis, camera: str, thumbs: Mapping[int, bytes]) -> None:
    """Keep the JPEG of each scored frame for `keys.FRAME_THUMB_TTL_S` (frame index -> JPEG bytes)."""
    pipe = r.pipeline(transaction=False)
    for frame, jpeg in thumbs.items():
        pipe.set(keys.frame_thumb_key(camera, frame), jpeg, ex=keys.FRAME_THUMB_TTL_S)
    pipe.execute()


def keep_alert_thumb(r: redis.Redis, alert: Alert, retention_s: int) -> bool:
    """Copy the peak frame's JPEG to the alert's thumbnail (with the alert's retention); False if it is gone."""
    jpeg = r.get(keys.frame_thumb_key(alert.camera, alert.peak_frame))
    if jpeg is None:
        return False
    r.set(keys.alert_thumb_key(alert.id), cast(bytes, jpeg), ex=retention_s)
    return True


def get_alert_thumb(r: redis.Redis, alert_id: str) -> bytes | None:
    data = r.get(keys.alert_thumb_key(alert_id))
    return None if data is None else cast(bytes, data)

"""The alert outbox: alert and incident changes travel from a camera's partition to the global alert store.

A camera's scoring transaction (worker/ordering.py; feedback in alerts/annotate.py) decides its alert changes together
with its scoring state. On a Redis Cluster those live in the camera's partition, while the alert store (documents,
revision counter, cursor indexes, the event stream) is global (keys.py), and one transaction cannot span both slots.
So the transaction appends each change to its partition's outbox (`queue_alert_event`, `queue_incident`), and
`relay_outbox` applies the outbox to the global store in order, each entry exactly once: the apply script records
the id of the last entry it applied per partition in the global store itself and skips any entry at or below it, so
relays racing for the same partition, or a relay repeated after a crash between applying and deleting, change
nothing twice. The worker relays right after its transaction and sweeps every partition periodically, so a change
whose relay failed (the global shard briefly away) lands as soon as it is back. One path on a standalone Redis too.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import redis

from service.alerts.schema import ALERT_FILTERS, Incident, alert_filters
from service.bus import keys
from service.bus.topics.codec import AnyRedis, Arg, decode_json, encode_json, run_script
from service.errors import MessageError
from service.messages import AlertEvent

log = logging.getLogger(__name__)

OUTBOX_MAXLEN = 100_000  # a last line of defence: relayed entries are deleted at once

# Apply only entries after the partition's last applied one; KEYS[1] the applied hash, ARGV[1..3] partition and entry id
# (ms, seq). The body then reads its own keys and arguments from K and A.
_ONCE = """
local last = redis.call('HGET', KEYS[1], ARGV[1])
local ms, sq = tonumber(ARGV[2]), tonumber(ARGV[3])
if last then
  local lms, lsq = string.match(last, '(%d+)-(%d+)')
  lms, lsq = tonumber(lms), tonumber(lsq)
  if ms < lms or (ms == lms and sq <= lsq) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '-' .. ARGV[3])
local K, A = {}, {}
for i = 2, #KEYS do K[i - 1] = KEYS[i] end
for i = 4, #ARGV do A[i - 3] = ARGV[i] end
"""

# What every change does: the next revision, the document with its retention, both cursor indexes (all and camera).
_STORE = """
local rev = redis.call('INCR', K[1])
redis.call('SET', K[2], A[1], 'EX', A[2])
redis.call('ZADD', K[3], rev, A[3])
redis.call('ZADD', K[4], rev, A[3])
"""

# An alert change also appends its event and moves the alert between the state indexes: K[6..] are the ALERT_FILTERS
# indexes of every camera, then of the alert's camera; A[6..] says (1/0) for each filter whether the alert is in it.
_APPLY_ALERT = (
    _ONCE
    + _STORE
    + """
redis.call('XADD', K[5], 'MAXLEN', '~', A[5], '*', 'd', A[4], 'rev', rev)
local n = #A - 5
for i = 1, n do
  for _, key in ipairs({K[5 + i], K[5 + n + i]}) do
    if A[5 + i] == '1' then redis.call('ZADD', key, rev, A[3]) else redis.call('ZREM', key, A[3]) end
  end
end
return rev
"""
)

_APPLY_INCIDENT = _ONCE + _STORE + "return rev\n"


def queue_alert_event(pipe: AnyRedis, event: AlertEvent, retention_s: int) -> None:
    """Queue an alert change in its camera's outbox (in the caller's transaction); `relay_outbox` stores it."""
    _queue(pipe, event.alert.camera, b"alert", encode_json(event), retention_s)


def queue_incident(pipe: AnyRedis, incident: Incident, retention_s: int) -> None:
    """Queue an incident change in its camera's outbox (in the caller's transaction); `relay_outbox` stores it."""
    _queue(pipe, incident.camera, b"incident", encode_json(incident), retention_s)


def save_alert_event(r: redis.Redis, event: AlertEvent, retention_s: int) -> None:
    """Store one alert change now (queued and relayed at once), for a writer outside any camera transaction."""
    queue_alert_event(r, event, retention_s)
    relay_outbox(r, keys.partition_of(event.alert.camera))


def save_incident(r: redis.Redis, incident: Incident, retention_s: int) -> None:
    """Store one incident change now (queued and relayed at once), for a writer outside any camera transaction."""
    queue_incident(r, incident, retention_s)
    relay_outbox(r, keys.partition_of(incident.camera))


def _queue(pipe: AnyRedis, camera: str, kind: bytes, doc: bytes, retention_s: int) -> None:
    stream = keys.alert_outbox(keys.partition_of(camera))
    pipe.xadd(stream, {"k": kind, "d": doc, "ret": retention_s}, maxlen=OUTBOX_MAXLEN, approximate=True)


def relay_outbox(r: redis.Redis, partition: int, batch: int = 100) -> int:
    """Apply a partition's queued changes to the global alert store, oldest first; returns how many were applied now
    (entries another relay applied first are skipped). Applied and malformed entries leave the outbox."""
    stream = keys.alert_outbox(partition)
    applied = 0
    while True:
        entries: Any = r.xrange(stream, "-", "+", count=batch)
        for entry_id, fields in entries:
            try:
                applied += _apply(r, partition, entry_id.decode(), fields)
            except MessageError as e:
                log.error("alert outbox of partition %d: entry %s dropped: %s", partition, entry_id.decode(), e)
        if entries:
            r.xdel(stream, *(entry_id for entry_id, _ in entries))
        if len(entries) < batch:
            return applied


def relay_all(r: redis.Redis) -> int:
    """`relay_outbox` for every partition (the worker's periodic sweep)."""
    return sum(relay_outbox(r, p) for p in range(keys.partitions()))


def _apply(r: redis.Redis, partition: int, entry_id: str, fields: dict[bytes, bytes]) -> int:
    ms, _, seq = entry_id.partition("-")
    once_keys: list[str] = [keys.OUTBOX_APPLIED_HASH]
    once_args: list[Arg] = [partition, ms, seq]
    kind, doc, retention_s = fields.get(b"k"), fields.get(b"d", b""), int(fields.get(b"ret", b"0"))
    if kind == b"alert":
        event = decode_json(doc, AlertEvent, "alert event")
        a = event.alert
        now_in = alert_filters(a)
        alert_keys = [
            keys.ALERT_REVISION_KEY,
            keys.alert_key(a.id),
            keys.ALERTS_INDEX,
            keys.camera_alerts_index(a.camera),
            keys.ALERT_EVENTS_STREAM,
            *(keys.alerts_state_index(f) for f in ALERT_FILTERS),
            *(keys.alerts_state_index(f, a.camera) for f in ALERT_FILTERS),
        ]
        args: list[Arg] = [encode_json(a), retention_s, a.id, doc, keys.ALERT_EVENTS_MAXLEN]
        args += ["1" if f in now_in else "0" for f in ALERT_FILTERS]
        rev = run_script(r, _APPLY_ALERT, once_keys + alert_keys, [*once_args, *args])
    elif kind == b"incident":
        incident = decode_json(doc, Incident, "incident")
        incident_keys = [
            keys.INCIDENT_REVISION_KEY,
            keys.incident_key(incident.id),
            keys.INCIDENTS_INDEX,
            keys.camera_incidents_index(incident.camera),
        ]
        rev = run_script(r, _APPLY_INCIDENT, once_keys + incident_keys, [*once_args, doc, retention_s, incident.id])
    else:
        msg = f"unknown outbox entry kind {kind!r} (expected alert or incident)"
        raise MessageError(msg)
    return 1 if cast(int, rev) else 0

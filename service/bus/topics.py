"""Typed publish/read helpers for every topic on the bus; the only module that (de)serialises messages.

Windows carry raw frame bytes plus a JSON header with explicit dtype and shape; everything else is one
JSON document per entry (field `d`). Readers check `schema_version` and raise `MessageError` (or its
subclass `SchemaVersionError`) saying what was wrong. Key names come from `service.bus.keys`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import redis
from pydantic import BaseModel, ValidationError

from service.bus import keys
from service.errors import MessageError, SchemaVersionError
from service.messages import (
    SCHEMA_VERSION,
    Alert,
    AlertEvent,
    AlertPage,
    CameraConfig,
    CameraStatus,
    ControlMsg,
    Heartbeat,
    JobRecord,
    ScoredWindow,
    ScoreMsg,
    ScoringState,
    WindowMsg,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
Fields = Mapping[bytes, bytes]
AnyRedis = redis.Redis | redis.client.Pipeline

# INCR the camera's sequence and XADD in one step, so a window never reaches the stream without its seq
# and a seq is never taken without a window (backpressure drops happen before publishing: no gaps).
_PUBLISH_WINDOW = """
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'v', ARGV[2], 'seq', seq, 'h', ARGV[3], 'f', ARGV[4])
return {seq, id}
"""

# One alert change: next revision, alert document with retention, both indexes, the event.
_SAVE_ALERT = """
local rev = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[3], rev, ARGV[3])
redis.call('ZADD', KEYS[4], rev, ARGV[3])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'd', ARGV[4], 'rev', rev)
return rev
"""


# --- decoding helpers ---------------------------------------------------------------------------------


def decode_json(data: bytes | str, cls: type[M], what: str) -> M:
    """Parse one JSON message; wrong schema version or invalid content -> MessageError saying which."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        msg = f"malformed {what}: not JSON ({e})"
        raise MessageError(msg) from e
    if not isinstance(raw, dict):
        msg = f"malformed {what}: expected a JSON object, got {type(raw).__name__}"
        raise MessageError(msg)
    _check_version(raw.get("schema_version"), what)
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        msg = f"malformed {what}: {_errors(e)}"
        raise MessageError(msg) from e


def _check_version(version: Any, what: str) -> None:
    if version != SCHEMA_VERSION:
        msg = (
            f"{what} has schema_version {version!r} but this process reads version {SCHEMA_VERSION}; "
            "run the same vigil version in every process"
        )
        raise SchemaVersionError(msg)


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in e.errors())


def _encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


# --- windows ------------------------------------------------------------------------------------------


def encode_window(window: WindowMsg) -> dict[str, bytes]:
    """Stream fields of a window: v (schema), h (JSON header with dtype/shape), f (C-order frame bytes)."""
    header = window.model_dump(mode="json", exclude={"frames", "seq"})
    header["dtype"] = str(window.frames.dtype)
    header["shape"] = list(window.frames.shape)
    return {
        "v": str(SCHEMA_VERSION).encode(),
        "h": json.dumps(header).encode(),
        "f": np.ascontiguousarray(window.frames).tobytes(),
    }


def decode_window(fields: Fields) -> WindowMsg:
    """Inverse of `encode_window` plus the `seq` field added at publish time."""
    try:
        version = int(fields[b"v"])
        header = json.loads(fields[b"h"])
        seq = int(fields[b"seq"])
        data = fields[b"f"]
    except (KeyError, ValueError) as e:
        msg = f"malformed window: fields v, seq, h (JSON), f (bytes) are required ({type(e).__name__}: {e})"
        raise MessageError(msg) from e
    _check_version(version, "window")
    if not isinstance(header, dict):
        msg = "malformed window: header is not a JSON object"
        raise MessageError(msg)
    dtype, shape = header.pop("dtype", None), header.pop("shape", None)
    if dtype != "uint8" or not isinstance(shape, list) or len(shape) != 4:
        msg = f"malformed window: frames must be uint8 with a 4-d shape, header says dtype={dtype!r} shape={shape!r}"
        raise MessageError(msg)
    if int(np.prod(shape)) != len(data):
        msg = f"malformed window: shape {shape} needs {int(np.prod(shape))} bytes, got {len(data)}"
        raise MessageError(msg)
    frames = np.frombuffer(data, dtype=np.uint8).reshape(shape)
    try:
        return WindowMsg.model_validate({**header, "seq": seq, "frames": frames})
    except ValidationError as e:
        msg = f"malformed window: {_errors(e)}"
        raise MessageError(msg) from e


def publish_window(r: redis.Redis, window: WindowMsg, maxlen: int = keys.WINDOWS_MAXLEN) -> tuple[int, str]:
    """Assign the camera's next seq and append the window to WINDOWS_STREAM; returns (seq, entry id)."""
    f = encode_window(window)
    script = r.register_script(_PUBLISH_WINDOW)
    seq, entry_id = cast(
        list[Any],
        script(keys=[keys.WINDOWS_STREAM, keys.camera_seq_key(window.camera)], args=[maxlen, f["v"], f["h"], f["f"]]),
    )
    return int(seq), entry_id.decode()


def ensure_window_group(r: redis.Redis) -> None:
    """Create the workers' consumer group (and the stream) if missing; safe to call again at any time."""
    try:
        r.xgroup_create(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


WindowEntry = tuple[str, WindowMsg | MessageError]


def _decode_entries(entries: Sequence[Any]) -> list[WindowEntry]:
    out: list[WindowEntry] = []
    for entry_id, fields in entries:
        if fields is None:  # deleted by MAXLEN trimming while pending
            continue
        try:
            out.append((entry_id.decode(), decode_window(fields)))
        except MessageError as e:
            out.append((entry_id.decode(), e))
    return out


def read_windows(r: redis.Redis, consumer: str, count: int, block_ms: int | None) -> list[WindowEntry]:
    """New windows for this consumer (XREADGROUP >). Undecodable entries come back as MessageError to ack."""
    resp: Any = r.xreadgroup(keys.WINDOWS_GROUP, consumer, {keys.WINDOWS_STREAM: ">"}, count=count, block=block_ms)
    if not resp:
        return []
    return _decode_entries(resp[0][1])


def claim_stale_windows(r: redis.Redis, consumer: str, min_idle_ms: int, count: int = 100) -> list[WindowEntry]:
    """XAUTOCLAIM windows pending longer than `min_idle_ms` (their worker died) for `consumer`."""
    out: list[WindowEntry] = []
    start = "0-0"
    while True:
        resp = r.xautoclaim(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, consumer, min_idle_ms, start, count=count)
        start, entries = resp[0], resp[1]
        deleted = resp[2] if len(resp) > 2 else []
        if deleted:
            log.warning("%d pending windows were trimmed from the stream before they were scored", len(deleted))
        out.extend(_decode_entries(entries))
        if start in (b"0-0", "0-0") or len(out) >= count:
            return out


def ack_windows(r: AnyRedis, entry_ids: Sequence[str]) -> None:
    if entry_ids:
        r.xack(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, *entry_ids)


def window_backlog(r: redis.Redis) -> tuple[int, int, int]:
    """(entries in WINDOWS_STREAM, lag = not yet delivered to any worker, pending = delivered, not acked)."""
    length = int(r.xlen(keys.WINDOWS_STREAM))
    groups: Any = r.xinfo_groups(keys.WINDOWS_STREAM)
    for group in groups:
        if group["name"] in (keys.WINDOWS_GROUP, keys.WINDOWS_GROUP.encode()):
            lag = group.get("lag")
            return length, int(lag) if lag is not None else length, int(group["pending"])
    return length, length, 0


def camera_backlog(r: redis.Redis, camera: str) -> int:
    """Windows of a camera published but not yet scored (published seq - last scored seq)."""
    published = r.get(keys.camera_seq_key(camera))
    state = load_scoring_state(r, camera)
    return max(0, int(published or 0) - (state.next_seq - 1))


# --- per-camera scoring state and stashed results (worker/ordering.py) ---------------------------------


def stash_result(r: AnyRedis, result: ScoredWindow) -> None:
    r.hset(keys.camera_results_key(result.camera), str(result.seq), _encode(result))
    r.sadd(keys.RESULTS_WAITING_SET, result.camera)


def load_results(r: redis.Redis, camera: str) -> dict[int, ScoredWindow]:
    raw = cast(dict[bytes, bytes], r.hgetall(keys.camera_results_key(camera)))
    return {int(k): decode_json(v, ScoredWindow, "scored window") for k, v in raw.items()}


def load_scoring_state(r: redis.Redis, camera: str) -> ScoringState:
    data = r.get(keys.camera_state_key(camera))
    return ScoringState() if data is None else decode_json(cast(bytes, data), ScoringState, "scoring state")


def save_scoring_state(pipe: AnyRedis, camera: str, state: ScoringState) -> None:
    pipe.set(keys.camera_state_key(camera), _encode(state))


# --- scores -------------------------------------------------------------------------------------------


def add_scores(pipe: AnyRedis, scores: Sequence[ScoreMsg]) -> None:
    """Append per-frame scores to their camera streams and set each camera's latest score."""
    latest: dict[str, bytes] = {}
    for s in scores:
        data = _encode(s)
        pipe.xadd(keys.score_stream_key(s.camera), {"d": data}, maxlen=keys.SCORES_MAXLEN, approximate=True)
        latest[s.camera] = data
    for camera, data in latest.items():
        pipe.set(keys.latest_score_key(camera), data)


def read_scores(
    r: redis.Redis, camera: str, start: str = "-", end: str = "+", count: int | None = 1000
) -> list[tuple[str, ScoreMsg]]:
    """Scores of a camera between two stream ids (inclusive; "(" prefix = exclusive), oldest first."""
    entries: Any = r.xrange(keys.score_stream_key(camera), start, end, count=count)
    return [(i.decode(), decode_json(f[b"d"], ScoreMsg, "score")) for i, f in entries]


def read_new_scores(
    r: redis.Redis, last_ids: Mapping[str, str], block_ms: int | None = None, count: int = 500
) -> list[tuple[str, str, ScoreMsg]]:
    """(camera, id, score) newer than `last_ids[camera]` ("$" = only new ones); XREAD, optionally blocking."""
    streams: Any = {keys.score_stream_key(c): i for c, i in last_ids.items()}
    resp: Any = r.xread(streams, count=count, block=block_ms) or []
    out: list[tuple[str, str, ScoreMsg]] = []
    for stream, entries in resp:
        camera = stream.decode().removeprefix(f"{keys.PREFIX}:scores:")
        out.extend((camera, i.decode(), decode_json(f[b"d"], ScoreMsg, "score")) for i, f in entries)
    return out


def latest_score(r: redis.Redis, camera: str) -> ScoreMsg | None:
    data = r.get(keys.latest_score_key(camera))
    return None if data is None else decode_json(cast(bytes, data), ScoreMsg, "score")


# --- alerts -------------------------------------------------------------------------------------------


def save_alert_event(pipe: AnyRedis, event: AlertEvent, retention_s: int) -> None:
    """Store the alert (expiring after `retention_s`), index it for cursor paging and append the event."""
    a = event.alert
    pipe.register_script(_SAVE_ALERT)(
        keys=[
            keys.ALERT_REVISION_KEY,
            keys.alert_key(a.id),
            keys.ALERTS_INDEX,
            keys.camera_alerts_index(a.camera),
            keys.ALERT_EVENTS_STREAM,
        ],
        args=[_encode(a), retention_s, a.id, _encode(event), keys.ALERT_EVENTS_MAXLEN],
        client=pipe,
    )


def list_alerts(r: redis.Redis, since: int = 0, limit: int = 100, camera: str | None = None) -> AlertPage:
    """Alerts changed after cursor `since` (0 = from the start), oldest change first, at most `limit`.

    An alert comes back again after each change (opened, peak raised, closed); `next_cursor` goes into
    the next call's `since`. Expired alerts are dropped from the index as they are met.
    """
    if limit < 1:
        msg = f"limit must be >= 1, got {limit}"
        raise ValueError(msg)
    index = keys.ALERTS_INDEX if camera is None else keys.camera_alerts_index(camera)
    alerts: list[Alert] = []
    cursor = since
    while len(alerts) < limit:
        page: Any = r.zrangebyscore(index, f"({cursor}", "+inf", start=0, num=limit - len(alerts), withscores=True)
        if not page:
            break
        ids = [m.decode() for m, _ in page]
        docs = r.mget([keys.alert_key(i) for i in ids])
        expired = [i for i, d in zip(ids, docs, strict=True) if d is None]
        if expired:
            r.zrem(index, *expired)
        alerts.extend(decode_json(d, Alert, "alert") for d in docs if d is not None)
        cursor = int(page[-1][1])
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


# --- cameras, control and status ------------------------------------------------------------------------


def put_camera(r: redis.Redis, camera: CameraConfig) -> None:
    """Create or replace a camera and tell the ingesters (CONTROL_CHANNEL)."""
    r.hset(keys.CAMERAS_HASH, camera.id, _encode(camera))
    r.publish(keys.CONTROL_CHANNEL, _encode(ControlMsg(op="put", camera=camera.id)))


def delete_camera(r: redis.Redis, camera_id: str) -> bool:
    """Remove a camera and its status; returns False when it did not exist."""
    removed = int(r.hdel(keys.CAMERAS_HASH, camera_id))
    r.hdel(keys.CAMERA_STATUS_HASH, camera_id)
    if removed:
        r.publish(keys.CONTROL_CHANNEL, _encode(ControlMsg(op="delete", camera=camera_id)))
    return bool(removed)


def get_camera(r: redis.Redis, camera_id: str) -> CameraConfig | None:
    data = r.hget(keys.CAMERAS_HASH, camera_id)
    return None if data is None else decode_json(cast(bytes, data), CameraConfig, f"camera {camera_id!r}")


def list_cameras(r: redis.Redis) -> list[CameraConfig]:
    """Every camera, sorted by id; an entry that no longer decodes is logged and left out."""
    out = []
    for cid, data in sorted(cast(dict[bytes, bytes], r.hgetall(keys.CAMERAS_HASH)).items()):
        try:
            out.append(decode_json(data, CameraConfig, f"camera {cid.decode()!r}"))
        except MessageError as e:
            log.error("skipping camera %s: %s", cid.decode(), e)
    return out


def subscribe_control(r: redis.Redis) -> redis.client.PubSub:
    """A pub/sub subscribed to CONTROL_CHANNEL; pass each message's data to `decode_control`."""
    pubsub: redis.client.PubSub = r.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(keys.CONTROL_CHANNEL)
    return pubsub


def decode_control(data: bytes) -> ControlMsg:
    return decode_json(data, ControlMsg, "control message")


def set_camera_status(r: AnyRedis, status: CameraStatus) -> None:
    r.hset(keys.CAMERA_STATUS_HASH, status.camera, _encode(status))


def get_camera_status(r: redis.Redis, camera_id: str) -> CameraStatus | None:
    data = r.hget(keys.CAMERA_STATUS_HASH, camera_id)
    return None if data is None else decode_json(cast(bytes, data), CameraStatus, "camera status")


def list_camera_statuses(r: redis.Redis) -> dict[str, CameraStatus]:
    raw = cast(dict[bytes, bytes], r.hgetall(keys.CAMERA_STATUS_HASH))
    return {k.decode(): decode_json(v, CameraStatus, "camera status") for k, v in raw.items()}


# --- heartbeats -----------------------------------------------------------------------------------------


def write_heartbeat(r: redis.Redis, heartbeat: Heartbeat, ttl_s: float) -> None:
    r.set(keys.heartbeat_key(heartbeat.component, heartbeat.id), _encode(heartbeat), px=int(ttl_s * 1000))


def read_heartbeats(r: redis.Redis, component: str) -> list[Heartbeat]:
    """Live heartbeats of a component (expired ones are gone from Redis), by id."""
    names = sorted(r.scan_iter(match=keys.heartbeat_pattern(component), count=500))
    docs = r.mget(names) if names else []
    return [decode_json(d, Heartbeat, "heartbeat") for d in docs if d is not None]


def clear_heartbeat(r: redis.Redis, component: str, process_id: str) -> None:
    r.delete(keys.heartbeat_key(component, process_id))


# --- batch re-scoring jobs ------------------------------------------------------------------------------

# Publish a job's window only if it starts at the job's next unpublished frame, and record the new next frame
# in the same step: a resumed or duplicate reader can then never put a frame on the bus twice.
_PUBLISH_JOB_WINDOW = """
local next_frame = redis.call('HGET', KEYS[3], 'next_frame')
if next_frame and tonumber(next_frame) ~= tonumber(ARGV[5]) then return {0, tonumber(next_frame)} end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'v', ARGV[2], 'seq', seq, 'h', ARGV[3], 'f', ARGV[4])
redis.call('HSET', KEYS[3], 'next_frame', ARGV[6], 'last_seq', seq)
return {seq, tonumber(ARGV[6])}
"""


def publish_job_window(r: redis.Redis, window: WindowMsg, maxlen: int = keys.WINDOWS_MAXLEN) -> tuple[int, int]:
    """Publish a job window exactly once; returns (seq, next frame), seq 0 when refused (not the next frame)."""
    if window.job_id is None:
        msg = f"window of {window.camera} has no job_id; use publish_window for cameras"
        raise ValueError(msg)
    f = encode_window(window)
    script = r.register_script(_PUBLISH_JOB_WINDOW)
    stream_keys = [keys.WINDOWS_STREAM, keys.camera_seq_key(window.camera), keys.job_progress_key(window.job_id)]
    end = window.first_frame + window.num_scored
    seq, next_frame = cast(
        list[Any], script(keys=stream_keys, args=[maxlen, f["v"], f["h"], f["f"], window.first_frame, end])
    )
    return int(seq), int(next_frame)


def put_job(r: AnyRedis, job: JobRecord) -> None:
    """Create or update a job; queued and running jobs are in JOBS_ACTIVE, where ingesters look for work."""
    r.set(keys.job_key(job.id), _encode(job))
    r.zadd(keys.JOBS_INDEX, {job.id: job.created_ts})
    if job.state in ("queued", "running"):
        r.sadd(keys.JOBS_ACTIVE, job.id)
    else:
        r.srem(keys.JOBS_ACTIVE, job.id)


def get_job(r: redis.Redis, job_id: str) -> JobRecord | None:
    data = r.get(keys.job_key(job_id))
    return None if data is None else decode_json(cast(bytes, data), JobRecord, f"job {job_id!r}")


def list_jobs(r: redis.Redis, limit: int = 100, offset: int = 0) -> list[JobRecord]:
    """Jobs newest first; a record that no longer decodes is logged and left out."""
    ids = [i.decode() for i in cast(list[bytes], r.zrevrange(keys.JOBS_INDEX, offset, offset + limit - 1))]
    docs = r.mget([keys.job_key(i) for i in ids]) if ids else []
    out = []
    for job_id, data in zip(ids, docs, strict=True):
        if data is None:
            continue
        try:
            out.append(decode_json(data, JobRecord, f"job {job_id!r}"))
        except MessageError as e:
            log.error("skipping job %s: %s", job_id, e)
    return out


def active_jobs(r: redis.Redis) -> list[str]:
    """Ids of queued and running jobs, sorted so every ingester walks them in the same order."""
    return sorted(m.decode() for m in cast(set[bytes], r.smembers(keys.JOBS_ACTIVE)))


def job_progress(r: redis.Redis, job_id: str) -> dict[str, str]:
    """The job's progress hash (see keys.job_progress_key) as text."""
    raw = cast(dict[bytes, bytes], r.hgetall(keys.job_progress_key(job_id)))
    return {k.decode(): v.decode() for k, v in raw.items()}


def set_job_progress(r: AnyRedis, job_id: str, fields: Mapping[str, str | int | float]) -> None:
    mapping: dict[Any, Any] = dict(fields)  # redis-py's Mapping type is invariant in its key type
    r.hset(keys.job_progress_key(job_id), mapping=mapping)


def job_scores_done(r: redis.Redis, job_id: str) -> bool:
    """True once every window the job published has been through the ordered publisher (scored or passed over)."""
    progress = job_progress(r, job_id)
    last_seq = int(progress.get("last_seq", 0))
    return load_scoring_state(r, keys.job_stream(job_id)).next_seq > last_seq


def expire_job_stream(r: redis.Redis, job_id: str, ttl_s: int, drop_scores: bool = True) -> None:
    """After a job ended: drop its score stream (its results are on disk), let its bookkeeping keys expire.

    The scoring state and seq counter outlive the job for `ttl_s`, so a late duplicate window is recognised.
    A failed job may still have windows in flight: `drop_scores=False` lets its scores expire instead, so
    scores that arrive later land in a stream that still expires.
    """
    stream = keys.job_stream(job_id)
    scores = (keys.score_stream_key(stream), keys.latest_score_key(stream))
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.job_progress_key(job_id), *(scores if drop_scores else ()))
    expiring = (keys.camera_state_key(stream), keys.camera_seq_key(stream), keys.camera_results_key(stream))
    for key in expiring if drop_scores else expiring + scores:
        pipe.expire(key, ttl_s)
    pipe.execute()


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


def delete_job(r: redis.Redis, job_id: str) -> bool:
    """Remove a job's record from every index; returns False when it did not exist."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.job_key(job_id), keys.job_progress_key(job_id))
    pipe.zrem(keys.JOBS_INDEX, job_id)
    pipe.srem(keys.JOBS_ACTIVE, job_id)
    removed = cast(list[int], pipe.execute())[0]
    return bool(removed)


def announce_job(r: redis.Redis, job_id: str) -> None:
    """Tell the ingesters a job is queued (a control message for its stream id): they tick at once instead of
    finding it on their next periodic tick."""
    r.publish(keys.CONTROL_CHANNEL, _encode(ControlMsg(op="put", camera=keys.job_stream(job_id))))

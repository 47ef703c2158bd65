"""The camera registry, control messages, camera status and process heartbeats."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import cast

import redis

from service.bus import keys
from service.bus.topics.codec import AnyRedis, decode_json, encode_json
from service.errors import MessageError
from service.messages import (
    CameraConfig,
    CameraStatus,
    ControlMsg,
    Heartbeat,
)

log = logging.getLogger(__name__)


# --- cameras, control and status ------------------------------------------------------------------------


def put_camera(r: redis.Redis, camera: CameraConfig) -> None:
    """Create or replace a camera and tell the ingesters (CONTROL_CHANNEL)."""
    r.hset(keys.CAMERAS_HASH, camera.id, encode_json(camera))
    r.publish(keys.CONTROL_CHANNEL, encode_json(ControlMsg(op="put", camera=camera.id)))


def delete_camera(r: redis.Redis, camera_id: str) -> bool:
    """Remove a camera and its status; returns False when it did not exist."""
    removed = int(r.hdel(keys.CAMERAS_HASH, camera_id))
    r.hdel(keys.CAMERA_STATUS_HASH, camera_id)
    r.delete(keys.camera_playback_key(camera_id))  # a file camera added again plays its file again
    r.hdel(keys.CAMERA_HEALTH_HASH, camera_id)  # its health and reference views: added again, it learns its view anew
    r.delete(keys.camera_health_memory_key(camera_id))
    if removed:
        r.publish(keys.CONTROL_CHANNEL, encode_json(ControlMsg(op="delete", camera=camera_id)))
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


def dataset_epoch(r: redis.Redis) -> str:
    """The id of the data Redis holds (keys.DATASET_EPOCH), created if missing; a new id means the data was lost."""
    r.set(keys.DATASET_EPOCH, uuid.uuid4().hex, nx=True)
    return cast(bytes, r.get(keys.DATASET_EPOCH)).decode()


def restore_cameras(r: redis.Redis, cameras: Iterable[CameraConfig]) -> list[str]:
    """Write back cameras the registry lost (HSETNX: one that exists again is left as it is) and tell the
    ingesters; returns the ids written."""
    cameras = list(cameras)
    pipe = r.pipeline(transaction=False)
    for camera in cameras:
        pipe.hsetnx(keys.CAMERAS_HASH, camera.id, encode_json(camera))
    written = [c.id for c, new in zip(cameras, cast(list[int], pipe.execute()), strict=True) if new]
    for camera_id in written:
        r.publish(keys.CONTROL_CHANNEL, encode_json(ControlMsg(op="put", camera=camera_id)))
    return written


def subscribe_control(r: redis.Redis) -> redis.client.PubSub:
    """A pub/sub subscribed to CONTROL_CHANNEL; pass each message's data to `decode_control`."""
    pubsub: redis.client.PubSub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.CONTROL_CHANNEL)
    return pubsub


def decode_control(data: bytes) -> ControlMsg:
    return decode_json(data, ControlMsg, "control message")


def set_camera_status(r: AnyRedis, status: CameraStatus) -> None:
    r.hset(keys.CAMERA_STATUS_HASH, status.camera, encode_json(status))


def get_camera_status(r: redis.Redis, camera_id: str) -> CameraStatus | None:
    data = r.hget(keys.CAMERA_STATUS_HASH, camera_id)
    return None if data is None else decode_json(cast(bytes, data), CameraStatus, "camera status")


def list_camera_statuses(r: redis.Redis) -> dict[str, CameraStatus]:
    raw = cast(dict[bytes, bytes], r.hgetall(keys.CAMERA_STATUS_HASH))
    return {k.decode(): decode_json(v, CameraStatus, "camera status") for k, v in raw.items()}


# --- heartbeats -----------------------------------------------------------------------------------------


def write_heartbeat(r: redis.Redis, heartbeat: Heartbeat, ttl_s: float) -> None:
    r.set(keys.heartbeat_key(heartbeat.component, heartbeat.id), encode_json(heartbeat), px=int(ttl_s * 1000))


def read_heartbeats(r: redis.Redis, component: str) -> list[Heartbeat]:
    """Live heartbeats of a component (expired ones are gone from Redis), by id."""
    names = sorted(r.scan_iter(match=keys.heartbeat_pattern(component), count=500))
    docs = r.mget(names) if names else []
    return [decode_json(d, Heartbeat, "heartbeat") for d in docs if d is not None]


def clear_heartbeat(r: redis.Redis, component: str, process_id: str) -> None:
    r.delete(keys.heartbeat_key(component, process_id))

"""Camera health: each camera's state (ok or its raised conditions), the event stream, and the monitor's memory."""

from __future__ import annotations

from typing import Any, cast

import redis

from models.health.monitor import HealthMemory
from service.bus import keys
from service.bus.topics.codec import AnyRedis, decode_json, encode_json, is_pipeline
from service.messages import CameraHealth, HealthEvent


def set_camera_health(r: AnyRedis, health: CameraHealth) -> None:
    r.hset(keys.CAMERA_HEALTH_HASH, health.camera, encode_json(health))


def get_camera_health(r: redis.Redis, camera_id: str) -> CameraHealth | None:
    data = r.hget(keys.CAMERA_HEALTH_HASH, camera_id)
    return None if data is None else decode_json(cast(bytes, data), CameraHealth, "camera health")


def list_camera_health(r: redis.Redis) -> dict[str, CameraHealth]:
    raw = cast(dict[bytes, bytes], r.hgetall(keys.CAMERA_HEALTH_HASH))
    return {k.decode(): decode_json(v, CameraHealth, "camera health") for k, v in raw.items()}


def publish_health_event(r: AnyRedis, event: HealthEvent) -> None:
    """Record a raised or cleared condition: the camera's new health and the event, in one transaction."""
    pipe: Any = r if is_pipeline(r) else r.pipeline(transaction=True)
    pipe.hset(keys.CAMERA_HEALTH_HASH, event.camera, encode_json(event.health))
    pipe.xadd(keys.HEALTH_EVENTS_STREAM, {"d": encode_json(event)}, maxlen=keys.HEALTH_EVENTS_MAXLEN, approximate=True)
    if pipe is not r:
        pipe.execute()


def read_health_events(
    r: redis.Redis, last_id: str = "$", block_ms: int | None = None, count: int = 100
) -> list[tuple[str, HealthEvent]]:
    """Health events after stream id `last_id` ("$" = only new ones), oldest first; XREAD, optionally blocking."""
    resp: Any = r.xread({keys.HEALTH_EVENTS_STREAM: last_id}, count=count, block=block_ms) or []
    return [(i.decode(), decode_json(f[b"d"], HealthEvent, "health event")) for _, entries in resp for i, f in entries]


def load_health_memory(r: redis.Redis, camera_id: str) -> HealthMemory | None:
    data = r.get(keys.camera_health_memory_key(camera_id))
    if data is None:
        return None
    return HealthMemory.model_validate_json(cast(bytes, data))


def save_health_memory(r: AnyRedis, camera_id: str, memory: HealthMemory) -> None:
    r.set(keys.camera_health_memory_key(camera_id), memory.model_dump_json())

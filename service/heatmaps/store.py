"""Coarse localisation maps in Redis: per scored live frame for `FRAME_MAP_TTL_S`, copied to each alert's hash.

One map is `encode_map`'s bytes: a 20-byte header (magic, the map's scale, the frame's pts or NaN, its height and
width) and h * w uint8 (models/heatmap.py: the amplitude, sqrt(map / scale) * 255). The worker writes the maps of
every frame a model with a localisation map scored (`put_frame_maps`, before publishing, like thumbnails); each alert
event copies the maps of the alert's frames known so far (start to end, or to the peak or the frame that opened it
while it is open) into `vigil:alert:<id>:heat` (`keep_alert_maps`), at most `ALERT_MAPS_MAX`. A frame whose map
expired before the alert's next event (an alert lasting longer than `FRAME_MAP_TTL_S` without a new peak) is missing
there; the peak's map is copied by the event that made it the peak.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import NamedTuple, cast

import numpy as np
import redis

from models.heatmap import dequantize
from service.bus import keys
from service.messages import Alert

_HEADER = struct.Struct("<4sfdHH")  # magic, scale, pts (NaN = unknown), h, w
_MAGIC = b"VHM1"


class FrameMap(NamedTuple):
    """The coarse map of one frame: its camera frame number, pts in source seconds (None unknown), map (h, w)
    float32 >= 0 (the method's units, e.g. squared error)."""

    frame: int
    pts: float | None
    map: np.ndarray


def encode_map(q: np.ndarray, scale: float, pts: float | None) -> bytes:
    """uint8 (h, w) quantised map (models.heatmap.quantize), its scale and the frame's pts -> bytes."""
    h, w = q.shape
    return _HEADER.pack(_MAGIC, scale, math.nan if pts is None else pts, h, w) + np.ascontiguousarray(q).tobytes()


def decode_map(frame: int, data: bytes) -> FrameMap:
    magic, scale, pts, h, w = _HEADER.unpack_from(data)
    if magic != _MAGIC or len(data) != _HEADER.size + h * w:
        msg = f"stored map of frame {frame} is not a heatmap ({len(data)} bytes)"
        raise ValueError(msg)
    q = np.frombuffer(data, dtype=np.uint8, offset=_HEADER.size).reshape(h, w)
    return FrameMap(frame, None if math.isnan(pts) else pts, dequantize(q, scale))


def put_frame_maps(
    r: redis.Redis,
    camera: str,
    first_frame: int,
    pts: Sequence[float | None],
    q: np.ndarray,
    scales: np.ndarray,
    ttl_s: int = keys.FRAME_MAP_TTL_S,
) -> None:
    """Keep the maps of a window's scored frames first_frame.. (q (N, h, w) uint8, scales (N,)) for `ttl_s`."""
    pipe = r.pipeline(transaction=False)
    for i in range(len(q)):
        t = pts[i] if i < len(pts) else None
        pipe.set(keys.frame_map_key(camera, first_frame + i), encode_map(q[i], float(scales[i]), t), ex=ttl_s)
    pipe.execute()


def spread(frames: Sequence[int], peak: int, limit: int) -> list[int]:
    """At most `limit` of the sorted `frames`, evenly spaced, always with `peak` if it is among them."""
    frames = list(frames)
    if len(frames) <= limit:
        return frames
    with_peak = peak in frames
    index = np.linspace(0, len(frames) - 1, limit - 1 if with_peak else limit).round().astype(int)
    picks = {frames[i] for i in index} | ({peak} if with_peak else set())
    return sorted(picks)


def keep_alert_maps(r: redis.Redis, alert: Alert, retention_s: int, limit: int = keys.ALERT_MAPS_MAX) -> int:
    """Copy the maps of the alert's frames known so far into its hash (with the alert's retention); returns how
    many maps the alert has now. Frames already there are not read again."""
    last = alert.end_frame
    if last is None:
        last = max(alert.peak_frame, alert.opened_frame or alert.start_frame)
    key = keys.alert_maps_key(alert.id)
    have = {int(f) for f in cast(list[bytes], r.hkeys(key))}
    wanted = [f for f in spread(range(alert.start_frame, last + 1), alert.peak_frame, limit) if f not in have]
    found = {}
    for start in range(0, len(wanted), 512):
        chunk = wanted[start : start + 512]
        values = cast(list[bytes | None], r.mget([keys.frame_map_key(alert.camera, f) for f in chunk]))
        found.update({f: v for f, v in zip(chunk, values, strict=True) if v is not None})
    if found:
        r.hset(key, mapping={str(f): v for f, v in found.items()})
    total = len(have) + len(found)
    if total > limit:  # an alert that grew: thin what it holds to an even spread again
        stored = sorted(have | set(found))
        keep = set(spread(stored, alert.peak_frame, limit))
        r.hdel(key, *[str(f) for f in stored if f not in keep])
        total = len(keep)
    if total:
        r.expire(key, retention_s)
    return total


def alert_maps(r: redis.Redis, alert_id: str) -> list[FrameMap]:
    """The stored maps of an alert's frames, in frame order (empty: none, or the alert is unknown or expired)."""
    raw = cast(dict[bytes, bytes], r.hgetall(keys.alert_maps_key(alert_id)))
    return sorted((decode_map(int(f), v) for f, v in raw.items()), key=lambda m: m.frame)

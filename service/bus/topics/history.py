"""Per-camera snippet features of `SnippetHistoryMethod` models: one key per frame, raw float32 bytes, with a TTL."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import redis

from service.bus import keys
from service.bus.topics.codec import AnyRedis

log = logging.getLogger(__name__)
_DTYPE = np.dtype("<f4")  # little-endian float32, whatever the host's byte order


def write_snippet_features(
    r: AnyRedis, camera: str, stream: str, model: str, first_frame: int, features: np.ndarray, ttl_s: int
) -> None:
    """Keep the (N, D) features of frames first_frame .. first_frame + N - 1 for `ttl_s` seconds (one round trip)."""
    if features.ndim != 2:
        msg = f"snippet features must be (N, D), got shape {features.shape}"
        raise ValueError(msg)
    data = np.ascontiguousarray(features, dtype=_DTYPE)
    pipe = r.pipeline(transaction=False)
    for i, row in enumerate(data):
        pipe.set(keys.snippet_feature_key(camera, stream, model, first_frame + i), row.tobytes(), ex=ttl_s)
    pipe.execute()


def read_snippet_features(
    r: redis.Redis, camera: str, stream: str, model: str, frames: list[int], dim: int
) -> dict[int, np.ndarray]:
    """frame -> (dim,) float32 feature for the frames still stored (one MGET); a missing frame is absent, and so
    is a value of the wrong size (logged: another model under the same version name, or a corrupted key)."""
    if not frames:
        return {}
    values: Any = r.mget([keys.snippet_feature_key(camera, stream, model, f) for f in frames])
    out: dict[int, np.ndarray] = {}
    for frame, value in zip(frames, values, strict=True):
        if value is None:
            continue
        if len(value) != dim * _DTYPE.itemsize:
            log.error(
                "camera %s: snippet feature of frame %d for %s has %d bytes, expected %d (%d float32); ignored",
                camera,
                frame,
                model,
                len(value),
                dim * _DTYPE.itemsize,
                dim,
            )
            continue
        out[frame] = np.frombuffer(value, dtype=_DTYPE).astype(np.float32)
    return out

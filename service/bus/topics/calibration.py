"""Per-camera calibration on the bus: the learned reference, learning buffers and the per-frame signal archive.

The archive (`keys.camera_signals_key`) holds one stream entry per published window: a packed array of per-frame
records (frame, capture time, score, smoothed value, flags, raw signals), about 33 bytes a frame for a one-signal
model plus the entry's own overhead. Replays, feedback and range learning read it back in bulk: the records of all
entries are joined and decoded in one `numpy.frombuffer`, so a day of one camera decodes in a fraction of a second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import redis

from models.calibration.camera import CameraReference
from service.bus import keys
from service.bus.topics.codec import AnyRedis, decode_json, encode_json
from service.errors import MessageError
from service.messages import SCHEMA_VERSION, CameraReferenceDoc

ARCHIVE_ENTRY_OVERHEAD_BYTES = 80  # measured per-entry cost of a Redis stream entry (ids, field names, listpack)
PROFILE_CODES = ("colour", "mono")
STATE_CODES = ("ready", "learning", "settling")
_ALERTABLE = 1  # flag bits: bit 0 alertable, bits 1-2 state code, bit 3 profile code


def record_dtype(num_signals: int) -> np.dtype[Any]:
    """One archived frame."""
    return np.dtype(
        [
            ("frame", "<i8"),
            ("ts", "<f8"),  # capture wall-clock time
            ("score", "<f4"),
            ("value", "<f4"),  # smoothed combined value minus drift: what the reference scored
            ("level", "<f4"),  # smoothed combined value before drift: what a new reference learns from
            ("flags", "u1"),
            ("raw", "<f4", (num_signals,)),
        ]
    )


@dataclass(frozen=True)
class SignalRecords:
    """Archived frames in time order, as arrays (one row per frame)."""

    frames: np.ndarray
    ts: np.ndarray
    scores: np.ndarray
    values: np.ndarray
    levels: np.ndarray
    alertable: np.ndarray
    states: np.ndarray  # index into STATE_CODES
    profiles: np.ndarray  # index into PROFILE_CODES
    raw: np.ndarray  # (N, S)
    models: list[str]  # models that scored the range, oldest first

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, mask: np.ndarray) -> SignalRecords:
        return SignalRecords(
            self.frames[mask],
            self.ts[mask],
            self.scores[mask],
            self.values[mask],
            self.levels[mask],
            self.alertable[mask],
            self.states[mask],
            self.profiles[mask],
            self.raw[mask],
            self.models,
        )


def pack_flags(alertable: np.ndarray, states: Sequence[str], profiles: Sequence[str]) -> np.ndarray:
    state = np.array([STATE_CODES.index(s) for s in states], dtype=np.uint8)
    profile = np.array([PROFILE_CODES.index(p) for p in profiles], dtype=np.uint8)
    return np.asarray(np.asarray(alertable, dtype=np.uint8) | (state << 1) | (profile << 3), dtype=np.uint8)


def encode_records(
    frames: np.ndarray,
    ts: np.ndarray,
    scores: np.ndarray,
    values: np.ndarray,
    levels: np.ndarray,
    flags: np.ndarray,
    raw: np.ndarray,
) -> bytes:
    raw = np.asarray(raw, dtype=np.float32).reshape(len(frames), -1)
    out = np.empty(len(frames), dtype=record_dtype(raw.shape[1]))
    out["frame"], out["ts"], out["score"] = frames, ts, scores
    out["value"], out["level"], out["flags"], out["raw"] = values, levels, flags, raw
    return out.tobytes()


def append_signals(pipe: AnyRedis, camera: str, model: str, num_signals: int, payload: bytes, retention_s: int) -> None:
    """Archive one window's records; entries older than `retention_s` are trimmed as new ones arrive."""
    min_id = f"{int((time.time() - retention_s) * 1000)}-0"
    fields = {"v": str(SCHEMA_VERSION), "s": str(num_signals), "m": model, "d": payload}
    pipe.xadd(keys.camera_signals_key(camera), fields, minid=min_id, approximate=True)  # type: ignore[arg-type]


def signals_span(r: redis.Redis, camera: str) -> tuple[float, float] | None:
    """(oldest, newest) capture time in the archive, or None when it is empty."""
    key = keys.camera_signals_key(camera)
    first: Any = r.xrange(key, "-", "+", count=1)
    last: Any = r.xrevrange(key, "+", "-", count=1)
    if not first or not last:
        return None
    return float(_decode_entries(first).ts[0]), float(_decode_entries(last).ts[-1])


def read_signals(r: redis.Redis, camera: str, start_ts: float, end_ts: float, slack_s: float = 120.0) -> SignalRecords:
    """Archived frames captured in [start_ts, end_ts], oldest first. Entries are found by their stream ids (publish
    time), so the search reaches `slack_s` beyond the range: longer than a window waits to be published."""
    key = keys.camera_signals_key(camera)
    lo, hi = f"{max(0, int((start_ts - slack_s) * 1000))}-0", f"{int((end_ts + slack_s) * 1000)}-0"
    records = _decode_entries(cast(list[Any], r.xrange(key, lo, hi)))
    return records.select((records.ts >= start_ts) & (records.ts <= end_ts))


def _decode_entries(entries: list[Any]) -> SignalRecords:
    """Stream entries -> records; consecutive entries with the same signal count decode in one frombuffer."""
    groups: list[tuple[int, list[bytes]]] = []
    models: list[str] = []
    for _, fields in entries:
        if fields.get(b"v") != str(SCHEMA_VERSION).encode():
            msg = f"signal archive entry has schema {fields.get(b'v')!r}; this process reads {SCHEMA_VERSION}"
            raise MessageError(msg)
        s, model = int(fields[b"s"]), fields[b"m"].decode()
        if not models or models[-1] != model:
            models.append(model)
        if groups and groups[-1][0] == s:
            groups[-1][1].append(fields[b"d"])
        else:
            groups.append((s, [fields[b"d"]]))
    return _to_records([np.frombuffer(b"".join(g), dtype=record_dtype(s)) for s, g in groups], models)


def _to_records(parts: list[np.ndarray], models: list[str]) -> SignalRecords:
    width = max((p.dtype["raw"].shape[0] for p in parts), default=1)
    if not parts:
        empty = np.empty(0)
        return SignalRecords(
            empty.astype(np.int64),
            empty,
            empty,
            empty,
            empty,
            empty.astype(bool),
            empty,
            empty,
            np.empty((0, width)),
            [],
        )
    flags = np.concatenate([p["flags"] for p in parts])
    raw = np.concatenate([_pad(p["raw"], width) for p in parts])
    return SignalRecords(
        frames=np.concatenate([p["frame"] for p in parts]),
        ts=np.concatenate([p["ts"] for p in parts]),
        scores=np.concatenate([p["score"] for p in parts]).astype(np.float64),
        values=np.concatenate([p["value"] for p in parts]).astype(np.float64),
        levels=np.concatenate([p["level"] for p in parts]).astype(np.float64),
        alertable=(flags & _ALERTABLE).astype(bool),
        states=(flags >> 1) & 0b11,
        profiles=(flags >> 3) & 0b1,
        raw=raw,
        models=models,
    )


def _pad(raw: np.ndarray, width: int) -> np.ndarray:
    """Records of models with fewer signals, padded with NaN (a range can span a model change)."""
    out = np.full((len(raw), width), np.nan, dtype=np.float32)
    out[:, : raw.shape[1]] = raw
    return out


# --- the learned reference and learning buffers -----------------------------------------------------------------


def load_reference(r: redis.Redis, camera: str) -> CameraReference | None:
    data = r.get(keys.camera_reference_key(camera))
    if data is None:
        return None
    return decode_json(cast(bytes, data), CameraReferenceDoc, "camera reference").reference


def save_reference(pipe: AnyRedis, camera: str, reference: CameraReference) -> None:
    pipe.set(keys.camera_reference_key(camera), encode_json(CameraReferenceDoc(reference=reference)))


class RedisLearnBuffer:
    """A `LearnBuffer` over Redis strings of float32 values: reads what is stored plus this drain's own writes;
    writes go into `apply(pipe)`, so they commit with the drain's transaction or not at all."""

    def __init__(self, r: redis.Redis, camera: str) -> None:
        self.r, self.camera = r, camera
        self._pending: dict[str, list[float]] = {}
        self._cleared: set[str] = set()

    def extend(self, profile: str, values: list[float]) -> None:
        self._pending.setdefault(profile, []).extend(values)

    def values(self, profile: str) -> np.ndarray:
        stored = (
            b""
            if profile in self._cleared
            else cast(bytes | None, self.r.get(keys.camera_learning_key(self.camera, profile))) or b""
        )
        pending = np.asarray(self._pending.get(profile, []), dtype=np.float32)
        return np.concatenate([np.frombuffer(stored, dtype=np.float32), pending]).astype(np.float64)

    def clear(self, profile: str) -> None:
        self._cleared.add(profile)
        self._pending.pop(profile, None)

    def apply(self, pipe: AnyRedis) -> None:
        for profile in self._cleared:
            pipe.delete(keys.camera_learning_key(self.camera, profile))
        for profile, values in self._pending.items():
            if values:
                pipe.append(keys.camera_learning_key(self.camera, profile), np.asarray(values, np.float32).tobytes())
        self._pending, self._cleared = {}, set()

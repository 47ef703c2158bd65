"""Per-camera calibration on the bus: the learned reference, learning buffers and the per-frame signal archive.

The archive holds packed arrays of per-frame records (frame, capture time, score, smoothed values, flags, raw
signals: 41 bytes a frame for a one-signal model, about 49 in Redis). The worker appends each window's records to
the camera's open chunk (`keys.camera_signals_open_key`, a hash) and, once it holds `ARCHIVE_CHUNK_FRAMES` frames or
spans
`ARCHIVE_CHUNK_S` seconds (or the model changes), moves it into the stream (`keys.camera_signals_key`, trimmed to the
retention by id), all in one script inside the drain's transaction. Large chunks keep the per-entry overhead small
and let a replay read a day of one camera as a few thousand entries, decoded in one `numpy.frombuffer` per group.
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
from service.bus.topics.codec import AnyRedis, decode_json, encode_json, run_script
from service.errors import MessageError
from service.messages import SCHEMA_VERSION, CameraReferenceDoc

ARCHIVE_CHUNK_FRAMES = 256  # frames per archive entry (about 9.5 KB for a one-signal model)
ARCHIVE_CHUNK_S = 30.0  # an open chunk older than this (capture time) is closed even if it is not full
READ_SLACK_S = 120.0  # stream ids are publish times: a range search reaches this far beyond the capture times
PROFILE_CODES = ("colour", "mono")
STATE_CODES = ("ready", "learning", "settling")
_ALERTABLE = 1  # flag bits: bit 0 alertable, bits 1-2 state code, bit 3 profile code


def record_dtype(num_signals: int) -> np.dtype[Any]:
    """One archived frame."""
    return np.dtype(
        [
            ("frame", "<i8"),
            ("ts", "<f8"),  # capture wall-clock time
            ("score", "<f8"),  # as published: replays compare it with thresholds exactly as the live machine did
            ("value", "<f4"),  # the scored smoothed value minus drift: what the reference scored
            ("level", "<f4"),  # the smoothed level (no cap, no drift): what references learn and feedback adds from
            ("drift", "<f4"),  # the drift offset the frame was scored with
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
    drifts: np.ndarray
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
            self.drifts[mask],
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
    drifts: np.ndarray,
    flags: np.ndarray,
    raw: np.ndarray,
) -> bytes:
    raw = np.asarray(raw, dtype=np.float32).reshape(len(frames), -1)
    out = np.empty(len(frames), dtype=record_dtype(raw.shape[1]))
    out["frame"], out["ts"], out["score"] = frames, ts, scores
    out["value"], out["level"], out["drift"], out["flags"], out["raw"] = values, levels, drifts, flags, raw
    return out.tobytes()


# Append a window's records to the open chunk; close it into the stream when full, old, or of another model.
_APPEND_SIGNALS = """
local function close_chunk()
  local chunk = redis.call('HMGET', KEYS[2], 's', 'm', 'd')
  if chunk[3] then
    redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[7], '*', 'v', ARGV[8], 's', chunk[1], 'm', chunk[2], 'd', chunk[3])
    redis.call('DEL', KEYS[2])
  end
end
local open = redis.call('HMGET', KEYS[2], 's', 'm', 't0')
if open[1] and (open[1] ~= ARGV[2] or open[2] ~= ARGV[3]) then
  close_chunk()
  open = {false, false, false}
end
if open[1] then
  redis.call('HSET', KEYS[2], 'd', redis.call('HGET', KEYS[2], 'd') .. ARGV[1])
else
  redis.call('HSET', KEYS[2], 's', ARGV[2], 'm', ARGV[3], 't0', ARGV[4], 'd', ARGV[1])
  open[3] = ARGV[4]
end
local full = redis.call('HSTRLEN', KEYS[2], 'd') >= tonumber(ARGV[5])
if full or tonumber(ARGV[4]) - tonumber(open[3]) >= tonumber(ARGV[6]) then
  close_chunk()
end
return 1
"""


def append_signals(
    pipe: AnyRedis, camera: str, model: str, num_signals: int, payload: bytes, first_ts: float, retention_s: int
) -> None:
    """Archive one window's records (the module docstring); entries older than `retention_s` are trimmed."""
    min_id = f"{int((time.time() - retention_s) * 1000)}-0"
    full = ARCHIVE_CHUNK_FRAMES * record_dtype(num_signals).itemsize
    run_script(
        pipe,
        _APPEND_SIGNALS,
        [keys.camera_signals_key(camera), keys.camera_signals_open_key(camera)],
        [payload, num_signals, model, repr(first_ts), full, ARCHIVE_CHUNK_S, min_id, SCHEMA_VERSION],
    )


def _open_chunk(r: redis.Redis, camera: str) -> list[Any]:
    """The open chunk as a stream entry would look ([] when there is none)."""
    fields = cast(dict[bytes, bytes], r.hgetall(keys.camera_signals_open_key(camera)))
    if b"d" not in fields:
        return []
    return [(b"open", {b"v": str(SCHEMA_VERSION).encode(), b"s": fields[b"s"], b"m": fields[b"m"], b"d": fields[b"d"]})]


def signals_span(r: redis.Redis, camera: str) -> tuple[float, float] | None:
    """(oldest, newest) capture time in the archive, or None when it is empty."""
    key = keys.camera_signals_key(camera)
    first: Any = r.xrange(key, "-", "+", count=1) or _open_chunk(r, camera)
    last: Any = _open_chunk(r, camera) or r.xrevrange(key, "+", "-", count=1)
    if not first or not last:
        return None
    return float(_decode_entries(first).ts[0]), float(_decode_entries(last).ts[-1])


def read_signals(r: redis.Redis, camera: str, start_ts: float, end_ts: float) -> SignalRecords:
    """Archived frames captured in [start_ts, end_ts], oldest first. Entries are found by their stream ids (the time
    their chunk closed), so the search reaches READ_SLACK_S beyond the range; the open chunk comes last."""
    key = keys.camera_signals_key(camera)
    lo = f"{max(0, int((start_ts - READ_SLACK_S) * 1000))}-0"
    hi = f"{int((end_ts + READ_SLACK_S + ARCHIVE_CHUNK_S) * 1000)}-0"
    pipe = r.pipeline(transaction=True)  # the closed chunks and the open one as of the same instant
    pipe.xrange(key, lo, hi)
    pipe.hgetall(keys.camera_signals_open_key(camera))
    closed, open_fields = pipe.execute()
    entries = cast(list[Any], closed)
    if b"d" in open_fields:
        entries.append(
            (b"open", {b"v": str(SCHEMA_VERSION).encode(), **{k: open_fields[k] for k in (b"s", b"m", b"d")}})
        )
    records = _decode_entries(entries)
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
        drifts=np.concatenate([p["drift"] for p in parts]).astype(np.float64),
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

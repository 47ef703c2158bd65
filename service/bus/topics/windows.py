"""Frame windows: publish (with gap-free seq), consumer-group read, claim, ack, backlog."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import redis
from pydantic import ValidationError

from service.bus import keys
from service.bus.topics.codec import AnyRedis, Fields, check_version, describe_errors
from service.bus.topics.scores import load_scoring_state
from service.errors import MessageError
from service.messages import (
    SCHEMA_VERSION,
    WindowMsg,
)

log = logging.getLogger(__name__)


# INCR the camera's sequence and XADD in one step, so a window never reaches the stream without its seq
# and a seq is never taken without a window (backpressure drops happen before publishing: no gaps).
_PUBLISH_WINDOW = """
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                      'v', ARGV[2], 'seq', seq, 'h', ARGV[3], 'f', ARGV[4])
redis.call('SET', KEYS[3], ARGV[5])
return {seq, id}
"""

# A file camera's window goes out only if it starts at the camera's next frame (compare-and-set), so a reader that
# is behind (its lease taken over) or ahead (Redis lost its last writes) is refused instead of scoring a frame
# twice or leaving a hole. The play-through is written with every window, so it outlives a Redis that lost it.
_PUBLISH_FILE_WINDOW = """
local next_frame = redis.call('GET', KEYS[3])
if next_frame and tonumber(next_frame) ~= tonumber(ARGV[6]) then return {0, tonumber(next_frame)} end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'v', ARGV[2], 'seq', seq, 'h', ARGV[3], 'f', ARGV[4])
redis.call('SET', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[4], 'source', ARGV[7], 'origin', ARGV[8], 'stream', ARGV[9])
return {seq, tonumber(ARGV[5])}
"""


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
    check_version(version, "window")
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
        msg = f"malformed window: {describe_errors(e)}"
        raise MessageError(msg) from e


def publish_window(r: redis.Redis, window: WindowMsg, maxlen: int = keys.WINDOWS_MAXLEN) -> tuple[int, str]:
    """Assign the camera's next seq and append the window to WINDOWS_STREAM; returns (seq, entry id).

    Also records the camera's next frame number (`camera_next_frame`) in the same step."""
    f = encode_window(window)
    script = r.register_script(_PUBLISH_WINDOW)
    stream_keys = [keys.WINDOWS_STREAM, keys.camera_seq_key(window.camera), keys.camera_next_frame_key(window.camera)]
    end = window.first_frame + window.num_scored
    seq, entry_id = cast(list[Any], script(keys=stream_keys, args=[maxlen, f["v"], f["h"], f["f"], end]))
    return int(seq), entry_id.decode()


def camera_next_frame(r: redis.Redis, camera: str) -> int:
    """Where a camera's frame numbering goes on: after the last scored frame published for it (0 if none)."""
    value = r.get(keys.camera_next_frame_key(camera))
    return int(cast(bytes, value)) if value is not None else 0


# --- file cameras: one play-through of a recording, resumed by whichever ingester holds the camera -----------


@dataclass(frozen=True)
class Playback:
    """A file camera's play-through: frame `origin + k` is the k-th (sampled) frame of the recording."""

    source: str  # playback_source() of the camera config that started it
    origin: int
    stream: str  # the WindowMsg.stream of its windows: a resumed play-through goes on with the same history
    next_frame: int  # the first frame not yet published (the camera's next_frame)
    end: int | None = None  # set once every frame was published: nothing is left to read


def playback_source(url: str, target_fps: float | None) -> str:
    """What makes two play-throughs the same: the recording and how it is sampled (a hash: urls may hold secrets)."""
    return hashlib.sha256(f"{url}\n{target_fps}".encode()).hexdigest()[:16]


def resume_playback(r: redis.Redis, camera: str, source: str, context: int, new_stream: str) -> Playback:
    """The camera's play-through of `source` where it stands, or a new one numbered on from the camera's next frame.

    A new play-through records next_frame = origin + context (its warm-up frames are never scored), so that
    the first window is the one the compare-and-set expects. Call it only while holding the camera's lease."""
    raw = cast(dict[bytes, bytes], r.hgetall(keys.camera_playback_key(camera)))
    stored = {k.decode(): v.decode() for k, v in raw.items()}
    next_frame = camera_next_frame(r, camera)
    if stored.get("source") == source:
        origin = int(stored["origin"])
        end = int(stored["end"]) if "end" in stored else None
        playback = Playback(source, origin, stored["stream"], max(next_frame, origin + context), end)
    else:
        playback = Playback(source, next_frame, new_stream, next_frame + context)
        fields = {"source": source, "origin": playback.origin, "stream": playback.stream}
        pipe = r.pipeline(transaction=True)
        pipe.delete(keys.camera_playback_key(camera))
        pipe.hset(keys.camera_playback_key(camera), mapping=fields)  # type: ignore[arg-type]
        pipe.execute()
    if playback.next_frame != next_frame:
        r.set(keys.camera_next_frame_key(camera), playback.next_frame)
    return playback


def finish_playback(r: redis.Redis, camera: str, end: int) -> None:
    """Mark the play-through read to the end (frames up to `end` published): a new owner does not read it again."""
    r.hset(keys.camera_playback_key(camera), "end", end)


def publish_file_window(r: redis.Redis, window: WindowMsg, playback: Playback) -> tuple[int, int]:
    """Publish a file camera's window if it starts at the camera's next frame; returns (seq, next frame).

    seq 0: refused, another reader published up to the returned next frame (or Redis lost what this one wrote)."""
    f = encode_window(window)
    script = r.register_script(_PUBLISH_FILE_WINDOW)
    stream_keys = [
        keys.WINDOWS_STREAM,
        keys.camera_seq_key(window.camera),
        keys.camera_next_frame_key(window.camera),
        keys.camera_playback_key(window.camera),
    ]
    end = window.first_frame + window.num_scored
    args: list[bytes | str | int] = [keys.WINDOWS_MAXLEN, f["v"], f["h"], f["f"], end, window.first_frame]
    args += [playback.source, playback.origin, playback.stream]
    seq, next_frame = cast(list[Any], script(keys=stream_keys, args=args))
    return int(seq), int(next_frame)


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


def read_own_pending(r: redis.Redis, consumer: str, count: int) -> list[WindowEntry]:
    """The oldest windows delivered to `consumer` and not yet acknowledged (XREADGROUP 0): what a worker held when
    Redis went away comes back to it at once, instead of after `claim_idle_ms`. Trimmed entries are acknowledged."""
    resp: Any = r.xreadgroup(keys.WINDOWS_GROUP, consumer, {keys.WINDOWS_STREAM: "0"}, count=count)
    entries = resp[0][1] if resp else []
    trimmed = [entry_id for entry_id, fields in entries if fields is None]
    if trimmed:
        log.warning("%d windows pending on %s were trimmed before they were scored", len(trimmed), consumer)
        r.xack(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, *trimmed)
    return _decode_entries(entries)


def dead_consumers(r: redis.Redis, me: str) -> list[tuple[str, int]]:
    """(name, pending) of the workers' consumers, other than `me`, whose heartbeat key is gone: they are dead."""
    consumers: Any = r.xinfo_consumers(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP)
    named = [(_text(c["name"]), int(c["pending"])) for c in consumers]
    named = [(name, pending) for name, pending in named if name != me]
    if not named:
        return []
    pipe = r.pipeline(transaction=False)
    for name, _ in named:
        pipe.exists(keys.heartbeat_key("worker", name))
    alive = cast(list[int], pipe.execute())
    return [c for c, live in zip(named, alive, strict=True) if not live]


def claim_windows_of(r: redis.Redis, dead: str, consumer: str, min_idle_ms: int, count: int) -> list[WindowEntry]:
    """Take over the windows pending on the consumer `dead` (XCLAIM). `min_idle_ms` keeps two rescuers from both
    taking them: the first claim makes them fresh again, so the second finds nothing idle enough."""
    pending: Any = r.xpending_range(
        keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, min="-", max="+", count=count, consumername=dead
    )
    ids = [p["message_id"] for p in pending]
    if not ids:
        return []
    claimed: Any = r.xclaim(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, consumer, min_idle_ms, ids)
    return _decode_entries(claimed)


def forget_consumer(r: redis.Redis, name: str) -> None:
    """Remove a dead worker with nothing pending from the group, so the group's consumer list does not grow."""
    r.xgroup_delconsumer(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def ack_windows(r: AnyRedis, entry_ids: Sequence[str]) -> None:
    """Acknowledge scored windows and delete them: nothing reads a window again once it is scored, and kept until
    the stream cap trimmed it, the stream held WINDOWS_MAXLEN windows of frames (a soak's Redis grew ~12 MB/min)."""
    if entry_ids:
        r.xack(keys.WINDOWS_STREAM, keys.WINDOWS_GROUP, *entry_ids)
        r.xdel(keys.WINDOWS_STREAM, *entry_ids)


def window_backlog(r: redis.Redis) -> tuple[int, int, int]:
    """(entries in WINDOWS_STREAM, i.e. not yet scored; lag = not yet delivered to any worker; pending = delivered,
    not acknowledged)."""
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

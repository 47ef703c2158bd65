"""Frame windows: publish (with gap-free seq), consumer-group read, claim, ack, backlog.

Each partition (keys.py) has its own windows stream and consumer group; a camera's windows go to its partition's.
Workers read every partition. With one partition a read is one blocking XREADGROUP, as on a single stream; with
several (a cluster, where one command cannot read streams of different slots) a read takes a share of what each
partition has in one pipelined pass without waiting, then fills the batch from the partitions that had more, and,
when none has anything, blocks on one of them for at most `PARTITION_BLOCK_MS`, so a window in another partition
waits at most that long. Entry ids handed to the worker carry their partition (`p/id`, plain for partition 0) so
acknowledging finds the stream again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import redis
from pydantic import ValidationError

from service.bus import keys
from service.bus.topics.codec import AnyRedis, Fields, check_version, describe_errors, text_of, xreadgroup_one
from service.bus.topics.scores import load_scoring_state
from service.errors import MessageError
from service.messages import (
    SCHEMA_VERSION,
    WindowMsg,
)

log = logging.getLogger(__name__)

PARTITION_BLOCK_MS = 20  # longest block on one partition's stream when several are read (module docstring)


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
    """Assign the camera's next seq and append the window to its partition's stream; returns (seq, entry id).

    Also records the camera's next frame number (`camera_next_frame`) in the same step."""
    f = encode_window(window)
    script = r.register_script(_PUBLISH_WINDOW)
    stream = keys.windows_stream(keys.partition_of(window.camera))
    stream_keys = [stream, keys.camera_seq_key(window.camera), keys.camera_next_frame_key(window.camera)]
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
        keys.windows_stream(keys.partition_of(window.camera)),
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
    """Create the workers' consumer group (and the stream) of every partition if missing; safe to call again."""
    for p in range(keys.partitions()):
        try:
            r.xgroup_create(keys.windows_stream(p), keys.WINDOWS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise


WindowEntry = tuple[str, WindowMsg | MessageError]


def _ref(partition: int, entry_id: bytes | str) -> str:
    """The id a worker holds for an entry: the stream id, prefixed with its partition unless that is 0."""
    text = text_of(entry_id)
    return text if partition == 0 else f"{partition}/{text}"


def _split(ref: str) -> tuple[int, str]:
    partition, sep, entry_id = ref.rpartition("/")
    return (int(partition), entry_id) if sep else (0, ref)


def _decode_entries(partition: int, entries: Sequence[Any]) -> list[WindowEntry]:
    out: list[WindowEntry] = []
    for entry_id, fields in entries:
        if fields is None:  # deleted by MAXLEN trimming while pending
            continue
        try:
            out.append((_ref(partition, entry_id), decode_window(fields)))
        except MessageError as e:
            out.append((_ref(partition, entry_id), e))
    return out


def _rotated() -> list[int]:
    """Every partition, starting at a random one, so no partition is always served first."""
    n = keys.partitions()
    start = random.randrange(n)
    return [(start + i) % n for i in range(n)]


def read_windows(r: redis.Redis, consumer: str, count: int, block_ms: int | None) -> list[WindowEntry]:
    """New windows for this consumer (XREADGROUP >), at most `count`. Undecodable entries come back as MessageError
    to ack. Several partitions: see the module docstring."""
    if keys.partitions() == 1:
        return _read_partition(r, 0, consumer, count, block_ms)
    out = _read_every_partition(r, consumer, count)
    if out or block_ms is None:
        return out
    return _read_partition(r, _rotated()[0], consumer, count, min(block_ms, PARTITION_BLOCK_MS))


def _read_every_partition(r: redis.Redis, consumer: str, count: int) -> list[WindowEntry]:
    """One pipelined pass over every partition without waiting (a cluster client sends one batch per master instead
    of one round trip per partition), each partition giving at most count / partitions windows (rounded up), so one
    worker does not take a backlog others could share; then the partitions that gave their whole share (they may
    hold more) fill the rest of `count`, one read each."""
    share = -(-count // keys.partitions())
    order = _rotated()
    pipe = r.pipeline(transaction=False)
    for p in order:
        xreadgroup_one(pipe, keys.WINDOWS_GROUP, consumer, keys.windows_stream(p), ">", share)
    out: list[WindowEntry] = []
    busy: list[int] = []
    for p, resp in zip(order, pipe.execute(), strict=True):
        entries = resp[0][1] if resp else []
        out.extend(_decode_entries(p, entries))
        if len(entries) == share:
            busy.append(p)
    for p in busy:
        if len(out) >= count:
            break
        out.extend(_read_partition(r, p, consumer, count - len(out), None))
    return out


def _read_partition(r: redis.Redis, p: int, consumer: str, count: int, block_ms: int | None) -> list[WindowEntry]:
    resp: Any = xreadgroup_one(r, keys.WINDOWS_GROUP, consumer, keys.windows_stream(p), ">", count, block_ms)
    return _decode_entries(p, resp[0][1]) if resp else []


def claim_stale_windows(r: redis.Redis, consumer: str, min_idle_ms: int, count: int = 100) -> list[WindowEntry]:
    """XAUTOCLAIM windows pending longer than `min_idle_ms` (their worker died) for `consumer`, from every
    partition, at most about `count`."""
    out: list[WindowEntry] = []
    for p in _rotated():
        start = "0-0"
        while len(out) < count:
            resp = r.xautoclaim(keys.windows_stream(p), keys.WINDOWS_GROUP, consumer, min_idle_ms, start, count=count)
            start, entries = resp[0], resp[1]
            deleted = resp[2] if len(resp) > 2 else []
            if deleted:
                log.warning("%d pending windows were trimmed from the stream before they were scored", len(deleted))
            out.extend(_decode_entries(p, entries))
            if start in (b"0-0", "0-0"):
                break
    return out


def read_own_pending(r: redis.Redis, consumer: str, count: int) -> list[WindowEntry]:
    """The oldest windows delivered to `consumer` and not yet acknowledged (XREADGROUP 0), from every partition: what
    a worker held when Redis went away comes back to it at once, instead of after `claim_idle_ms`. Trimmed entries
    are acknowledged."""
    out: list[WindowEntry] = []
    for p in range(keys.partitions()):
        if len(out) >= count:
            break
        stream = keys.windows_stream(p)
        resp: Any = xreadgroup_one(r, keys.WINDOWS_GROUP, consumer, stream, "0", count - len(out))
        entries = resp[0][1] if resp else []
        trimmed = [entry_id for entry_id, fields in entries if fields is None]
        if trimmed:
            log.warning("%d windows pending on %s were trimmed before they were scored", len(trimmed), consumer)
            r.xack(stream, keys.WINDOWS_GROUP, *trimmed)
        out.extend(_decode_entries(p, entries))
    return out


def dead_consumers(r: redis.Redis, me: str) -> list[tuple[str, int]]:
    """(name, pending over every partition) of the workers' consumers, other than `me`, whose heartbeat key is gone:
    they are dead."""
    pending: dict[str, int] = {}
    for p in range(keys.partitions()):
        consumers: Any = r.xinfo_consumers(keys.windows_stream(p), keys.WINDOWS_GROUP)
        for c in consumers:
            name = text_of(c["name"])
            pending[name] = pending.get(name, 0) + int(c["pending"])
    named = [(name, n) for name, n in pending.items() if name != me]
    if not named:
        return []
    pipe = r.pipeline(transaction=False)
    for name, _ in named:
        pipe.exists(keys.heartbeat_key("worker", name))
    alive = cast(list[int], pipe.execute())
    return [c for c, live in zip(named, alive, strict=True) if not live]


def claim_windows_of(r: redis.Redis, dead: str, consumer: str, min_idle_ms: int, count: int) -> list[WindowEntry]:
    """Take over the windows pending on the consumer `dead` (XCLAIM), from every partition, at most `count`.
    `min_idle_ms` keeps two rescuers from both taking them: the first claim makes them fresh again, so the second
    finds nothing idle enough."""
    out: list[WindowEntry] = []
    for p in range(keys.partitions()):
        if len(out) >= count:
            break
        stream = keys.windows_stream(p)
        pending: Any = r.xpending_range(
            stream, keys.WINDOWS_GROUP, min="-", max="+", count=count - len(out), consumername=dead
        )
        ids = [entry["message_id"] for entry in pending]
        if ids:
            claimed: Any = r.xclaim(stream, keys.WINDOWS_GROUP, consumer, min_idle_ms, ids)
            out.extend(_decode_entries(p, claimed))
    return out


def forget_consumer(r: redis.Redis, name: str) -> None:
    """Remove a dead worker with nothing pending from every partition's group, so the consumer lists do not grow."""
    for p in range(keys.partitions()):
        r.xgroup_delconsumer(keys.windows_stream(p), keys.WINDOWS_GROUP, name)


def ack_windows(r: AnyRedis, refs: Sequence[str]) -> None:
    """Acknowledge scored windows and delete them: nothing reads a window again once it is scored, and kept until
    the stream cap trimmed it, the stream held WINDOWS_MAXLEN windows of frames (a soak's Redis grew ~12 MB/min)."""
    by_partition: dict[int, list[str]] = {}
    for ref in refs:
        p, entry_id = _split(ref)
        by_partition.setdefault(p, []).append(entry_id)
    for p, entry_ids in by_partition.items():
        r.xack(keys.windows_stream(p), keys.WINDOWS_GROUP, *entry_ids)
        r.xdel(keys.windows_stream(p), *entry_ids)


def window_backlog(r: redis.Redis) -> tuple[int, int, int]:
    """(entries in the windows streams, i.e. not yet scored; lag = not yet delivered to any worker; pending =
    delivered, not acknowledged), summed over the partitions."""
    total = [0, 0, 0]
    for p in range(keys.partitions()):
        stream = keys.windows_stream(p)
        length = int(r.xlen(stream))
        lag, pending = length, 0
        groups: Any = r.xinfo_groups(stream)
        for group in groups:
            if group["name"] in (keys.WINDOWS_GROUP, keys.WINDOWS_GROUP.encode()):
                lag = int(group["lag"]) if group.get("lag") is not None else length
                pending = int(group["pending"])
        total = [total[0] + length, total[1] + lag, total[2] + pending]
    return total[0], total[1], total[2]


def camera_backlog(r: redis.Redis, camera: str) -> int:
    """Windows of a camera published but not yet scored (published seq - last scored seq)."""
    published = r.get(keys.camera_seq_key(camera))
    state = load_scoring_state(r, camera)
    return max(0, int(published or 0) - (state.next_seq - 1))

"""A live camera's pre-roll: the compressed packets of its last seconds, bounded by time and bytes.

The reader thread adds every demuxed video packet (a copy of its bytes, ~1/50 of the decoded frame); what is kept
starts at a key frame, so a clip cut from it decodes from its first packet. Recordings of open alerts attach to the
buffer and get every later packet too, until their stop time or their byte cap. No decoding happens here.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

_REORDER_S = 0.5  # packets come in decode order: a frame shown before stop_s may arrive this much after it


@dataclass(frozen=True)
class StreamInfo:
    """What a decoder needs besides the packets: codec, its extradata (SPS/PPS) and the packets' time base."""

    codec: str
    extradata: bytes | None
    time_base: Fraction

    @classmethod
    def of(cls, stream: Any) -> StreamInfo:
        """From a PyAV video stream of an open container."""
        ctx = stream.codec_context
        return cls(ctx.name, bytes(ctx.extradata) if ctx.extradata else None, Fraction(stream.time_base))


@dataclass(frozen=True)
class Packet:
    """One compressed video packet: its bytes, timestamps in time-base ticks, pts in seconds."""

    data: bytes
    pts: int | None
    dts: int | None
    seconds: float  # pts (or dts) in seconds; packets without either get the previous packet's
    key: bool

    @classmethod
    def of(cls, packet: Any, previous_s: float) -> Packet:
        ticks = packet.pts if packet.pts is not None else packet.dts
        tb = packet.time_base
        seconds = float(ticks * tb) if ticks is not None and tb is not None else previous_s
        return cls(bytes(packet), packet.pts, packet.dts, seconds, bool(packet.is_keyframe))


@dataclass
class Recording:
    """The packets of one open alert: from the key frame before its pre-roll until `stop_s` (set when it closes).

    `done` once the stream passed `stop_s`, the byte cap was reached or the stream ended (a reconnect starts a new
    stream whose pts do not continue this one)."""

    info: StreamInfo
    max_bytes: int
    packets: list[Packet] = field(default_factory=list)
    bytes: int = 0
    stop_s: float | None = None
    done: bool = False
    truncated: bool = False  # the byte cap ended it before its stop time
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, packet: Packet) -> None:
        with self.lock:
            if self.done:
                return
            if self.stop_s is not None and packet.seconds > self.stop_s + _REORDER_S:
                self.done = True  # past the stop time by more than B-frame reordering can hold back a frame
                return
            if self.bytes + len(packet.data) > self.max_bytes:
                self.done = self.truncated = True
                return
            self.packets.append(packet)
            self.bytes += len(packet.data)

    def finish(self, stop_s: float) -> None:
        """The alert closed: keep packets up to `stop_s` (its end plus the post-roll)."""
        with self.lock:
            self.stop_s = stop_s
            if self.packets and self.packets[-1].seconds > stop_s + _REORDER_S:
                self.done = True

    def end(self) -> None:
        with self.lock:
            self.done = True

    def snapshot(self) -> list[Packet]:
        with self.lock:
            return list(self.packets)

    @property
    def newest_s(self) -> float | None:
        with self.lock:
            return self.packets[-1].seconds if self.packets else None


class PacketBuffer:
    """Thread-safe: the camera's reader calls `reset()` at each (re)connect and `add()` per packet; the clip
    recorder calls `record()`. Holds at least `keep_s` seconds back from the newest packet (from the key frame
    before that), at most `max_bytes`: over it, the oldest packets go first (down to the next key frame)."""

    def __init__(self, keep_s: float, max_bytes: int) -> None:
        self.keep_s, self.max_bytes = keep_s, max_bytes
        self.info: StreamInfo | None = None
        self._packets: deque[Packet] = deque()
        self._bytes = 0
        self._recordings: list[Recording] = []
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def reset(self, info: StreamInfo | None) -> None:
        """A new stream (or none): its pts start afresh, so the old packets and the recordings fed from them end."""
        with self._lock:
            self.info = info
            self._packets.clear()
            self._bytes = 0
            for rec in self._recordings:
                rec.end()
            self._recordings.clear()

    def add(self, packet: Packet) -> None:
        with self._lock:
            if self.info is None:
                return
            if not self._packets and not packet.key:
                return  # a decoder cannot start here: wait for the first key frame
            self._packets.append(packet)
            self._bytes += len(packet.data)
            self._trim(packet.seconds)
            recordings = list(self._recordings)
        for rec in recordings:
            rec.add(packet)
        if any(rec.done for rec in recordings):
            with self._lock:
                self._recordings = [r for r in self._recordings if not r.done]

    def _trim(self, newest_s: float) -> None:
        """Drop whole key-frame groups from the front while the next group still starts at least keep_s back, or
        while over the byte cap (then even the newest seconds go, down to the last group)."""
        while True:
            nxt = self._next_key(1)
            if nxt is None:
                return
            over = self._bytes > self.max_bytes
            if not over and self._packets[nxt].seconds > newest_s - self.keep_s:
                return
            for _ in range(nxt):
                self._bytes -= len(self._packets.popleft().data)

    def _next_key(self, start: int) -> int | None:
        for i in range(start, len(self._packets)):
            if self._packets[i].key:
                return i
        return None

    def record(self, from_s: float, max_bytes: int) -> Recording | None:
        """A recording holding the packets from the key frame at or before `from_s` (the oldest held if none is
        that old) and every packet added from now on; None before the stream's first key frame."""
        with self._lock:
            if self.info is None or not self._packets:
                return None
            start = 0
            for i, p in enumerate(self._packets):
                if p.key and p.seconds <= from_s:
                    start = i
            rec = Recording(self.info, max_bytes)
            held: Iterable[Packet] = list(self._packets)[start:]
            for p in held:
                rec.add(p)
            self._recordings.append(rec)
            return rec

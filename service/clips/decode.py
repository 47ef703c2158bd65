"""Decoded source frames for a clip: from a live camera's buffered packets, or from a recording seeked by pts.

Both yield (PyAV frame, pts in seconds) in presentation order; undecodable packets are skipped (a clip shows what
could be decoded), a recording that cannot be opened raises ClipSourceError.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import av.error

from models.data.video import NotSelfContainedError, open_local_container
from service.clips.buffer import Packet, StreamInfo
from service.errors import VigilServiceError

log = logging.getLogger(__name__)

DecodedFrame = tuple[Any, float]  # (av.VideoFrame, pts in seconds)
_THREADS = 1  # one core per clip, as the encoder: clips must not starve the decoding of live cameras


class ClipSourceError(VigilServiceError):
    """The footage of a clip cannot be read (the recording is gone or unreadable, no packets buffered)."""


def _seconds(frame: Any, time_base: Any, previous: float) -> float:
    ticks = frame.pts if frame.pts is not None else frame.dts
    return float(ticks * time_base) if ticks is not None else previous


def decode_packets(info: StreamInfo, packets: Sequence[Packet]) -> Iterator[DecodedFrame]:
    """Decode buffered packets (the first is a key frame) with a fresh decoder."""
    ctx: Any = av.CodecContext.create(info.codec, "r")
    ctx.thread_count = _THREADS
    if info.extradata:
        ctx.extradata = info.extradata
    last = packets[0].seconds if packets else 0.0
    for p in [*packets, None]:
        try:
            if p is None:
                frames = ctx.decode(None)  # flush: the frames the decoder still holds
            else:
                packet = av.Packet(p.data)
                packet.pts, packet.dts, packet.time_base = p.pts, p.dts, info.time_base
                frames = ctx.decode(packet)
        except (av.error.InvalidDataError, av.error.EOFError):
            continue
        for frame in frames:
            last = _seconds(frame, info.time_base, last)
            yield frame, last


def decode_file(path: Path, start_s: float, stop_s: float) -> Iterator[DecodedFrame]:
    """Frames of a local recording from the key frame at or before `start_s` until the first frame after `stop_s`.
    Opened only through models.data.video (FFmpeg's `file` protocol, self-contained demuxers)."""
    try:
        container = open_local_container(str(path), timeout=(10.0, 10.0))
    except (NotSelfContainedError, av.error.FFmpegError, OSError) as e:
        msg = f"cannot open the recording {path.name} for a clip: {e}"
        raise ClipSourceError(msg) from e
    with container:
        if not container.streams.video:
            msg = f"the recording {path.name} has no video stream"
            raise ClipSourceError(msg)
        stream = container.streams.video[0]
        stream.codec_context.thread_count = _THREADS
        tb = stream.time_base
        if tb is None:
            msg = f"the recording {path.name} has no time base"
            raise ClipSourceError(msg)
        if start_s > 0:
            try:  # to the key frame at or before start_s (backward is FFmpeg's default for a stream seek)
                container.seek(int(start_s / tb), stream=stream, backward=True)
            except av.error.FFmpegError as e:  # unseekable: decode from the start, the frames before are skipped
                log.debug("seek in %s failed, decoding from the start: %s", path.name, e)
        last = 0.0
        try:
            for frame in container.decode(stream):
                last = _seconds(frame, tb, last)
                if last > stop_s + 1e-3:
                    return
                yield frame, last
        except av.error.FFmpegError as e:
            log.warning("clip from %s ends early at %.2f s: %s", path.name, last, e)

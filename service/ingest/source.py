"""PyAV video sources: RTSP (TCP or UDP), files (native rate or as fast as possible) and HTTP(S) video.

A source yields `VideoFrame`s until the stream ends or fails. Every blocking FFmpeg call is bounded by
an open/read timeout, so a dead server can never hang the camera thread; failures become `SourceError`
subclasses whose message says what went wrong with the credentials masked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import av
import av.error
import cv2
import numpy as np

from models.data.scaling import FrameScaler
from models.data.video import NotSelfContainedError, open_local_container
from models.health.measure import FrameInfo, frame_info
from models.types import InputSpec
from service.clips.buffer import Packet, PacketBuffer, StreamInfo
from service.errors import EndOfStream, SourceConnectionError, SourceError
from service.footage import local_path
from service.messages import mask_credentials

log = logging.getLogger(__name__)

_TIMED_OUT = 0.95  # a blocking call that lasted this share of its timeout ran into it (clocks differ a little)

SourceScheme = Literal["rtsp", "http", "file"]
PixelFormat = Literal["gray", "bgr24"]


class SourceAuthError(SourceConnectionError):
    """The server refused the credentials (401/403); retried with backoff, as they may be fixed server-side."""


class CorruptSourceError(SourceError):
    """The container or the video stream cannot be decoded (not a video, no video stream, too many bad packets)."""


class StallError(SourceConnectionError):
    """No frame arrived for longer than the stall timeout."""


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame. `image` is (H, W) uint8 gray or (H, W, 3) uint8 BGR, per the source's pixel format."""

    image: np.ndarray
    index: int  # 0-based position in the stream since the source was opened
    pts: float | None  # presentation time in seconds; None when the container has none
    capture_ts: float  # wall-clock unix time the frame was decoded (start of the end-to-end latency)
    info: FrameInfo | None = None  # camera-health measurements (SourceOptions.measure)
    health: int = 0  # camera-health flags (models/health BITS) the camera's monitor set; 0 = healthy
    chroma: float | None = None  # colourfulness as scene-profile evidence, set by the monitor (None: none)


@dataclass(frozen=True)
class SourceOptions:
    """How to open and read a source; timeouts bound every blocking FFmpeg call."""

    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0  # no packet for this long -> StallError
    realtime: bool = True  # files: pace frames at their pts; False = as fast as they decode
    pixel_format: PixelFormat = "gray"  # full-size frames' format when no `spec` is given
    max_consecutive_errors: int = 50  # corrupt packets in a row before the stream counts as broken
    decode_threads: int = 0  # 0 = FFmpeg's choice (frame threads, as the ffmpeg CLI does)
    measure: bool = False  # measure each frame for the camera-health checks (VideoFrame.info)
    # Frames as this model input (models.data.scaling, as offline scoring prepares video files); None = full size
    spec: InputSpec | None = None


def scheme_of(url: str) -> SourceScheme:
    """rtsp(s):// -> rtsp, http(s):// -> http, file:// or an absolute path -> file."""
    lowered = url.lower()
    if lowered.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if lowered.startswith(("http://", "https://")):
        return "http"
    if lowered.startswith("file://") or url.startswith("/"):
        return "file"
    msg = f"unsupported source {mask_credentials(url)!r}: use rtsp(s)://, http(s)://, file:// or an absolute path"
    raise SourceError(msg)


def file_path(url: str) -> Path:
    return Path(local_path(url))


# What FFmpeg may open for a network source, nested opens included: never `file`, so a stream (an HLS playlist
# served over HTTP, say) cannot make FFmpeg read local files. Local files open through open_local_container.
_NETWORK_PROTOCOLS = {
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy",
    "http": "http,https,tcp,tls,crypto,httpproxy",
}


def _container_options(scheme: SourceScheme, options: SourceOptions) -> dict[str, str]:
    """FFmpeg demuxer options of a network source; socket timeouts are in microseconds."""
    timeout_us = str(int(options.read_timeout_s * 1_000_000))
    if scheme == "rtsp":
        return {
            "rtsp_transport": options.rtsp_transport,
            "timeout": timeout_us,
            "allowed_media_types": "video",
            "protocol_whitelist": _NETWORK_PROTOCOLS["rtsp"],
        }
    # reconnecting is our job, with backoff and state
    return {"rw_timeout": timeout_us, "reconnect": "0", "protocol_whitelist": _NETWORK_PROTOCOLS["http"]}


def _describe_av_error(url: str, error: Exception, waited_s: float = 0.0, limit_s: float | None = None) -> SourceError:
    """Map an FFmpeg/OS error to the SourceError subclass the state machine acts on, with a clear reason.

    `waited_s` of `limit_s`: how long the failed call blocked. A network open that fails once its timeout ran
    out timed out, whatever FFmpeg calls it ("Invalid data found" for RTSP, "Immediate exit requested" for HTTP).
    """
    where = mask_credentials(url)
    text = mask_credentials(str(error))
    if limit_s is not None and waited_s >= limit_s * _TIMED_OUT and scheme_of(url) != "file":
        return SourceConnectionError(
            f"{where}: no answer within {limit_s:g} s (ingest.open_timeout_s); check that the camera is reachable "
            "and that this is its stream URL"
        )
    if isinstance(error, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError) or "401" in text:
        return SourceAuthError(f"{where}: the server refused the credentials ({text}); check user and password")
    if isinstance(error, av.error.HTTPNotFoundError) or "404" in text:
        return SourceConnectionError(f"{where}: no such stream on the server ({text}); check the path")
    if scheme_of(url) != "file" or not isinstance(error, av.error.InvalidDataError):
        # Over a network "invalid data" is usually a refused or half-open connection, not a bad file.
        return SourceConnectionError(f"{where}: cannot open the stream ({text})")
    return CorruptSourceError(f"{where}: cannot decode ({text}); is it a video file?")


class VideoSource:
    """An open source; iterate it for frames. Use as a context manager so the container is always closed."""

    def __init__(self, url: str, options: SourceOptions | None = None) -> None:
        self.url = url
        self.options = options or SourceOptions()
        self.scheme = scheme_of(url)
        self.corrupt_packets = 0  # packets FFmpeg could not decode and we skipped
        self._undecodable = False  # packets failed since the last frame (the next frame's health says so)
        self.frames_decoded = 0
        # Set by the reader while it skips frames an earlier reader already published: they are not paced.
        self.catching_up = False
        self._container: Any = None
        self._stream: Any = None
        # A live camera's pre-roll (service/clips): every demuxed packet is copied into it, reset at each open.
        self.packet_buffer: PacketBuffer | None = None
        self._packet_s = 0.0

    @property
    def name(self) -> str:
        return mask_credentials(self.url)

    @property
    def fps(self) -> float | None:
        rate = self._stream.average_rate if self._stream is not None else None
        return float(rate) if rate else None

    def open(self) -> VideoSource:
        started = time.monotonic()
        target = str(file_path(self.url)) if self.scheme == "file" else self.url
        if self.scheme == "file" and not Path(target).is_file():
            msg = f"{self.name}: no such file"
            raise SourceConnectionError(msg)
        timeout = (self.options.open_timeout_s, self.options.read_timeout_s)
        try:
            if self.scheme == "file":
                self._container = open_local_container(target, timeout=timeout)
            else:
                options = _container_options(self.scheme, self.options)
                self._container = av.open(target, options=options, timeout=timeout)
        except NotSelfContainedError as e:
            raise CorruptSourceError(str(e)) from e
        except (av.error.FFmpegError, OSError) as e:
            waited = time.monotonic() - started
            raise _describe_av_error(self.url, e, waited, self.options.open_timeout_s) from e
        if not self._container.streams.video:
            self.close()
            msg = f"{self.name}: has no video stream"
            raise CorruptSourceError(msg)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads, as the ffmpeg CLI decodes
        self._stream.codec_context.thread_count = self.options.decode_threads
        if self.packet_buffer is not None:
            self.packet_buffer.reset(StreamInfo.of(self._stream))
        return self

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, OSError) as e:  # closing a broken connection may fail; nothing to save
                log.debug("closing %s: %s", self.name, e)
            self._container = None
            self._stream = None

    def __enter__(self) -> VideoSource:
        return self.open() if self._container is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[VideoFrame]:
        if self._container is None:
            self.open()
        pacer = _Pacer(self.options.realtime and self.scheme == "file")
        scale = None if self.options.spec is None else FrameScaler(self.options.spec)
        for av_frame in self.decoded_frames():
            pts = _seconds(av_frame)
            if self.catching_up:
                pacer.restart()
            else:
                pacer.wait(pts)
            if scale is not None:
                image = scale(av_frame)
            elif self.options.pixel_format == "gray":
                image = _gray(av_frame)
            else:
                image = av_frame.to_ndarray(format="bgr24")
            info = frame_info(av_frame, self._undecodable) if self.options.measure else None
            self._undecodable = False
            frame = VideoFrame(image=image, index=self.frames_decoded, pts=pts, capture_ts=time.time(), info=info)
            self.frames_decoded += 1
            yield frame
        if self.frames_decoded == 0:
            msg = f"{self.name}: the stream ended before its first frame could be decoded"
            raise CorruptSourceError(msg)
        if self.scheme == "rtsp":  # a camera's stream has no end: the server went away or dropped us
            msg = f"{self.name}: the server closed the stream after {self.frames_decoded} frames"
            raise SourceConnectionError(msg)
        raise EndOfStream(f"{self.name}: end of stream after {self.frames_decoded} frames")

    def decoded_frames(self) -> Iterator[Any]:
        """Decoded av.VideoFrames, before any conversion (what iterating the source adds: pacing, scaling, health
        measurements); undecodable packets are skipped and counted, a run of them is fatal. bench/ingest_decode.py
        times this loop alone against the ffmpeg CLI's decode."""
        consecutive = 0
        silent = 0.0  # seconds spent waiting for packets since the last decoded frame
        packets = self._container.demux(self._stream)
        while True:
            try:
                waited = time.monotonic()
                packet = next(packets)
                silent += time.monotonic() - waited
                # Checked before decoding: when its read timeout fires, FFmpeg's RTSP demuxer hands back a packet
                # it held and only fails on the next read, which doubled the stall time.
                if silent >= self.options.read_timeout_s * _TIMED_OUT and self.scheme != "file":
                    raise StallError(f"{self.name}: no data for {self.options.read_timeout_s:g} s")
                if self.packet_buffer is not None and packet.size:
                    kept = Packet.of(packet, self._packet_s)
                    self._packet_s = kept.seconds
                    self.packet_buffer.add(kept)
                frames = packet.decode()
            except StopIteration:
                return
            except av.error.InvalidDataError as e:
                self.corrupt_packets += 1
                self._undecodable = True
                consecutive += 1
                if consecutive > self.options.max_consecutive_errors:
                    msg = f"{self.name}: {consecutive} undecodable packets in a row, last: {mask_credentials(str(e))}"
                    raise CorruptSourceError(msg) from e
                continue
            except av.error.EOFError:
                return
            except (av.error.FFmpegError, OSError) as e:
                # PyAV's read timeout (ExitError) or the socket timeout (ETIMEDOUT) fired: nothing arrived
                if isinstance(e, av.error.ExitError | TimeoutError):
                    msg = f"{self.name}: no data for {self.options.read_timeout_s:g} s"
                    raise StallError(msg) from e
                raise _describe_av_error(self.url, e) from e
            if frames:
                consecutive, silent = 0, 0.0
            yield from frames


# Limited-range ("MPEG", 16..235) luma -> full-range gray, as swscale and BGR->gray conversion produce it.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_YUV_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21"})
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def _gray(av_frame: Any) -> np.ndarray:
    """(H, W) uint8 full-range gray. For YUV frames this is the luma plane, range-expanded with a LUT.

    Taking the plane directly is about twice as fast at 720p as a swscale gray conversion and gives the
    same pixels (to within 1 grey level), which is what keeps the ingester at ffmpeg's rate.
    """
    if av_frame.format.name not in _YUV_LUMA_FIRST:
        return np.asarray(av_frame.to_ndarray(format="gray"))
    plane = av_frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: av_frame.height, : av_frame.width]
    if av_frame.format.name.startswith("yuvj") or av_frame.color_range == _FULL_RANGE:
        return np.ascontiguousarray(luma)
    return np.asarray(cv2.LUT(luma, _LIMITED_TO_FULL))


def _seconds(av_frame: Any) -> float | None:
    """Presentation time in seconds; RTSP streams with B-frames leave pts unset on some frames, so fall back to dts."""
    ticks = av_frame.pts if av_frame.pts is not None else av_frame.dts
    if ticks is None or av_frame.time_base is None:
        return None
    return float(ticks * av_frame.time_base)


class _Pacer:
    """Sleeps so frames come out at their pts rate (files played 'live'); a no-op when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._origin: tuple[float, float] | None = None  # (first pts, monotonic time it was released)

    def wait(self, pts: float | None) -> None:
        if not self.enabled or pts is None:
            return
        now = time.monotonic()
        if self._origin is None:
            self._origin = (pts, now)
            return
        delay = self._origin[1] + (pts - self._origin[0]) - now
        if delay > 0:
            time.sleep(delay)

    def restart(self) -> None:
        """The next frame is released at once and the pace goes on from it (after frames that were not paced)."""
        self._origin = None

"""Decoded frames -> one H.264 MP4 (PyAV/libx264), scaled to the clip width, with an optional per-frame overlay.

The file is written beside its destination and renamed over it, so a reader (the API) sees the old clip or the new
one, never half of one; `+faststart` puts the index first so a browser plays it while it downloads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from service.clips.decode import DecodedFrame

# frame_bgr (H, W, 3) uint8 at the clip's size, the camera's frame number where known (None today: packets and seeked
# recordings carry no frame numbers), the frame's pts in source seconds (the alert's start_pts, peak_pts and end_pts
# are on the same clock) -> the frame to encode (same shape). Heatmaps plug in at service/clips/recorder.py:overlay_for.
Overlay = Callable[[np.ndarray, int | None, float | None], np.ndarray]

_TIME_BASE = Fraction(1, 1000)  # clip timestamps in milliseconds: exact enough for any source rate, VFR included
_EPS = 1e-3  # a frame this close to either end of the span is in it (float pts of 0.04 s steps are not exact)


@dataclass(frozen=True)
class EncodeOptions:
    width: int = 640  # narrower sources keep theirs
    crf: int = 26
    preset: str = "veryfast"
    threads: int = 1  # one core per clip: clips must not starve the decoding of live cameras


@dataclass(frozen=True)
class ClipResult:
    """What was written: source pts of the first and last frame, frame count, size, encoding CPU time."""

    path: Path
    first_s: float
    last_s: float
    frames: int
    bytes: int
    cpu_s: float

    @property
    def duration_s(self) -> float:
        return self.last_s - self.first_s


def output_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """(w, h) of the clip: at most `max_width` wide, aspect kept, both even (yuv420p)."""
    w = min(width, max_width)
    h = round(height * w / width)
    return max(2, w - w % 2), max(2, h - h % 2)


def write_clip(
    frames: Iterable[DecodedFrame],
    start_s: float,
    stop_s: float,
    dest: Path,
    options: EncodeOptions,
    overlay: Overlay | None = None,
    title: str = "",
) -> ClipResult | None:
    """Encode the frames with pts in [start_s, stop_s] to `dest` (replacing it); None when there were none."""
    cpu0 = time.process_time()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    container = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    stream = None
    first_s: float = 0.0
    last_s: float | None = None
    count = 0
    try:
        for frame, seconds in frames:
            if seconds < start_s - _EPS or seconds > stop_s + _EPS or (last_s is not None and seconds <= last_s):
                continue  # before the pre-roll (decoded from the key frame before it), or a repeated pts
            if stream is None:
                stream = _open_stream(container, frame.width, frame.height, options, title)
                first_s = seconds
            out = _prepared(frame, stream, overlay, seconds)
            out.pts, out.time_base = round((seconds - first_s) / _TIME_BASE), _TIME_BASE
            container.mux(stream.encode(out))
            last_s, count = seconds, count + 1
        if stream is not None:
            container.mux(stream.encode(None))
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    if last_s is None:
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, dest)
    return ClipResult(dest, first_s, last_s, count, dest.stat().st_size, time.process_time() - cpu0)


def _open_stream(container: av.container.OutputContainer, width: int, height: int, options: EncodeOptions,
                 title: str) -> av.VideoStream:  # fmt: skip
    w, h = output_size(width, height, options.width)
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.time_base = _TIME_BASE
    stream.codec_context.time_base = _TIME_BASE
    stream.thread_count = options.threads
    stream.options = {"crf": str(options.crf), "preset": options.preset}
    if title:
        container.metadata["title"] = title
    return stream


def _prepared(frame: av.VideoFrame, stream: av.VideoStream, overlay: Overlay | None, seconds: float) -> av.VideoFrame:
    """The source frame at the clip's size (swscale), through the overlay when there is one."""
    if overlay is None:
        return frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
    bgr = frame.to_ndarray(width=stream.width, height=stream.height, format="bgr24")
    drawn = overlay(bgr, None, seconds)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn, dtype=np.uint8), format="bgr24").reformat(
        format="yuv420p"
    )

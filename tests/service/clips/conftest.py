"""Clip test footage: a short H.264 recording with a key frame every second, and its frames to compare against."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.synthetic import render_frames

FPS = 25
SECONDS = 12
_BITS, _BAR_W, _BAR_H = 10, 16, 12  # the frame number's barcode: 10 bits of 16 x 12 px along the top


def write_gop_video(path: Path, frames: np.ndarray, fps: int = FPS, gop: int = FPS) -> Path:
    """Like tests.synthetic.write_video, with a key frame every `gop` frames (what a camera sends)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "10", "preset": "ultrafast", "keyint": str(gop), "scenecut": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """(path, frames (T, 120, 160, 3) BGR): 12 s at 25 fps; frame t carries t as a barcode along its top."""
    frames, _ = render_frames(FPS * SECONDS, size=(120, 160), anomaly=None)
    for t, frame in enumerate(frames):
        for bit in range(_BITS):
            frame[:_BAR_H, bit * _BAR_W : (bit + 1) * _BAR_W] = 255 if t >> bit & 1 else 0
    return write_gop_video(tmp_path_factory.mktemp("clips") / "recording.mp4", frames), frames


def decoded(path: Path) -> tuple[list[float], np.ndarray, tuple[int, int]]:
    """(frame times in the clip, frames (N, H, W, 3) BGR, (width, height)) of an MP4."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pairs = [(f.time, f.to_ndarray(format="bgr24")) for f in c.decode(s)]
        return [t for t, _ in pairs], np.stack([f for _, f in pairs]), (s.width, s.height)


def frame_number(image: np.ndarray) -> int:
    """The source frame a decoded frame (any width, aspect kept) shows: its barcode."""
    w = image.shape[1] / (_BITS * _BAR_W)  # scale against the source
    y = int(_BAR_H * w / 2)
    return sum(1 << bit for bit in range(_BITS) if image[y, int((bit + 0.5) * _BAR_W * w)].mean() > 128)

"""Builders for small synthetic footage with a known anomalous span (in the spirit of anomalib's DummyVideoGenerator).

Normal frames: a grey block walks left to right at constant speed over a textured background.
Anomalous frames: a second, bright block races diagonally across the scene (a 'cyclist').
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def render_frames(
    num_frames: int = 64, size: tuple[int, int] = (64, 64), anomaly: tuple[int, int] | None = (40, 52), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (frames (T, H, W, 3) uint8 BGR, labels (T,) uint8 with 1 on the anomalous span [start, end))."""
    h, w = size
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(60, 120, (h, w), dtype=np.uint8), (5, 5), 0)
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    labels = np.zeros(num_frames, dtype=np.uint8)
    bs = max(h // 8, 2)
    for t in range(num_frames):
        img = background.copy()
        x = (t * 2) % (w - bs)
        y = h // 2
        img[y : y + bs, x : x + bs] = 160
        if anomaly is not None and anomaly[0] <= t < anomaly[1]:
            k = t - anomaly[0]
            ax = min(w - bs, (k * 7) % (w - bs))
            ay = min(h - bs, (k * 5) % (h - bs))
            img[ay : ay + bs, ax : ax + bs] = 250
            labels[t] = 1
        frames[t] = np.repeat(img[:, :, None], 3, axis=2)
    return frames, labels


def write_video(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "libx264") -> Path:
    """Encode BGR frames with PyAV (real H.264 in an .mp4 unless told otherwise)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}  # near-lossless so tests see what they drew
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(root: Path, videos: dict[str, np.ndarray], split: str = "training") -> Path:
    """Write `<root>/<split>/frames/<name>/NNN.jpg`, the Ped2 layout of ../shared/datasets/ucsd_ped2."""
    for name, frames in videos.items():
        folder = root / split / "frames" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return root

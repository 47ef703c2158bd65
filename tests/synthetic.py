"""Builders for small synthetic footage with a known anomalous span (in the spirit of anomalib's DummyVideoGenerator).

Normal frames: a grey block walks left to right at constant speed over a textured background.
Anomalous frames: a second, bright block races diagonally across the scene (a 'cyclist').
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


def render_scene(num_frames: int, size: tuple[int, int] = (720, 1280), seed: int = 0) -> Iterator[np.ndarray]:
    """A camera-like colour scene, frame by frame (BGR (H, W, 3) uint8; a 720p clip would not fit in memory at once):
    a still background of coloured regions with fine texture, a few people-sized blocks walking across it, and
    sensor noise, so frames are never identical. What the camera-health checks expect of a healthy camera."""
    h, w = size
    rng = np.random.default_rng(seed)
    blobs = cv2.resize(rng.integers(40, 210, (6, 10, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(rng.normal(0, 18, (h, w)).astype(np.float32), (0, 0), max(1.0, w / 640))
    background = np.clip(blobs.astype(np.float32) + texture[:, :, None], 0, 255)
    walkers = [(rng.uniform(0, w), rng.uniform(0.2, 0.8) * h, rng.uniform(1.5, 4) * w / 640, rng.integers(30, 230, 3))
               for _ in range(4)]  # fmt: skip
    bw, bh = max(2, w // 40), max(4, h // 9)
    for t in range(num_frames):
        frame = background.copy()
        for x0, y, speed, colour in walkers:
            x = int((x0 + speed * t) % (w - bw))
            frame[int(y) : int(y) + bh, x : x + bw] = colour
        frame += rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def write_stream(
    path: Path, frames: Iterable[np.ndarray], fps: int = 25, crf: int = 23, gop: int = 50, codec: str = "libx264"
) -> Path:
    """Encode BGR frames (any iterable) the way an IP camera sends them: H.264, a key frame every `gop` frames, no
    B-frames, at a typical quality (crf 23)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast", "g": str(gop), "bf": "0"}
        for i, frame in enumerate(frames):
            if i == 0:
                stream.height, stream.width = frame.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

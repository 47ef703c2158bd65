"""Per-frame measurements for the camera health checks: a few numbers from a decoded frame, cheap at any resolution.

Everything is computed from small samples of the frame's planes, never from the full frame: the luma plane is
sampled with a stride down to at most `_SAMPLE_W` columns (nearest: sensor noise survives, so a frozen picture can
be told from a still scene), area-averaged to an analysis image `ANALYSIS_W` wide (level, contrast, texture) and
further to a `LAYOUT_W`-wide layout (what the view looks like, for "view moved"); chroma comes from the colour
planes sampled the same way. Decoded YUV frames are measured from their planes (the ingester, `VideoFile`); BGR
images (frame folders, other pixel formats) through `measure_bgr`, which converts a sample to YCrCb first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

ANALYSIS_W = 128  # width of the analysis image (level, contrast, texture)
LAYOUT_W = 16  # width of the layout compared with the camera's reference view
_SAMPLE_W = 160  # at most this many luma columns are read for the change between frames
_CHROMA_W = 80  # at most this many chroma columns are read
# Pixel formats whose planes are Y, U, V (U and V at any subsampling): measured without a conversion.
_PLANAR_YUV = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv411p", "yuv440p", "yuvj440p"}
)


@dataclass(frozen=True)
class FrameStats:
    """What the health checks read from one frame."""

    level: float  # mean luma (grey levels, 0-255)
    contrast: float  # standard deviation of the analysis image's luma
    texture: float  # mean |Laplacian| of the analysis image: fine detail, gone when the view blurs
    layout: np.ndarray  # (h, LAYOUT_W) float32 coarse luma: the view, compared with the camera's reference view
    sample: np.ndarray  # (h, w) uint8 strided luma sample: the change between consecutive frames
    chroma: float  # mean |(U, V) - 128|: colourfulness, near 0 for IR and grey pictures


@dataclass(frozen=True)
class FrameInfo:
    """A decoded frame as the health checks see it: its measurements and what the decoder said about it."""

    stats: FrameStats
    corrupt: bool = False  # the decoder flagged the frame, or packets before it could not be decoded
    key: bool = True  # a key frame: decoding errors before it no longer show


def _stride(width: int, target: int) -> int:
    return max(1, width // target)


def _analysis(luma: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> float32 analysis image ANALYSIS_W wide (area average of a strided view)."""
    h, w = luma.shape
    step = -(-w // (2 * ANALYSIS_W))  # ceil: the area average then runs over a view at most twice as wide
    view = luma[::step, ::step]
    out_h = max(2, round(ANALYSIS_W * h / w))
    small = cv2.resize(view, (ANALYSIS_W, out_h), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.float32)


def _chroma(u: np.ndarray, v: np.ndarray) -> float:
    step = _stride(u.shape[1], _CHROMA_W)
    du = u[::step, ::step].astype(np.float32) - 128.0
    dv = v[::step, ::step].astype(np.float32) - 128.0
    return float(np.mean(np.sqrt(du * du + dv * dv)))


def measure_planes(luma: np.ndarray, u: np.ndarray | None, v: np.ndarray | None) -> FrameStats:
    """Measure a frame from its luma plane (H, W) uint8 and its chroma planes (any subsampling; None = grey)."""
    small = _analysis(luma)
    level, contrast = cv2.meanStdDev(small)
    texture = float(np.mean(np.abs(cv2.Laplacian(small, cv2.CV_32F, ksize=1))))
    layout_h = max(2, round(LAYOUT_W * small.shape[0] / small.shape[1]))
    layout = cv2.resize(small, (LAYOUT_W, layout_h), interpolation=cv2.INTER_AREA)
    step = _stride(luma.shape[1], _SAMPLE_W)
    sample = np.ascontiguousarray(luma[::step, ::step])
    chroma = _chroma(u, v) if u is not None and v is not None else 0.0
    return FrameStats(
        level=float(level[0, 0]),
        contrast=float(contrast[0, 0]),
        texture=texture,
        layout=np.asarray(layout, dtype=np.float32),
        sample=sample,
        chroma=chroma,
    )


def measure_bgr(image: np.ndarray) -> FrameStats:
    """Measure a BGR (H, W, 3) or gray (H, W) uint8 image."""
    if image.ndim == 2 or image.shape[2] == 1:
        return measure_planes(image.reshape(image.shape[:2]), None, None)
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    step = _stride(image.shape[1], _CHROMA_W)
    ycrcb = cv2.cvtColor(np.ascontiguousarray(image[::step, ::step]), cv2.COLOR_BGR2YCrCb)
    return measure_planes(luma, ycrcb[:, :, 2], ycrcb[:, :, 1])


def _plane(plane: Any, height: int, width: int) -> np.ndarray:
    """One plane of an av.VideoFrame as (height, width) uint8, without copying (rows are line_size apart)."""
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]


def measure_av_frame(frame: Any) -> FrameStats:
    """Measure a decoded `av.VideoFrame` from its planes (planar YUV), else from its BGR conversion."""
    name = frame.format.name
    if name in _PLANAR_YUV:
        luma = _plane(frame.planes[0], frame.height, frame.width)
        u_plane, v_plane = frame.planes[1], frame.planes[2]
        return measure_planes(
            luma, _plane(u_plane, u_plane.height, u_plane.width), _plane(v_plane, v_plane.height, v_plane.width)
        )
    if name in ("gray", "gray8"):
        return measure_planes(_plane(frame.planes[0], frame.height, frame.width), None, None)
    return measure_bgr(frame.to_ndarray(format="bgr24"))


def frame_info(frame: Any, undecodable_before: bool = False) -> FrameInfo:
    """A decoded `av.VideoFrame` -> FrameInfo. `undecodable_before`: packets since the previous frame failed."""
    return FrameInfo(
        stats=measure_av_frame(frame),
        corrupt=bool(frame.is_corrupt) or undecodable_before,
        key=bool(frame.key_frame),
    )

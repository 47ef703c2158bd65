"""The one frame preprocessing used everywhere (training, eval, `vigil score`, the live ingester).

No torch import at module level: the ingester prepares frames without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from models.types import InputSpec

if TYPE_CHECKING:
    import torch


def _as_nhwc(frames: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W), (N,H,W,1) or (N,H,W,3) -> (N,H,W,C) without copying."""
    if frames.dtype != np.uint8:
        msg = f"frames must be uint8, got {frames.dtype}; decode to 8-bit BGR or gray first"
        raise ValueError(msg)
    if frames.ndim == 3:
        return frames[..., None]
    if frames.ndim == 4 and frames.shape[-1] in (1, 3):
        return frames
    msg = f"frames must be (N,H,W), (N,H,W,1) or (N,H,W,3) uint8, got shape {frames.shape}"
    raise ValueError(msg)


def prepare(frames: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 BGR or gray frames -> uint8 (N, spec.height, spec.width, spec.channels).

    Resizes with INTER_AREA when shrinking (no aliasing) and INTER_LINEAR when growing; converts BGR to
    gray when the method wants one channel, and gray to BGR (replicated) when it wants three.
    """
    frames = _as_nhwc(frames)
    n, h, w, c = frames.shape
    out = np.empty((n, spec.height, spec.width, spec.channels), dtype=np.uint8)
    shrinking = spec.height * spec.width < h * w
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    same_size = (h, w) == (spec.height, spec.width)
    for i in range(n):
        img = frames[i]
        if c == 3 and spec.channels == 1:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif c == 1:
            img = img[:, :, 0]
        if not same_size:
            img = cv2.resize(img, (spec.width, spec.height), interpolation=interp)
        if img.ndim == 2:  # gray: (h, w) -> (h, w, channels)
            out[i] = img[:, :, None] if spec.channels == 1 else np.repeat(img[:, :, None], 3, axis=2)
        else:
            out[i] = img
    return out


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, h, w, C) -> float32 (N, C, h, w) in [0, 1]."""
    import torch

    frames = _as_nhwc(frames)
    # Reorder while still uint8 (4x less memory traffic than float), so the result is contiguous NCHW.
    nchw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()
    return nchw.float().div_(255.0)

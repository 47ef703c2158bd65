"""Localisation maps made small: the coarse, quantised form the live service stores and `vigil eval` measures.

A method's map (`AnomalyMethod.score_with_maps`) is at its input resolution (e.g. 128x128 floats, 64 KB a frame). What
is kept of it per frame is its area average on a grid whose longer side is `MAP_SIDE` cells, quantised to uint8 with
one float scale per frame. The square root is quantised (the error's amplitude): squared errors span orders of
magnitude, and 8 bits of the square would round most of a frame to 0. Both the worker and `vigil eval --heatmaps` go
through these functions, so the maps the service shows are the maps that were measured.

No torch import at module level: the API reads stored maps (`dequantize`) and never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MAP_SIDE = 32  # cells on the longer side: 32x32 = 1 KB a frame for a square model input


def coarse_size(height: int, width: int, side: int = MAP_SIDE) -> tuple[int, int]:
    """The grid a (height, width) map is averaged to: the longer side `side` cells (never more than the map has)."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def coarse_maps(maps: torch.Tensor, side: int = MAP_SIDE) -> torch.Tensor:
    """(..., H, W) maps -> (..., h, w) float32 area averages on `coarse_size(H, W, side)`."""
    import torch.nn.functional as F

    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, 1, h, w).float()
    return F.adaptive_avg_pool2d(flat, coarse_size(h, w, side)).reshape(*lead, *coarse_size(h, w, side))


def quantize(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, h, w) maps >= 0 -> (M, h, w) uint8 of sqrt(map / scale) * 255 and (M,) float32 scales (each map's max)."""
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0.0)
    scale = maps.reshape(len(maps), -1).max(axis=1) if maps.size else np.zeros(len(maps), np.float32)
    safe = np.where(scale > 0, scale, 1.0)[:, None, None]
    q = np.rint(np.sqrt(maps / safe) * 255.0).clip(0, 255).astype(np.uint8)
    return q, scale.astype(np.float32)


def dequantize(q: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """The inverse of `quantize` (up to rounding): uint8 (..., h, w) and scale(s) -> float32 maps."""
    amp = np.asarray(q, dtype=np.float32) / 255.0
    s = np.asarray(scale, dtype=np.float32)
    return (amp * amp) * (s[..., None, None] if s.ndim else s)

"""Heatmaps drawn over frames: the peak frame's picture of an alert and an overlay for every frame of its clip.

A map is shown as its amplitude (the square root of a squared error) relative to the largest of the alert's maps,
coloured by a colormap and blended with an alpha that grows with it: a cell below `floor` of that amplitude leaves the
frame untouched, so only where the model's error stands out is tinted. Maps cover the model's whole input, which is
the whole source frame resized (the ingester squeezes it to the model's input size), so a map is stretched back over
the frame the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import redis

from service.heatmaps.store import FrameMap, alert_maps
from service.messages import Alert

Overlay = Callable[[np.ndarray, int | None, float | None], np.ndarray]  # (frame_bgr, frame, pts) -> frame_bgr
ALPHA = 0.6  # opacity where a map is at its maximum
FLOOR = 0.25  # amplitude (share of the maximum) below which a cell is not drawn
COLORMAP = cv2.COLORMAP_JET
JPEG_QUALITY = 85


def blend(frame: np.ndarray, m: np.ndarray, vmax: float, alpha: float = ALPHA, floor: float = FLOOR) -> np.ndarray:
    """Draw the (h, w) map `m` over `frame` ((H, W, 3) BGR or (H, W) / (H, W, 1) gray uint8) -> (H, W, 3) BGR uint8.

    `vmax`: the map value drawn at full strength (e.g. the largest of the alert's maps)."""
    gray = not (frame.ndim == 3 and frame.shape[2] == 3)
    bgr = cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR) if gray else frame
    h, w = bgr.shape[:2]
    amp = np.sqrt(np.clip(np.asarray(m, dtype=np.float32) / max(vmax, 1e-12), 0.0, 1.0))
    amp = cv2.resize(amp, (w, h), interpolation=cv2.INTER_LINEAR)
    strength = np.clip((amp - floor) / (1.0 - floor), 0.0, 1.0)  # (H, W) in [0, 1]: 0 leaves the pixel as it is
    colour = cv2.applyColorMap(np.rint(strength * 255).astype(np.uint8), COLORMAP)
    a = (alpha * strength)[..., None]
    out = bgr.astype(np.float32) * (1 - a) + colour.astype(np.float32) * a
    drawn: np.ndarray = np.rint(out).clip(0, 255).astype(np.uint8)
    return drawn


def nearest(maps: list[FrameMap], frame: int | None, pts: float | None) -> FrameMap:
    """The map of the given frame number, else of the frame nearest in pts, else nearest in frame number."""
    if frame is not None:
        return min(maps, key=lambda m: abs(m.frame - frame))
    timed = [m for m in maps if m.pts is not None]
    if pts is not None and timed:
        return min(timed, key=lambda m: abs(float(m.pts) - pts))  # type: ignore[arg-type]
    return maps[len(maps) // 2]


def overlay_for_alert(r: redis.Redis, alert: Alert | str, alpha: float = ALPHA, floor: float = FLOOR) -> Overlay | None:
    """The heatmap overlay of an alert's frames, or None when it has no maps (its model has none, or they expired).

    Returns `overlay(frame_bgr, frame, pts) -> frame_bgr`: the map of the alert's frame nearest to `frame` (camera
    frame number) or, when that is None, to `pts` (source seconds), drawn over `frame_bgr` at any resolution. All
    maps share one scale (the alert's largest), so the clip shows how the error grows and fades. The maps are read
    once, here."""
    maps = alert_maps(r, alert if isinstance(alert, str) else alert.id)
    if not maps:
        return None
    vmax = max(float(m.map.max()) for m in maps)

    def overlay(frame_bgr: np.ndarray, frame: int | None, pts: float | None) -> np.ndarray:
        return blend(frame_bgr, nearest(maps, frame, pts).map, vmax, alpha, floor)

    return overlay


def heatmap_jpeg(picture: bytes, maps: list[FrameMap], peak_frame: int) -> bytes:
    """The peak frame's picture (a JPEG, the alert's thumbnail) with the map of the peak frame (or the nearest one)
    drawn over it at full strength -> JPEG."""
    frame = cv2.imdecode(np.frombuffer(picture, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        msg = "the alert's picture is not a readable JPEG"
        raise ValueError(msg)
    m = nearest(maps, peak_frame, None).map
    ok, buf = cv2.imencode(".jpg", blend(frame, m, float(m.max())), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        msg = f"JPEG encoding failed for a heatmap of shape {frame.shape}"
        raise ValueError(msg)
    return buf.tobytes()

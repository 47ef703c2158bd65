"""Small JPEGs of scored live frames, and the copy of an alert's peak frame that the live page shows; with them,
the coarse localisation maps of the frames (models with one), copied to each alert for its heatmap and clip overlay.

The frames are the ones the model saw (its input resolution, gray or colour), so no second decode is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np
import redis

from models.calibration import combine
from models.calibration.reference import ProfileReference
from models.card import Calibration
from models.heatmap import quantize
from service.alerts.triage import notified
from service.bus import topics
from service.bus.client import REDIS_ERRORS
from service.errors import ModelUnavailableError
from service.heatmaps import keep_alert_maps, put_frame_maps
from service.messages import AlertEvent, ScoredWindow, WindowMsg

log = logging.getLogger(__name__)
MAX_SIDE = 160  # px: enough to recognise a scene in an alert list, about 1-3 KB per frame
JPEG_QUALITY = 75


def encode_jpeg(frame: np.ndarray) -> bytes:
    """(h, w, C) uint8, C in (1, 3), gray or BGR as windows carry them -> JPEG, longer side at most MAX_SIDE."""
    h, w = frame.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        msg = f"JPEG encoding failed for a frame of shape {frame.shape}"
        raise ValueError(msg)
    return buf.tobytes()


PEAK_MARGIN = 0.05  # score margin for a reference or drift that moved since the snapshot the worker holds


def peak_candidates(
    cal: Calibration, reference: ProfileReference, drift: float, raw: np.ndarray, threshold: float
) -> np.ndarray:
    """(N, S) raw signals -> (N,) bool: the frames that can be the peak of an alert at `threshold`.

    The published score is reference.score(y_t - drift) with the EMA y_t = a * x_t + (1 - a) * y_{t-1} of the
    combined signal x_t. A peak is at least the threshold and not below the previous score, so y_t >= y_{t-1},
    hence x_t >= y_t, and the score map is increasing: score(x_t - drift) >= score >= threshold. Frames below that
    (less a margin for a snapshot of the reference and drift that is a little old) need no thumbnail, which keeps
    JPEG encoding off the hot path while nothing is anomalous. (The one exception: an alert starting right after a
    cooldown on a falling score; its picture is then missing.)
    """
    return np.asarray(reference.score(combine(cal, raw) - drift) >= threshold - PEAK_MARGIN)


def window_thumbs(window: WindowMsg, frames: np.ndarray | None = None) -> dict[int, bytes]:
    """Frame index -> JPEG for the scored frames of a window (all, or those where `frames` (N,) bool is set)."""
    scored = window.frames[window.context :]  # (N, h, w, C); context frames were scored in an earlier window
    return {
        window.first_frame + i: encode_jpeg(frame)
        for i, frame in enumerate(scored)
        if frames is None or bool(frames[i])
    }


def store_thumbs(
    r: redis.Redis,
    windows: list[WindowMsg],
    results: list[ScoredWindow],
    candidates: Callable[[str, str, np.ndarray, float], np.ndarray],
    threshold: Callable[[str], float],
) -> None:
    """Keep thumbnails of the scored camera frames that could become an alert's peak (jobs have no live page).

    `candidates(camera, model, raw, threshold)` is `OrderedPublisher.peak_candidates`."""
    by_key = {(w.camera, w.seq): w for w in windows}
    for result in results:
        window = by_key.get((result.camera, result.seq))
        if window is None or result.error is not None or result.source == "job":
            continue
        try:
            mask = candidates(result.camera, result.model, np.asarray(result.raw), threshold(result.camera))
        except ModelUnavailableError:
            continue  # the publisher refuses this window too: no score, so no alert
        if mask.any():
            topics.put_frame_thumbs(r, window.camera, window_thumbs(window, mask))


def store_maps(r: redis.Redis, windows: list[WindowMsg], maps: dict[tuple[str, int], np.ndarray]) -> None:
    """Keep the coarse maps (N, h, w) of the scored frames of each window (keyed by camera and seq) for
    `keys.FRAME_MAP_TTL_S`: every frame, since any of them can be part of an alert (its clip overlays them all)."""
    for window in windows:
        m = maps.get((window.camera, window.seq))
        if m is not None:
            q, scales = quantize(m)
            put_frame_maps(r, window.camera, window.first_frame, window.pts, q, scales)


def alert_event_handler(
    r: redis.Redis, retention_s: int, then: Callable[[AlertEvent], None] | None
) -> Callable[[AlertEvent], None]:
    """An `OrderedPublisher.on_event` callback: copy the peak frame's JPEG and the maps of the alert's frames known so
    far to the alert (heatmaps), then hand the event to `then` (the webhook) if triage lets its alert be notified
    (service/alerts/triage.py: not muted, not flood-suppressed)."""

    def on_event(event: AlertEvent) -> None:
        try:
            if not topics.keep_alert_thumb(r, event.alert, retention_s):
                log.debug("alert %s: no thumbnail of peak frame %d", event.alert.id, event.alert.peak_frame)
            if event.kind in ("opened", "updated", "closed"):
                keep_alert_maps(r, event.alert, retention_s)
        except REDIS_ERRORS as e:  # the alert itself is stored; a missing picture must not stop scoring
            log.warning("alert %s: thumbnail or heatmaps not stored (%s)", event.alert.id, e)
        if then is not None and notified(event):
            then(event)

    return on_event

"""Small JPEGs of scored live frames, and the copy of an alert's peak frame that the live page shows.

The frames are the ones the model saw (its input resolution, gray or colour), so no second decode is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np
import redis

from service.bus import topics
from service.bus.client import REDIS_ERRORS
from service.messages import AlertEvent, WindowMsg

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


def window_thumbs(window: WindowMsg) -> dict[int, bytes]:
    """Frame index -> JPEG for the scored frames of a window (its context frames were scored before)."""
    scored = window.frames[window.context :]  # (N, h, w, C)
    return {window.first_frame + i: encode_jpeg(frame) for i, frame in enumerate(scored)}


def store_thumbs(r: redis.Redis, windows: list[WindowMsg]) -> None:
    """Keep thumbnails of camera windows (live and file cameras); batch jobs have no live page, so not theirs."""
    for window in windows:
        if window.source != "job":
            topics.put_frame_thumbs(r, window.camera, window_thumbs(window))


def alert_event_handler(
    r: redis.Redis, retention_s: int, then: Callable[[AlertEvent], None] | None
) -> Callable[[AlertEvent], None]:
    """An `OrderedPublisher.on_event` callback: copy the peak frame's JPEG to the alert, then call `then`."""

    def on_event(event: AlertEvent) -> None:
        try:
            if not topics.keep_alert_thumb(r, event.alert, retention_s):
                log.debug("alert %s: no thumbnail of peak frame %d", event.alert.id, event.alert.peak_frame)
        except REDIS_ERRORS as e:  # the alert itself is stored; a missing picture must not stop scoring
            log.warning("alert %s: thumbnail not stored (%s)", event.alert.id, e)
        if then is not None:
            then(event)

    return on_event

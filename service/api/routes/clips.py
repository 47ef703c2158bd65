"""Alert clips over HTTP: `GET /alerts/{id}/clip.mp4` with byte ranges (browsers seek with them); service/clips/
writes them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.alerts.annotate import unknown_alert
from service.api.deps import RedisDep, SettingsDep, ViewerDep
from service.api.errors import NotFoundError
from service.api.routes.alerts import AlertId
from service.bus import topics
from service.clips.store import ClipStore
from service.footage import FootageError

router = APIRouter(tags=["alerts"])


@router.get(
    "/alerts/{alert_id}/clip.mp4",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "the whole clip"},
        206: {"content": {"video/mp4": {}}, "description": "the requested byte range (Range: bytes=...)"},
        404: {"description": "unknown alert, or no clip written yet"},
        416: {"description": "the range lies beyond the end of the clip"},
    },
)
def alert_clip(alert_id: AlertId, redis: RedisDep, settings: SettingsDep, _: ViewerDep) -> FileResponse:
    """The alert's H.264 MP4 from `clips.pre_roll_s` before its first frame to `clips.post_roll_s` after its last:
    partial while the alert is open (rewritten until the final one replaces it). Supports `Range` (206 with
    `Content-Range`, 416 beyond the end, suffix ranges) and `If-Range`; `Accept-Ranges: bytes` on every answer."""
    alert = topics.get_alert(redis, alert_id)
    if alert is None:
        raise NotFoundError(unknown_alert(alert_id))
    path = None
    if settings.clips.enabled:
        try:
            path = ClipStore(settings.clips.dir).existing(alert.camera, alert.id)
        except FootageError:
            path = None
    if path is None:
        why = (
            "clips are off (clips.enabled)"
            if not settings.clips.enabled
            else "the ingester of its camera writes the first (partial) clip moments after the alert opens; a clip "
            "past clips.retention_s or the size cap clips.max_bytes is deleted"
        )
        raise NotFoundError(f"alert {alert_id!r} has no clip: {why}")
    # FileResponse answers Range / If-Range itself (Starlette >= 0.39): 206, multipart ranges, 416 past the end.
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, no-cache"})

"""The live page (`/ui`: plain HTML + JS from service/api/static, no CDN) and alert thumbnails and heatmaps for it.

The page itself holds no data, so it is served without a key; everything it shows comes from the API with the
viewer key the operator typed in (X-API-Key header for REST, a WebSocket subprotocol for the feeds).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

from models.errors import VigilModelError
from models.registry import get_method, list_methods
from service.alerts.annotate import unknown_alert
from service.api.deps import RedisDep, StoreDep, ViewerDep
from service.api.errors import NotFoundError
from service.bus import topics
from service.heatmaps import alert_maps, heatmap_jpeg

router = APIRouter()
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# name -> media type: the only files served, so no path from a request ever reaches the file system.
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
# No inline scripts or styles and nothing from elsewhere: a stolen alert id or camera name cannot inject script.
_CSP = (
    "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
AlertId = Annotated[str, PathParam(max_length=128, pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="alert id")]
# Browsers cannot set headers on a WebSocket, and a key in the query string ends up in access logs. The page
# offers the subprotocols ["vigil", "key.<base64url of the key>"]; the server picks "vigil" (a browser drops a
# connection whose server picks none of the offered ones) and reads the key from the other.
WS_SUBPROTOCOL = "vigil"
_KEY_PREFIX = "key."


def subprotocol_key(offered: str | None) -> tuple[str | None, str | None]:
    """Sec-WebSocket-Protocol header -> (API key or None, subprotocol to accept with or None)."""
    protocols = [p.strip() for p in (offered or "").split(",")]
    selected = WS_SUBPROTOCOL if WS_SUBPROTOCOL in protocols else None
    for p in protocols:
        if p.startswith(_KEY_PREFIX):
            encoded = p[len(_KEY_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode(), selected
            except (ValueError, UnicodeDecodeError):
                return None, selected  # not a key we could have issued: refused as a missing key
    return None, selected


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui", include_in_schema=False)
def live_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Content-Security-Policy": _CSP})


@router.get("/ui/{asset}", include_in_schema=False)
def live_page_asset(asset: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    media_type = _ASSETS.get(asset)
    if media_type is None:
        msg = f"no UI asset {asset!r}; the live page is at /ui"
        raise NotFoundError(msg)
    return FileResponse(STATIC_DIR / asset, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get(
    "/alerts/{alert_id}/thumbnail.jpg",
    tags=["alerts"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no thumbnail (yet)"}},
)
def alert_thumbnail(alert_id: AlertId, redis: RedisDep, _: ViewerDep) -> Response:
    """JPEG of the alert's peak frame at the model's input resolution; kept as long as the alert."""
    jpeg = topics.get_alert_thumb(redis, alert_id)
    if jpeg is None:
        msg = (
            f"no thumbnail for alert {alert_id!r}: the alert is unknown or expired (GET /alerts lists them), "
            "or its peak frame was scored moments ago and the worker has not stored it yet"
        )
        raise NotFoundError(msg)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=5"})


@router.get(
    "/alerts/{alert_id}/heatmap.jpg",
    tags=["alerts"],
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "unknown alert, a model without localisation maps, or no heatmap stored"},
    },
)
def alert_heatmap(alert_id: AlertId, redis: RedisDep, store: StoreDep, _: ViewerDep) -> Response:
    """JPEG of the alert's peak frame (its thumbnail) with the model's localisation map of that frame drawn over it:
    where in the frame the model saw the anomaly. Only models whose method has a map (ffp, dast, f2lm, flowmem)."""
    alert = topics.get_alert(redis, alert_id)
    if alert is None:
        raise NotFoundError(unknown_alert(alert_id))
    method = _method_of(store, alert.model)
    if method is not None and not get_method(method).localizes:
        with_maps = ", ".join(m for m in list_methods() if get_method(m).localizes)
        msg = (
            f"alert {alert_id!r} has no heatmap: its model {alert.model} uses method {method!r}, which has no "
            f"localisation map (methods with one: {with_maps}; see vigil methods)"
        )
        raise NotFoundError(msg)
    maps = alert_maps(redis, alert_id)
    picture = topics.get_alert_thumb(redis, alert_id)
    if not maps or picture is None:
        missing = "maps" if not maps else "picture of its peak frame"
        msg = (
            f"no heatmap for alert {alert_id!r}: the {missing} were not stored (the worker keeps maps when "
            "VIGIL_WORKER__HEATMAPS is on, for live cameras, not batch jobs) or its peak frame was scored moments ago"
        )
        raise NotFoundError(msg)
    return Response(
        heatmap_jpeg(picture, maps, alert.peak_frame),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=5"},
    )


def _method_of(store: StoreDep, model: str) -> str | None:
    """The method of a model reference, or None when the registry no longer has it (the maps decide then)."""
    try:
        return store.resolve(model).card().method
    except (VigilModelError, OSError, ValueError):
        return None

"""The live page (`/ui`: plain HTML + JS from service/api/static, no CDN) and alert thumbnails for it.

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

from service.api.deps import RedisDep, ViewerDep
from service.api.errors import NotFoundError
from service.bus import topics

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

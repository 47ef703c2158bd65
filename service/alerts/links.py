"""Where an alert's resources are served: the paths of the API, absolute under `api.public_url` when it is set.
Webhook payloads carry them (`links`); the API fills an alert's `clip` with the path."""

from __future__ import annotations

from urllib.parse import quote

from service.settings import Settings


def clip_path(alert_id: str) -> str:
    return f"/alerts/{quote(alert_id, safe='')}/clip.mp4"


def alert_links(alert_id: str, settings: Settings) -> dict[str, str]:
    """{"alert", "thumbnail"[, "clip"]}: links a receiver can GET with a viewer key (clip only with clips enabled;
    it answers 404 until the ingester wrote the first, partial clip)."""
    base = (settings.api.public_url or "").rstrip("/")
    alert = f"/alerts/{quote(alert_id, safe='')}"
    links = {"alert": base + alert, "thumbnail": f"{base}{alert}/thumbnail.jpg"}
    if settings.clips.enabled:
        links["clip"] = base + clip_path(alert_id)
    return links

"""ASGI middleware of the API: a request-body limit, request metrics, and WebSocket keys kept out of the logs.

Plain ASGI classes (no BaseHTTPMiddleware), so streaming bodies and WebSockets pass through untouched.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics

# Routes that bound their own body: POST /jobs streams uploads up to jobs.max_upload_bytes and reads at most
# 64 KiB of JSON (service/api/routes/jobs.py).
_OWN_LIMIT = {("POST", "/jobs")}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without (or with a false) Content-Length passes the limit: FastAPI lets an
    HTTPException out of its body parsing, so the client gets this 413 and its message."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"request body over {limit} bytes (VIGIL_API__MAX_BODY_BYTES); job videos go to POST /jobs as uploads"


class BodyLimit:
    """Refuse request bodies over `limit` bytes before anything parses them: at once when Content-Length says so,
    else as soon as the bytes read pass it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in _OWN_LIMIT:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await JSONResponse({"detail": _too_large(self.limit)}, 413, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class RequestMetrics:
    """`vigil_api_requests_total{method,route,status}` and `vigil_api_request_seconds{method,route}` per HTTP
    request; `route` is the matched path template (bounded), `unmatched` for a 404 of no route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.API_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            metrics.API_REQUEST_SECONDS.labels(method=method, route=route).observe(time.perf_counter() - start)


class WebSocketKeyFromQuery:
    """Move `?api_key=` of a WebSocket request into the X-API-Key header before anything logs the request line.

    Uvicorn writes `"WebSocket /ws/scores?..." [accepted]` from the same scope the app receives, so the key is
    taken out of `query_string` in place; the feeds read it from the header as if the client had sent it there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and b"api_key" in scope.get("query_string", b""):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            keys = [v for k, v in pairs if k == "api_key"]
            scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "api_key"]).encode("latin-1")
            if keys and not any(name == b"x-api-key" for name, _ in scope["headers"]):
                scope["headers"] = [*scope["headers"], (b"x-api-key", keys[0].encode("latin-1"))]
        await self.app(scope, receive, send)

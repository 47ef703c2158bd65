"""Thin WebSocket feeds: `/ws/scores?camera=` (one camera or all), `/ws/alerts` and `/ws/health`; subscribe and
forward JSON.

Blocking XREADs run in worker threads with a 1 s timeout, so a closed socket or a Redis restart is noticed
within about a second; the feed resumes after a Redis restart without the client reconnecting.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from anyio import CancelScope
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from redis import Redis

from service import metrics
from service.api.routes.cameras import CAMERA_ID_MAX, CAMERA_ID_PATTERN
from service.api.routes.ui import subprotocol_key
from service.api.security import AuthError, Role, authorize
from service.bus import topics
from service.bus.client import REDIS_ERRORS, Backoff
from service.messages import AlertEvent, HealthEvent, ScoreMsg
from service.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])
BLOCK_MS = 1000
FEED_THREADS = 256  # concurrent WebSocket feeds reading at once; more clients wait for a free thread
POLICY_VIOLATION = 1008
CameraQuery = Annotated[str | None, Query(max_length=CAMERA_ID_MAX, pattern=CAMERA_ID_PATTERN)]


async def _accept(websocket: WebSocket) -> Redis | None:
    """Check the viewer key (header X-API-Key, ?api_key=, or the live page's key subprotocol), then accept;
    None = refused."""
    settings: Settings = websocket.app.state.settings
    sub_key, subprotocol = subprotocol_key(websocket.headers.get("sec-websocket-protocol"))
    key = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key") or sub_key
    try:
        authorize(key, Role.VIEWER, settings.api)
    except AuthError as e:
        await websocket.close(code=POLICY_VIOLATION, reason=str(e)[:120])
        return None
    await websocket.accept(subprotocol=subprotocol)
    client: Redis = websocket.app.state.redis
    return client


def _limiter(websocket: WebSocket) -> anyio.CapacityLimiter:
    """Feeds block a thread each; their own limiter keeps them from using up the REST routes' thread pool."""
    state = websocket.app.state
    if getattr(state, "feed_limiter", None) is None:
        state.feed_limiter = anyio.CapacityLimiter(FEED_THREADS)
    limiter: anyio.CapacityLimiter = state.feed_limiter
    return limiter


def _now_id(redis: Redis) -> str:
    """A stream id for "from now on" taken from the server clock. Unlike "$" it stays fixed between reads,
    so entries added while no XREAD is waiting are not skipped."""
    seconds, micros = redis.time()
    return f"{int(seconds) * 1000 + int(micros) // 1000}-0"


async def _until_disconnect(websocket: WebSocket, scope: CancelScope) -> None:
    try:
        while True:
            await websocket.receive_text()  # clients send nothing; this only notices the close
    except WebSocketDisconnect:
        scope.cancel()


async def _serve(websocket: WebSocket, topic: str, pump: Callable[[], Awaitable[None]]) -> None:
    clients = metrics.API_WEBSOCKETS.labels(topic=topic)
    clients.inc()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_disconnect, websocket, tg.cancel_scope)
            # RuntimeError: a send after the close was already seen by the receiving task.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await pump()
            tg.cancel_scope.cancel()
    finally:
        clients.dec()


@router.websocket("/ws/scores")
async def ws_scores(websocket: WebSocket, camera: CameraQuery = None) -> None:
    """Every new score (ScoreMsg JSON, one per message) of `camera`, or of every camera when it is omitted."""
    redis = await _accept(websocket)
    if redis is None:
        return
    start_id = await anyio.to_thread.run_sync(_now_id, redis)
    last_ids: dict[str, str] = {camera: start_id} if camera else {}

    def read() -> list[tuple[str, str, ScoreMsg]]:
        if camera is None:  # all cameras: pick up cameras added since the last read
            for c in topics.list_cameras(redis):
                last_ids.setdefault(c.id, start_id)
        if not last_ids:
            time.sleep(BLOCK_MS / 1000)
            return []
        return topics.read_new_scores(redis, last_ids, block_ms=BLOCK_MS)

    async def pump() -> None:
        backoff = Backoff(initial_s=0.2, max_s=2.0)
        while True:
            try:
                batch = await anyio.to_thread.run_sync(read, abandon_on_cancel=True, limiter=_limiter(websocket))
            except REDIS_ERRORS as e:
                log.warning("score feed waiting for Redis: %s", e)
                await anyio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            for cam, entry_id, score in batch:
                last_ids[cam] = entry_id
                await websocket.send_text(score.model_dump_json())

    await _serve(websocket, "scores", pump)


def _event_feed(
    websocket: WebSocket,
    name: str,
    read: Callable[[str], list[tuple[str, Any]]],
    messages: Callable[[list[Any]], list[str]],
    last_id: str,
) -> Callable[[], Awaitable[None]]:
    """The pump of an event stream's WebSocket feed: blocking reads after `last_id` (in a worker thread),
    `messages` turns a batch of events into the JSON texts to send (filtering, adding what an event lacks, in the
    same thread), and a Redis outage waits with backoff instead of closing the socket."""

    async def pump() -> None:
        nonlocal last_id
        backoff = Backoff(initial_s=0.2, max_s=2.0)
        while True:
            try:
                batch = await anyio.to_thread.run_sync(
                    read, last_id, abandon_on_cancel=True, limiter=_limiter(websocket)
                )
                events = [e for _, e in batch]
                # most reads end empty at their block timeout: no second thread hop for them
                texts = await anyio.to_thread.run_sync(messages, events, limiter=_limiter(websocket)) if events else []
            except REDIS_ERRORS as e:
                log.warning("%s feed waiting for Redis: %s", name, e)
                await anyio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            if batch:
                last_id = batch[-1][0]
            for text in texts:
                await websocket.send_text(text)

    return pump


@router.websocket("/ws/alerts")
async def ws_alerts(websocket: WebSocket, camera: CameraQuery = None) -> None:
    """Every new alert event (AlertEvent JSON: opened, updated, closed), optionally of one camera."""
    redis = await _accept(websocket)
    if redis is None:
        return

    def messages(events: list[AlertEvent]) -> list[str]:
        mine = [e for e in events if camera is None or e.alert.camera == camera]
        # each alert with its clip's path once one is written (an event is saved before its clip exists)
        alerts = topics.with_clip_paths(redis, [e.alert for e in mine]) if mine else []
        return [e.model_copy(update={"alert": a}).model_dump_json() for e, a in zip(mine, alerts, strict=True)]

    read = functools.partial(topics.read_alert_events, redis, block_ms=BLOCK_MS)
    start = await anyio.to_thread.run_sync(_now_id, redis)  # events from the moment the client connected
    await _serve(websocket, "alerts", _event_feed(websocket, "alert", read, messages, start))


@router.websocket("/ws/health")
async def ws_health(websocket: WebSocket, camera: CameraQuery = None) -> None:
    """Every new camera health event (HealthEvent JSON: a condition raised or cleared), optionally of one camera."""
    redis = await _accept(websocket)
    if redis is None:
        return

    def messages(events: list[HealthEvent]) -> list[str]:
        return [e.model_dump_json() for e in events if camera is None or e.camera == camera]

    read = functools.partial(topics.read_health_events, redis, block_ms=BLOCK_MS)
    start = await anyio.to_thread.run_sync(_now_id, redis)
    await _serve(websocket, "health", _event_feed(websocket, "health", read, messages, start))

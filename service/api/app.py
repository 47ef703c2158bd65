"""`create_app(settings=None)`: the FastAPI app factory; the lifespan opens and closes the Redis client."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from models.store import ModelStore
from service.api import docs
from service.api.errors import register_exception_handlers
from service.api.middleware import BodyLimit, RequestMetrics, WebSocketKeyFromQuery
from service.api.routes import alerts, calibration, cameras, clips, health, incidents, jobs, models, scores, ui, ws
from service.bus.client import REDIS_ERRORS, check_server, connect
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pooled sync client: routes are plain `def` (run in the thread pool) and use the bus's topics
        # helpers directly, so serialisation stays in service/bus/topics/ only.
        app.state.redis = connect(settings.redis)
        with contextlib.suppress(*REDIS_ERRORS):  # Redis not up yet: serve anyway, routes answer 503 until it is
            check_server(app.state.redis)
        if not settings.api.admin_keys:
            log.warning("no admin keys configured (VIGIL_API__ADMIN_KEYS): anyone can change state; dev only")
        try:
            yield
        finally:
            app.state.redis.close()

    app = FastAPI(
        title="vigil",
        version="0.1.0",
        summary="Real-time video anomaly detection: cameras in, calibrated per-frame scores and alerts out.",
        lifespan=lifespan,
        docs_url=None,  # served by service/api/docs.py from local assets, so the pages work offline
        redoc_url=None,
    )
    # Added last = outermost: metrics see every answer, the 413s of the body limit included.
    app.add_middleware(WebSocketKeyFromQuery)
    app.add_middleware(BodyLimit, limit=settings.api.max_body_bytes)
    app.add_middleware(RequestMetrics)
    app.state.settings = settings
    app.state.store = ModelStore(settings.store.root)
    register_exception_handlers(app)
    app.include_router(jobs.router)  # batch re-scoring jobs (service/jobs/)
    routers = (health, cameras, calibration, scores, alerts, clips, incidents, ws, models, ui)
    for router in (module.router for module in routers):
        app.include_router(router)
    docs.mount(app)
    docs.document_errors(app)
    return app

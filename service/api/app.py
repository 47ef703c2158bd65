"""`create_app(settings=None)`: the FastAPI app factory; the lifespan opens and closes the async Redis client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from models.store import ModelStore
from service.api.errors import register_exception_handlers
from service.api.routes import health, models
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)


def _redis_client(settings: Settings) -> Redis:
    # Short timeouts: a request that hits a restarting Redis should fail fast with 503, not hang.
    return Redis.from_url(
        settings.redis.url.get_secret_value(),
        socket_connect_timeout=settings.redis.connect_timeout_s,
        socket_timeout=settings.redis.connect_timeout_s,
        health_check_interval=10,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = _redis_client(settings)
        if not settings.api.admin_keys:
            log.warning("no admin keys configured (VIGIL_API__ADMIN_KEYS): anyone can change state; dev only")
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(
        title="vigil",
        version="0.1.0",
        summary="Real-time video anomaly detection: cameras in, calibrated per-frame scores and alerts out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = ModelStore(settings.store.root)
    register_exception_handlers(app)
    for router in (health.router, models.router):
        app.include_router(router)
    return app

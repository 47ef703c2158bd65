"""Liveness, readiness and Prometheus exposition: /healthz, /readyz, /metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service import metrics as prometheus
from service.api.deps import RedisDep, SettingsDep
from service.bus import topics
from service.bus.client import REDIS_ERRORS

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving; says nothing about Redis or workers (that is /readyz)."""
    return Health(status="ok")


class Readiness(BaseModel):
    ready: bool
    redis: bool
    workers: int  # workers with a heartbeat younger than VIGIL_WORKER__HEARTBEAT_TTL_S
    reason: str = ""


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(redis: RedisDep, settings: SettingsDep) -> Readiness | JSONResponse:
    """Ready when Redis answers and at least one worker has a fresh heartbeat; 503 says which is missing."""
    try:
        redis.ping()
        beats = topics.read_heartbeats(redis, "worker")
    except REDIS_ERRORS as e:
        return _not_ready(Readiness(ready=False, redis=False, workers=0, reason=f"redis unavailable: {e}"))
    now = time.time()
    fresh = [b for b in beats if now - b.ts <= settings.worker.heartbeat_ttl_s]
    if not fresh:
        reason = "no worker heartbeat: start one with `vigil worker` (or `vigil up`)"
        return _not_ready(Readiness(ready=False, redis=True, workers=0, reason=reason))
    return Readiness(ready=True, redis=True, workers=len(fresh))


def _not_ready(body: Readiness) -> JSONResponse:
    return JSONResponse(status_code=503, content=body.model_dump())


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics() -> Response:
    body, content_type = prometheus.render_latest()
    return Response(body, media_type=content_type)

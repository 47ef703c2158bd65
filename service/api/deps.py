"""`Annotated` dependency aliases, so route signatures stay short: settings, Redis, model store, roles."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from redis import Redis

from models.store import ModelStore
from service.api.security import API_KEY_HEADER, Role, authorize
from service.settings import Settings

_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="viewer, operator or admin key")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_redis(request: Request) -> Redis:
    client: Redis = request.app.state.redis
    return client


def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


_KeyDep = Annotated[str | None, Security(_api_key)]


def require_viewer(settings: Annotated[Settings, Depends(get_settings_dep)], key: _KeyDep) -> Role:
    return authorize(key, Role.VIEWER, settings.api)


def require_operator(settings: Annotated[Settings, Depends(get_settings_dep)], key: _KeyDep) -> Role:
    return authorize(key, Role.OPERATOR, settings.api)


def require_admin(settings: Annotated[Settings, Depends(get_settings_dep)], key: _KeyDep) -> Role:
    return authorize(key, Role.ADMIN, settings.api)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RedisDep = Annotated[Redis, Depends(get_redis)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
ViewerDep = Annotated[Role, Depends(require_viewer)]
OperatorDep = Annotated[Role, Depends(require_operator)]
AdminDep = Annotated[Role, Depends(require_admin)]

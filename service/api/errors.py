"""`register_exception_handlers(app)`: domain errors -> JSON responses with a status and a message saying why."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.errors import ModelNotFoundError
from service.api.security import API_KEY_HEADER, AuthError
from service.errors import MessageError
from service.messages import mask_credentials

log = logging.getLogger(__name__)


class NotFoundError(LookupError):
    """A camera, alert or other resource the API was asked for that does not exist."""


class ConflictError(Exception):
    """A create that collides with an existing resource."""


class InvalidRequestError(ValueError):
    """A request that is well-formed JSON but asks for something impossible (e.g. an unknown model)."""


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message}, headers=headers)


async def _auth(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    if exc.missing:
        return _json(401, str(exc), {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'})
    return _json(403, str(exc))


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return _json(404, str(exc))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return _json(409, str(exc))


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    return _json(422, str(exc))


async def _undecodable(request: Request, exc: Exception) -> JSONResponse:
    # Data in Redis this version cannot read (another schema version, corruption): a server-side fault, said plainly.
    log.error("undecodable data during %s %s: %s", request.method, request.url.path, exc)
    return _json(500, f"stored data could not be decoded: {exc}")


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    # The API stays up while Redis restarts; callers get a retryable 503 instead of a stack trace.
    log.warning("redis unavailable during %s %s: %s", request.method, request.url.path, exc)
    return _json(503, "redis is unavailable; retry in a few seconds", {"Retry-After": "2"})


# What a 422 echoes of the input is bounded: a few errors, short strings, shallow containers. The request itself is
# bounded too (body limit, max_length everywhere), but the echo must stay cheap and small whatever came in.
_ECHO_ERRORS = 20
_ECHO_CHARS = 200
_ECHO_ITEMS = 10
_ECHO_DEPTH = 3


def _echo(value: Any, depth: int = 0) -> Any:
    """A short, JSON-safe, credential-masked copy of an input (NaN and Infinity become strings)."""
    if isinstance(value, bytes):
        value = value[: _ECHO_CHARS * 4].decode("utf-8", "replace")
    if isinstance(value, str):
        masked = mask_credentials(value)  # masked whole first: a cut could split a URL before its '@'
        return masked if len(masked) <= _ECHO_CHARS else f"{masked[:_ECHO_CHARS]}... ({len(value)} characters)"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _ECHO_DEPTH:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:_ECHO_ITEMS]
        return {str(_echo(k, _ECHO_DEPTH - 1)): _echo(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_echo(v, depth + 1) for v in value[:_ECHO_ITEMS]]
    return _echo(str(value), depth)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI echoes each invalid input back; a camera URL may hold a password, so it is masked like everywhere else,
    # and bounded, so a hostile input costs the event loop nothing.
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    errors = [
        {
            "type": str(err.get("type", "")),
            "loc": [_echo(part, _ECHO_DEPTH - 1) for part in err.get("loc", ())][:_ECHO_ITEMS],
            "msg": _echo(str(err.get("msg", ""))),
            "input": _echo(err.get("input")),
        }
        for err in found[:_ECHO_ERRORS]
    ]
    if len(found) > _ECHO_ERRORS:
        errors.append({"type": "too_many_errors", "loc": [], "msg": f"{len(found) - _ECHO_ERRORS} more errors"})
    return JSONResponse(status_code=422, content={"detail": errors})


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(ModelNotFoundError, _not_found)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    app.add_exception_handler(InvalidRequestError, _invalid)
    app.add_exception_handler(MessageError, _undecodable)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)

"""No camera secret reaches a viewer, a log line or Redis (other than the stored camera config): the URL corpus of
tests/service/test_urls.py goes through the real API and a real ingester that fails to connect to each camera."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest
import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.bus import keys
from service.settings import Settings
from tests.conftest import free_port
from tests.service.ingest.conftest import MODEL, wait_for
from tests.service.test_urls import CORPUS

ADMIN, VIEWER = {"X-API-Key": "admin-key-0123456789"}, {"X-API-Key": "viewer-key-0123456789"}


def on_closed_port(url: str, port: int) -> str:
    """The same URL shape (userinfo, path, query) aimed at a closed local port, so connecting fails at once."""
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:cut].rpartition("@")
    host = "[::1]" if hostport.startswith("[") else "127.0.0.1"
    return f"{scheme}://{userinfo}{at}{host}:{port}{rest[cut:]}"


def redis_values(r: redis.Redis) -> str:
    """Every value in Redis but the camera registry, as text."""
    out = []
    for key in r.scan_iter():
        if key == keys.CAMERAS_HASH.encode():
            continue
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key))
        elif kind == b"hash":
            out.extend(r.hgetall(key).values())
        elif kind == b"stream":
            out.extend(v for _, fields in r.xrange(key) for v in fields.values())
        elif kind == b"zset":
            out.extend(r.zrange(key, 0, -1))
        elif kind in (b"set", b"list"):
            out.extend(r.smembers(key) if kind == b"set" else r.lrange(key, 0, -1))
        out.append(key)
    return "\n".join(v.decode("utf-8", "replace") for v in out if isinstance(v, bytes))


def test_no_secret_in_api_responses_logs_or_redis(
    settings: Settings,
    model_store: Path,
    rclient: redis.Redis,
    start_ingester: Callable[..., object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    keys_set = {"admin_keys": [ADMIN["X-API-Key"]], "viewer_keys": [VIEWER["X-API-Key"]]}
    keyed = Settings(redis=settings.redis, store=settings.store, ingest=settings.ingest, api=keys_set)
    port = free_port()
    secrets = [s for _, found in CORPUS for s in found]
    seen: list[str] = []
    with TestClient(create_app(keyed)) as api:
        ids = []
        for i, (url, _) in enumerate(CORPUS):
            r = api.post(
                "/cameras", headers=ADMIN, json={"id": f"cam{i}", "url": on_closed_port(url, port), "model": MODEL}
            )
            assert r.status_code == 201, r.text
            seen.append(r.text)
            ids.append(f"cam{i}")
        start_ingester(settings)

        def all_failed() -> bool:
            states = [api.get(f"/cameras/{c}/status", headers=VIEWER).json() for c in ids]
            return all(s["state"] == "error" and s["reason"] for s in states)

        wait_for(all_failed, 30, "every camera to fail to connect")
        seen.append(api.get("/cameras", headers=VIEWER).text)
        for c in ids:
            seen.append(api.get(f"/cameras/{c}", headers=VIEWER).text)
            seen.append(api.get(f"/cameras/{c}/status", headers=VIEWER).text)
    seen.append(caplog.text)
    seen.append(redis_values(rclient))
    assert "connection refused" in "\n".join(seen).lower()  # the failures really were read and reported
    for text in seen:
        for secret in secrets:
            assert secret not in text, (secret, text[:500])
            assert unquote(secret) not in text, (secret, text[:500])
    stored = rclient.hget(keys.CAMERAS_HASH, "cam0")
    assert stored is not None
    assert secrets[0].encode() in stored  # the registry keeps the real URL for the ingester

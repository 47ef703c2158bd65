"""Requests are bounded before anything parses them, 422s echo little, NaN is a 422, request metrics are recorded,
and /docs and /redoc need nothing from the internet."""

from __future__ import annotations

import json
import re
import time

import redis
from fastapi.testclient import TestClient

from models.store import ModelStore
from service.bus import keys
from tests.service.api.conftest import add_model

RTSP = "rtsp://cam.example.com:554/stream1"


def test_bodies_over_the_limit_are_refused_before_parsing(make_client, store: ModelStore, redis_url: str) -> None:
    add_model(store, "ffp")
    client = make_client(api={"max_body_bytes": 4096})
    big = json.dumps({"id": "gate", "url": RTSP, "model": "ffp", "pad": "x" * 10_000}).encode()
    r = client.post("/cameras", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "VIGIL_API__MAX_BODY_BYTES" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/cameras", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert not redis.Redis.from_url(redis_url).exists(keys.CAMERAS_HASH)
    ok = client.post("/cameras", json={"id": "gate", "url": RTSP, "model": "ffp"})
    assert ok.status_code == 201


def test_huge_ids_get_a_small_fast_422(client: TestClient) -> None:
    start = time.perf_counter()
    r = client.get("/cameras/" + "a" * 65_000)
    assert r.status_code == 422
    assert len(r.content) < 2000  # the echo is cut
    hostile = "rtsp://" + "x" * 60_000 + ":pw@h"  # masked whole, then cut
    r = client.get("/alerts", params={"camera": hostile})
    assert r.status_code == 422
    assert ":pw@" not in r.text
    assert len(r.content) < 2000
    assert time.perf_counter() - start < 1.0


def test_many_errors_are_summarised(client: TestClient) -> None:
    body = {"id": "gate", "url": RTSP, "model": "ffp", **{f"extra{i}": i for i in range(500)}}
    r = client.post("/cameras", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == 21
    assert detail[-1]["msg"] == "480 more errors"


def test_nan_and_infinity_are_422_not_500(client: TestClient, store: ModelStore) -> None:
    add_model(store, "ffp")
    for literal in ("NaN", "Infinity", "-Infinity"):
        for field in ('"target_fps": {}', '"alerts": {{"threshold": {}}}', '"id": {}', '"enabled": {}'):
            body = f'{{"id": "gate", "url": "{RTSP}", "model": "ffp", {field.format(literal)}}}'
            r = client.post("/cameras", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, (body, r.text)
            json.loads(r.text)  # standard JSON: no bare NaN in the answer


def test_request_metrics_are_recorded(client: TestClient) -> None:
    client.get("/cameras")
    client.get("/cameras/nope")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert re.search(r'vigil_api_requests_total\{method="GET",route="/cameras",status="200"\} [1-9]', text)
    assert re.search(r'vigil_api_requests_total\{method="GET",route="/cameras/\{camera_id\}",status="404"\}', text)
    assert re.search(r'vigil_api_requests_total\{method="GET",route="unmatched",status="404"\}', text)
    assert re.search(r'vigil_api_request_seconds_count\{method="GET",route="/cameras"\} [1-9]', text)


def test_websocket_clients_are_counted(client: TestClient) -> None:
    def clients() -> float:
        found = re.search(r'vigil_api_websocket_clients\{topic="alerts"\} (\S+)', client.get("/metrics").text)
        return float(found.group(1)) if found else 0.0

    def settles_at(expected: float) -> bool:
        deadline = time.monotonic() + 5
        while clients() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return clients() == expected

    before = clients()
    with client.websocket_connect("/ws/alerts"):
        assert settles_at(before + 1)
    assert settles_at(before)


def test_docs_pages_load_only_local_assets(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        assert "default-src 'self'" in r.headers["content-security-policy"]
        sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert sources, r.text
        for url in sources:
            assert url.startswith("/"), (page, url)  # nothing from a CDN, no Google fonts
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000
        assert "fonts.googleapis" not in r.text
        assert "cdn.jsdelivr" not in r.text
    assert '"validatorUrl": null' in client.get("/docs").text

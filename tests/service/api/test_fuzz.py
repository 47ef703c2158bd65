"""Schemathesis fuzzes every operation of the OpenAPI schema against the real app and Redis: never a 5xx."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from models.store import ModelStore
from service.bus import topics
from service.messages import Heartbeat
from tests.service.api.conftest import add_model

MAX_EXAMPLES = 10  # per operation; with about 15 operations the run stays around 30 s on 2 cores


@pytest.mark.slow
def test_openapi_fuzz_no_server_errors(
    make_client: Callable[..., TestClient], store: ModelStore, redis_url: str
) -> None:
    add_model(store, "ffp")
    # A live worker heartbeat, so /readyz answers 200 and its documented 503 does not count as a failure.
    beat = Heartbeat(component="worker", id="fuzz", pid=1, host="test")
    topics.write_heartbeat(redis.Redis.from_url(redis_url), beat, ttl_s=600)
    # lifespan has run: the app holds its Redis client. A long heartbeat TTL keeps the heartbeat fresh all run.
    client = make_client(worker={"heartbeat_ttl_s": 3600})
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12  # every route made it into the schema

    for operation in operations:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        check()
    assert not failures, "\n".join(failures[:10])

"""Schemathesis against the real app and Redis with API keys configured: every operation fuzzed with responses checked
against the schema, then stateful sequences along the schema's links (create camera -> read -> patch -> status ->
delete). Bounded so the run stays within about 40 s on 2 cores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from models.store import ModelStore
from service.bus import keys, topics
from service.messages import Heartbeat
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY, add_model

MAX_EXAMPLES = 10  # per operation; with about 20 operations the run stays around 30 s on 2 cores
STATEFUL_EXAMPLES = 30  # sequences of up to STEPS calls along the links
STEPS = 6
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
ADMIN = {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def fuzzed_app(make_client: Callable[..., TestClient], store: ModelStore, redis_url: str) -> TestClient:
    add_model(store, "ffp")
    # A live worker heartbeat, so /readyz answers 200 and its documented 503 does not count as a failure.
    beat = Heartbeat(component="worker", id="fuzz", pid=1, host="test")
    topics.write_heartbeat(redis.Redis.from_url(redis_url), beat, ttl_s=600)
    # A long heartbeat TTL keeps the heartbeat fresh all run; keys as in production.
    return make_client(worker={"heartbeat_ttl_s": 3600}, api={"admin_keys": [ADMIN_KEY], "viewer_keys": [VIEWER_KEY]})


@pytest.mark.slow
def test_openapi_fuzz_every_operation(fuzzed_app: TestClient) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app.app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12  # every route made it into the schema

    for operation in operations:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=ADMIN)
            try:
                case.validate_response(response, checks=CHECKS, headers=ADMIN)
            except AssertionError as e:  # schemathesis' FailureGroup: keep going, report them all at the end
                failures.append(f"{case.method} {case.formatted_path}: {str(e)[:400]}")

        check()
    assert not failures, "\n".join(failures[:10])


@pytest.mark.slow
def test_openapi_stateful_camera_lifecycle(fuzzed_app: TestClient) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app.app)
    base = schema.as_state_machine()
    calls: list[tuple[str, str, int]] = []

    r = fuzzed_app.app.state.redis

    class CameraLifecycle(base):  # type: ignore[valid-type, misc]
        def setup(self) -> None:  # each sequence starts from no cameras, so replays see the same responses
            r.delete(keys.CAMERAS_HASH, keys.CAMERA_STATUS_HASH)

        def before_call(self, case: schemathesis.Case) -> None:
            # Random bodies almost never name the one registered model and a valid URL: give creations those, so
            # the links (read, patch, status, delete) run on cameras that exist.
            if case.method == "POST" and case.path == "/cameras" and isinstance(case.body, dict):
                case.body.update(model="ffp", url="rtsp://user:pw@cam.example.com:554/stream1")

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": ADMIN}

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            calls.append((case.method, case.path, response.status_code))

        def validate_response(self, response: Any, case: schemathesis.Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, headers=ADMIN)

    CameraLifecycle.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same sequences every run: a failure reproduces
        )
    )
    created = [c for c in calls if c[:2] == ("POST", "/cameras") and c[2] == 201]
    followed = {(method, path) for method, path, status in calls if path.startswith("/cameras/{camera_id}")}
    assert created, calls[:20]  # the sequences really went through the links
    # which of the links (read, patch, delete, health, scores, calibration, replay...) a run takes is random; that it
    # takes some of them on the cameras it created is the point
    assert followed, calls[:20]

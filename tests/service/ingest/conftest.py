"""Ingest test fixtures: a model registry with one card (no weights needed), settings with short timeouts,
ingesters running in threads, and the real RTSP server of tests/rtsp.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from models.card import ModelCard
from models.store import ModelStore
from models.types import InputSpec
from service.bus import keys, topics
from service.ingest.ingester import Ingester
from service.messages import CameraStatus, WindowMsg
from service.settings import IngestSettings, RedisSettings, Settings, StoreSettings
from tests.rtsp import rtsp_server_factory  # noqa: F401  (fixture)

SPEC = InputSpec(height=32, width=32, channels=1, context=2)
MODEL = "tiny-ingest"


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    """A registry holding `tiny-ingest@v1`: the ingester reads only the card's input spec."""
    store = ModelStore(tmp_path / "registry")
    version = store.create_version(MODEL)
    card = ModelCard(name=MODEL, method="test", config={}, input_spec=SPEC.to_dict(), signal_names=["s"])
    store.write_card(version, card)
    return store.root


def make_settings(redis_url: str, registry: Path, **ingest: Any) -> Settings:
    defaults: dict[str, Any] = {
        "window_frames": 4,
        "lease_ttl_s": 1.5,
        "stall_timeout_s": 1.5,
        "open_timeout_s": 2.0,
        "reconnect_initial_s": 0.1,
        "reconnect_max_s": 0.5,
        "heartbeat_ttl_s": 1.5,
        "status_interval_s": 0.2,
        "metrics_port": 0,
    }
    return Settings(
        redis=RedisSettings(url=redis_url, startup_wait_s=5),  # type: ignore[arg-type]
        store=StoreSettings(root=registry),
        ingest=IngestSettings(**{**defaults, **ingest}),
    )


@pytest.fixture
def settings(redis_url: str, model_store: Path) -> Settings:
    return make_settings(redis_url, model_store)


@pytest.fixture
def start_ingester() -> Iterator[Callable[..., Ingester]]:
    """Factory: start an Ingester in a thread; every one is stopped (and joined) at teardown."""
    running: list[tuple[Ingester, threading.Thread]] = []

    def start(settings: Settings, ingester_id: str | None = None) -> Ingester:
        ingester = Ingester(settings, ingester_id=ingester_id)
        thread = threading.Thread(target=ingester.run, kwargs={"handle_signals": False}, daemon=True)
        thread.start()
        running.append((ingester, thread))
        return ingester

    yield start
    for ingester, thread in running:
        ingester.stop()
        thread.join(30)
        assert not thread.is_alive(), f"ingester {ingester.id} did not stop"


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def windows(r: redis.Redis, camera: str | None = None) -> list[WindowMsg]:
    entries = r.xrange(keys.windows_stream(0))
    out = [topics.decode_window(fields) for _, fields in entries]
    return [w for w in out if camera is None or w.camera == camera]


def status(r: redis.Redis, camera: str) -> CameraStatus | None:
    return topics.get_camera_status(r, camera)


def state_is(r: redis.Redis, camera: str, *states: str) -> Callable[[], CameraStatus | None]:
    def check() -> CameraStatus | None:
        s = status(r, camera)
        return s if s is not None and s.state in states else None

    return check

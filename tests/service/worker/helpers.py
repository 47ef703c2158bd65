"""Helpers for worker tests: settings for a private Redis and store, a worker running in a thread, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import redis

from service.bus import topics
from service.messages import ScoreMsg
from service.settings import RedisSettings, Settings, StoreSettings, WorkerSettings
from service.worker.main import Worker
from tests.service.processes import running

# Short timeouts so claims, gaps, alias moves and heartbeats happen within a test's seconds.
FAST_WORKER: dict[str, Any] = {
    "device": "cpu",
    "max_batch": 4,
    "max_wait_ms": 10,
    "claim_idle_ms": 1000,
    "gap_timeout_s": 3.0,
    "metrics_port": 0,
    "alias_refresh_s": 0.3,
    "heartbeat_ttl_s": 3.0,
}


def worker_settings(redis_url: str, store_root: Path, **worker: Any) -> Settings:
    return Settings(
        redis=RedisSettings(url=redis_url, startup_wait_s=5),  # type: ignore[arg-type]
        store=StoreSettings(root=store_root),
        worker=WorkerSettings(**{**FAST_WORKER, **worker}),
    )


def running_worker(
    settings: Settings, worker_id: str = "test-worker", serve_metrics: bool = False
) -> AbstractContextManager[Worker]:
    """A Worker in a background thread; stopped and joined on exit (and its exit code checked)."""
    return running(Worker(settings, worker_id=worker_id, serve_metrics=serve_metrics), "worker")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def all_scores(r: redis.Redis, camera: str) -> list[ScoreMsg]:
    return [s for _, s in topics.read_scores(r, camera, count=None)]

"""Helpers for worker tests: settings for a private Redis and store, a worker running in a thread, waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from service.bus import topics
from service.messages import ScoreMsg
from service.settings import RedisSettings, Settings, StoreSettings, WorkerSettings
from service.worker.main import Worker


def worker_settings(redis_url: str, store_root: Path, **worker: Any) -> Settings:
    defaults: dict[str, Any] = {
        "device": "cpu",
        "max_batch": 4,
        "max_wait_ms": 10,
        "claim_idle_ms": 1000,
        "gap_timeout_s": 3.0,
        "metrics_port": 0,
        "alias_refresh_s": 0.3,
        "heartbeat_ttl_s": 3.0,
    }
    return Settings(
        redis=RedisSettings(url=redis_url, startup_wait_s=5),  # type: ignore[arg-type]
        store=StoreSettings(root=store_root),
        worker=WorkerSettings(**{**defaults, **worker}),
    )


@contextmanager
def running_worker(settings: Settings, worker_id: str = "test-worker", serve_metrics: bool = False) -> Iterator[Worker]:
    """A Worker in a background thread; stopped and joined on exit (and its exit code checked)."""
    worker = Worker(settings, worker_id=worker_id, serve_metrics=serve_metrics)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run(handle_signals=False)), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop within 30 s"
    assert result == [0], f"worker exited with {result}"


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def all_scores(r: redis.Redis, camera: str) -> list[ScoreMsg]:
    return [s for _, s in topics.read_scores(r, camera, count=None)]

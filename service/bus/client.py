"""Redis connections from `Settings.redis`: factory, bounded wait at startup, retry with backoff.

Usage (every process):

    client = connect(settings.redis)
    wait_for_redis(client, settings.redis.startup_wait_s)   # logs each failed try, raises BusError at the end

Loops that must survive a Redis restart catch `REDIS_ERRORS`, call `backoff.sleep(stop_event)` and go on;
`backoff.reset()` after the first success.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from service.errors import BusError
from service.messages import mask_credentials
from service.settings import RedisSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a lost or restarting Redis raises; BusyLoadingError comes while a restarted server loads its data.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def connect(settings: RedisSettings) -> redis.Redis:
    """A client (connection pool) for binary payloads: responses are bytes, callers decode."""
    return redis.Redis.from_url(
        settings.url.get_secret_value(),
        socket_connect_timeout=settings.connect_timeout_s,
        socket_timeout=None,  # blocking reads (XREADGROUP BLOCK) bound themselves
        health_check_interval=30,
        decode_responses=False,
    )


def describe(client: redis.Redis) -> str:
    """The server address for logs, without any password."""
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    return mask_credentials(f"redis://{where}/{kwargs.get('db', 0)}")


def wait_for_redis(client: redis.Redis, timeout_s: float, stop: threading.Event | None = None) -> None:
    """PING until it answers or `timeout_s` passes (then BusError); logs every failed attempt."""
    deadline = time.monotonic() + timeout_s
    backoff = Backoff(initial_s=0.1, max_s=2.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            client.ping()
        except REDIS_ERRORS as e:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                msg = f"Redis at {describe(client)} did not answer within {timeout_s:g} s ({e}); is redis-server up?"
                raise BusError(msg) from e
            log.warning("waiting for Redis at %s (attempt %d, %.1f s left): %s", describe(client), attempt, left, e)
            backoff.sleep(stop, limit_s=left)
        else:
            if attempt > 1:
                log.info("Redis at %s answered after %d attempts", describe(client), attempt)
            refuse_cluster_node(client)
            return


def refuse_cluster_node(client: redis.Redis) -> None:
    """BusError if the server is a Redis Cluster node. vigil's scripts and transactions touch a camera's keys together
    with shared ones (indexes, revision counters, the windows stream), which a cluster spreads over shards, so on a
    cluster they would fail later, one command at a time, with CROSSSLOT or MOVED; better to say so at start."""
    try:
        info = client.info("cluster")
    except redis.ResponseError:  # INFO denied by an ACL: nothing to tell, the commands themselves will say
        return
    if info.get("cluster_enabled"):
        msg = (
            f"Redis at {describe(client)} is a Redis Cluster node (cluster_enabled:1); vigil needs a standalone Redis "
            "(a primary, optionally with replicas and Sentinel): set VIGIL_REDIS__URL to one (docs/OPERATIONS.md, "
            "Scaling)"
        )
        raise BusError(msg)


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog), capped at `max_s`."""

    def __init__(self, initial_s: float = 0.2, max_s: float = 10.0, factor: float = 2.0) -> None:
        self.initial_s, self.max_s, self.factor = initial_s, max_s, factor
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.initial_s * self.factor**self.failures)
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def sleep(self, stop: threading.Event | None = None, limit_s: float | None = None) -> float:
        """Sleep the next delay (returns early when `stop` is set); returns the delay chosen."""
        delay = self.next_delay()
        if limit_s is not None:
            delay = max(0.0, min(delay, limit_s))
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0


def retry(
    fn: Callable[[], T],
    attempts: int = 5,
    backoff: Backoff | None = None,
    errors: tuple[type[Exception], ...] = REDIS_ERRORS,
    what: str = "redis call",
) -> T:
    """Call `fn` until it succeeds, at most `attempts` times, sleeping with backoff between tries."""
    backoff = backoff or Backoff()
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except errors as e:
            if attempt == attempts:
                msg = f"{what} failed {attempts} times, last error: {e}"
                raise BusError(msg) from e
            log.warning("%s failed (attempt %d of %d): %s", what, attempt, attempts, e)
            backoff.sleep()
    raise AssertionError("unreachable")  # pragma: no cover

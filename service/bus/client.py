"""Redis connections from `Settings.redis`: factory, bounded wait at startup, retry with backoff.

Usage (every process):

    client = connect(settings.redis)
    wait_for_redis(client, settings.redis.startup_wait_s)   # logs each failed try, raises BusError at the end

With `settings.redis.cluster` the client is a `RedisCluster` (typed as `redis.Redis`: the commands vigil uses are
the same, and keys.py puts everything one script or transaction touches in one slot). Its constructor needs a node
to answer, so `connect` itself waits (up to `startup_wait_s`) on a cluster. `wait_for_redis` checks that the server's
mode matches the setting and that every process agrees on the partition count.

Loops that must survive a Redis restart catch `REDIS_ERRORS`, call `backoff.sleep(stop_event)` and go on;
`backoff.reset()` after the first success.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
from redis.cluster import RedisCluster

from service.bus import keys
from service.errors import BusError
from service.messages import mask_credentials
from service.settings import RedisSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a lost or restarting Redis raises; BusyLoadingError comes while a restarted server loads its data. On a
# cluster also: a shard without its master (CLUSTERDOWN), a slot being moved (TRYAGAIN), or no node answering for a
# slot (SlotNotCoveredError, RedisClusterException) until the node is back.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)


def connect(settings: RedisSettings, socket_timeout: float | None = None) -> redis.Redis:
    """A client (connection pool) for binary payloads: responses are bytes, callers decode. Sets this process's
    partition count (keys.py) from the settings. `socket_timeout` None: blocking reads (XREADGROUP BLOCK) bound
    themselves."""
    keys.set_partitions(settings.partitions)
    url = settings.url.get_secret_value()
    options = {"socket_connect_timeout": settings.connect_timeout_s, "socket_timeout": socket_timeout}
    if not settings.cluster:
        return redis.Redis.from_url(url, health_check_interval=30, decode_responses=False, **options)
    return cast(redis.Redis, _connect_cluster(url, settings.startup_wait_s, options))


def _connect_cluster(url: str, wait_s: float, options: dict[str, Any]) -> RedisCluster:
    deadline = time.monotonic() + wait_s
    backoff = Backoff(initial_s=0.1, max_s=2.0)
    where = mask_credentials(url)
    while True:
        try:
            return RedisCluster.from_url(url, decode_responses=False, **options)
        except (redis.RedisError, redis.exceptions.RedisClusterException) as e:
            if "cluster mode is not enabled" in str(e).lower() or "cluster support disabled" in str(e).lower():
                msg = (
                    f"Redis at {where} is a standalone server, not a Redis Cluster node, but VIGIL_REDIS__CLUSTER is "
                    "true: set VIGIL_REDIS__CLUSTER=false, or VIGIL_REDIS__URL to a cluster node"
                )
                raise BusError(msg) from e
            left = deadline - time.monotonic()
            if left <= 0:
                msg = f"Redis Cluster at {where} did not answer within {wait_s:g} s ({e}); are its nodes up?"
                raise BusError(msg) from e
            log.warning("waiting for Redis Cluster at %s (%.1f s left): %s", where, left, e)
            backoff.sleep(limit_s=left)


def is_cluster(client: object) -> bool:
    """Whether `client` (or the client behind a pipeline) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def describe(client: redis.Redis) -> str:
    """The server address for logs, without any password."""
    if is_cluster(client):
        node = cast(RedisCluster, client).get_default_node()  # type: ignore[no-untyped-call]
        return mask_credentials(f"redis cluster via {node.host}:{node.port}")
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
            check_server(client)
            return


def check_server(client: redis.Redis) -> None:
    """BusError when the server is not what the settings say: a cluster node for a standalone client (its scripts
    would fail later, one command at a time, with MOVED), or a partition count other than the one the data was
    written with (a camera's keys would be looked for in the wrong partition). The first process to start records
    the count; its setting is `keys.partitions()` (see `connect`)."""
    if not is_cluster(client):
        try:
            info = client.info("cluster")
        except redis.ResponseError:  # INFO denied by an ACL: nothing to tell, the commands themselves will say
            info = {}
        if info.get("cluster_enabled"):
            msg = (
                f"Redis at {describe(client)} is a Redis Cluster node (cluster_enabled:1), but VIGIL_REDIS__CLUSTER "
                "is false: set VIGIL_REDIS__CLUSTER=true (and VIGIL_REDIS__PARTITIONS; docs/OPERATIONS.md, Scaling), "
                "or VIGIL_REDIS__URL to a standalone Redis"
            )
            raise BusError(msg)
    client.set(keys.PARTITIONS_KEY, keys.partitions(), nx=True)
    stored = int(cast(bytes, client.get(keys.PARTITIONS_KEY)))
    if stored != keys.partitions():
        msg = (
            f"the vigil data in Redis at {describe(client)} is spread over {stored} partitions, but "
            f"VIGIL_REDIS__PARTITIONS is {keys.partitions()}: set VIGIL_REDIS__PARTITIONS={stored} (the count is "
            "fixed once data exists; docs/OPERATIONS.md, Scaling)"
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

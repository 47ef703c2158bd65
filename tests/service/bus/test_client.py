"""Redis connection helpers: bounded startup wait with a clear error, backoff growth, retry."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.bus.client import Backoff, connect, describe, retry, wait_for_redis
from service.errors import BusError
from service.settings import RedisSettings, Settings
from tests.conftest import free_port
from tests.redis_cluster import cluster_port


def test_connect_and_wait(redis_url):
    client = connect(RedisSettings(url=redis_url))
    wait_for_redis(client, timeout_s=1)
    assert client.ping()
    client.close()


def test_wait_for_missing_redis_is_bounded_and_clear(caplog):
    port = free_port()  # nothing listens here
    client = connect(RedisSettings(url=f"redis://:s3cret@127.0.0.1:{port}/0", connect_timeout_s=0.2))
    started = time.monotonic()
    with pytest.raises(BusError, match=f"Redis at redis://127.0.0.1:{port}/0 did not answer within 1 s"):
        wait_for_redis(client, timeout_s=1.0)
    assert time.monotonic() - started < 3
    assert "waiting for Redis" in caplog.text
    assert "s3cret" not in caplog.text
    assert "s3cret" not in describe(client)


def test_backoff_grows_to_its_cap_with_jitter():
    backoff = Backoff(initial_s=0.1, max_s=1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0.5 <= d <= 1.0 for d in delays[5:])
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_retry_gives_up_with_the_last_error():
    calls = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("connection refused")
        return 42

    assert retry(flaky, attempts=3, backoff=Backoff(0.001, 0.002)) == 42
    calls.clear()
    with pytest.raises(BusError, match="failed 2 times, last error: connection refused"):
        retry(flaky, attempts=2, backoff=Backoff(0.001, 0.002))


def test_a_cluster_node_is_refused_at_start_with_the_setting_to_change(tmp_path):
    exe = shutil.which("redis-server")
    assert exe is not None
    port = cluster_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--cluster-enabled",
         "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"), "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = connect(RedisSettings(url=f"redis://127.0.0.1:{port}/0"))
        with pytest.raises(BusError, match=r"is a Redis Cluster node .* set VIGIL_REDIS__CLUSTER=true"):
            wait_for_redis(client, timeout_s=10)
        client.close()
        app = create_app(Settings(redis=RedisSettings(url=f"redis://127.0.0.1:{port}/0")))
        with pytest.raises(BusError, match="is a Redis Cluster node"), TestClient(app):
            pass
    finally:
        proc.terminate()
        proc.wait(10)

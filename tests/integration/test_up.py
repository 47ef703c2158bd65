"""`vigil up` as a user runs it: starts its own redis-server when none answers, serves, and on Ctrl-C (SIGINT)
stops every child (api, worker, ingest, redis) and exits 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.conftest import stack_env, wait_http


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an orphan that exited is a zombie until init reaps it: gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.integration
def test_vigil_up_starts_local_redis_and_stops_everything_on_sigint(model_root: Path, tmp_path: Path) -> None:
    port = free_port()
    env = stack_env(f"redis://127.0.0.1:{free_port()}/0", model_root)  # nothing listens there
    cmd = [sys.executable, "-m", "cli.main", "up", "--port", str(port), "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)  # its Redis keeps data here
    try:
        wait_http(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2),
            lambda r: r.status_code == 200,
            90,
            "readyz",
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "started a local redis-server" in err
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", err)]
    assert len(set(pids)) >= 4, err  # redis, ingest, worker, api
    order = re.findall(r"(\w[\w-]*) \(pid \d+\) exited", err)
    assert order == ["api", "worker", "ingest", "redis-server"], err  # consumers before producers, Redis last
    time.sleep(0.2)
    assert not [p for p in pids if _alive(p)]
    assert any((tmp_path / "vigil-redis").iterdir())  # the local Redis kept its append-only file in the working dir


@pytest.mark.integration
def test_vigil_up_killed_with_sigkill_leaves_no_child_behind(model_root: Path, tmp_path: Path) -> None:
    """Its children (api, worker, ingest and the local redis-server) get SIGTERM from the kernel when it dies; the
    ingester and the redis-server used to run on as orphans."""
    port = free_port()
    env = stack_env(f"redis://127.0.0.1:{free_port()}/0", model_root)  # nothing listens there: a local Redis
    log_path = tmp_path / "up.log"
    cmd = [sys.executable, "-m", "cli.main", "up", "--port", str(port), "--metrics-port", "0"]
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stderr=log_file, cwd=tmp_path)
    try:
        wait_http(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2),
            lambda r: r.status_code == 200,
            90,
            "readyz",
        )
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", log_path.read_text())]
        assert len(set(pids)) == 4, log_path.read_text()  # redis, ingest, worker, api
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 30
        while [p for p in pids if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in pids if _alive(p)], f"orphans: {[p for p in pids if _alive(p)]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in re.findall(r"\(pid (\d+)\)", log_path.read_text()):
            if _alive(int(pid)):
                os.kill(int(pid), signal.SIGKILL)

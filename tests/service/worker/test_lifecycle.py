"""Process plumbing the worker runs on: the lifecycle base (signals, stop, failures) and credential-masking logs."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading

import pytest
import redis

from service.bus import keys
from service.errors import BusError
from service.lifecycle import ServiceProcess
from service.logging import CredentialFilter, setup_logging
from tests.service.worker.helpers import wait_for


class _Recorder(ServiceProcess):
    component = "recorder"

    def __init__(self, fail_in: str | None = None, **kw) -> None:
        super().__init__(**kw)
        self.calls: list[str] = []
        self.fail_in = fail_in

    def setup(self) -> None:
        self.calls.append("setup")
        if self.fail_in == "setup":
            raise BusError("Redis at redis://127.0.0.1:1/0 did not answer")
        if self.fail_in == "setup-bug":
            raise RuntimeError("a bug")

    def run_loop(self) -> None:
        self.calls.append("loop")
        if self.fail_in == "loop":
            raise RuntimeError("boom")
        while not self.should_stop():
            self.stop_event.wait(0.01)

    def teardown(self) -> None:
        self.calls.append("teardown")


def test_signal_stops_the_loop_and_is_recorded():
    proc = _Recorder()
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM))
    old = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        timer.start()
        assert proc.run() == 0
    finally:
        signal.signal(signal.SIGTERM, old[0])
        signal.signal(signal.SIGINT, old[1])
    assert proc.calls == ["setup", "loop", "teardown"]
    assert proc.received_signal == signal.SIGTERM


@pytest.mark.parametrize(("stage", "traceback"), [("setup", False), ("setup-bug", True), ("loop", True)])
def test_failure_exits_1_and_still_tears_down(stage, traceback, caplog):
    proc = _Recorder(fail_in=stage)
    assert proc.run(handle_signals=False) == 1
    assert proc.calls[-1] == "teardown"
    # Expected failures (domain errors) are one clear line; bugs keep their traceback.
    assert ("Traceback" in caplog.text) is traceback


def test_exit_with_parent_has_the_kernel_stop_a_child_whose_parent_was_killed(tmp_path):
    """The one mechanism for every child: PR_SET_PDEATHSIG, a SIGTERM the child's handler turns into a clean stop."""
    pid_file, ready = tmp_path / "pid", tmp_path / "ready"
    child = "from service.lifecycle import exit_with_parent; import time; exit_with_parent(); "
    child += f"open('{ready}', 'w'); time.sleep(60)"
    shell = subprocess.Popen(["sh", "-c", f'{sys.executable} -c "{child}" & echo $! > {pid_file}; wait'])
    wait_for(lambda: ready.exists() and pid_file.read_text().strip() != "", 10, "the child to start")
    child_pid = int(pid_file.read_text())
    assert _alive(child_pid)
    shell.kill()
    shell.wait(10)
    wait_for(lambda: not _alive(child_pid), 10, "the orphaned child to get SIGTERM")


@pytest.mark.slow
def test_worker_exits_when_its_parent_is_killed(tmp_path, redis_url):
    """A real `vigil worker --exit-with-parent` under a shell that gets SIGKILLed stops on its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(VIGIL_REDIS__URL=redis_url, VIGIL_STORE__ROOT=str(tmp_path), VIGIL_WORKER__METRICS_PORT="0")
    pid_file = tmp_path / "pid"
    script = f"{sys.executable} -m cli.main worker --exit-with-parent & echo $! > {pid_file}; wait"
    shell = subprocess.Popen(["sh", "-c", script], env=env)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 10, "the worker to start")
    worker_pid = int(pid_file.read_text())
    wait_for(lambda: redis.Redis.from_url(redis_url).keys(keys.heartbeat_pattern("worker")) != [], 60, "a heartbeat")
    shell.kill()
    shell.wait(10)
    wait_for(lambda: not _alive(worker_pid), 30, "the orphaned worker to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def log_stream():
    """A handler on the root logger writing to a buffer; root handlers are restored afterwards."""
    root = logging.getLogger()
    saved = [(h, list(h.filters), h.formatter) for h in root.handlers]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    for h, filters, formatter in saved:
        h.filters[:] = filters
        h.setFormatter(formatter)


def test_credentials_are_masked_in_every_record(log_stream):
    setup_logging("test")
    setup_logging("test")  # idempotent: one filter per handler
    log = logging.getLogger("some.library")
    log.warning("cannot open %s", "rtsp://admin:hunter2@10.0.0.5/live")
    try:
        raise ConnectionError("refused: http://u:topsecret@h/x")
    except ConnectionError:
        log.exception("failed")
    out = log_stream.getvalue()
    assert "WARNING test some.library: cannot open rtsp://admin:***@10.0.0.5/live" in out
    assert "ConnectionError: refused: http://u:***@h/x" in out
    assert "hunter2" not in out
    assert "topsecret" not in out
    handler = logging.getLogger().handlers[-1]
    assert sum(isinstance(f, CredentialFilter) for f in handler.filters) == 1

"""`vigil up`: api + ingest + worker as child processes on one machine, plus a local redis-server if needed, and the
MQTT bridge (`vigil mqtt`) when VIGIL_MQTT__ENABLED is true.

Shutdown follows STYLE.md rule 13: consumers stop before producers (api, worker, then ingest, then the Redis
this command started), each escalating SIGINT + wait -> terminate -> kill. Every child, Redis included, gets
SIGTERM from the kernel if `vigil up` dies without stopping them (SIGKILL): `service.lifecycle.exit_with_parent`.
The local Redis keeps an append-only file in `vigil up`'s working directory, so cameras survive its restart.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from service.lifecycle import exit_with

log = logging.getLogger("vigil.up")

# Start order: producers first so that nothing waits on a missing producer; stop order is the reverse.
COMPONENTS = ("ingest", "worker", "mqtt", "api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_reachable(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def stop_process(proc: subprocess.Popen[bytes], name: str, grace_s: float) -> int:
    """SIGINT and wait (a clean stop), then SIGTERM, then SIGKILL; returns the exit code."""
    if proc.poll() is not None:
        return int(proc.returncode)
    steps = ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s / 2), (signal.SIGKILL, 5.0))
    for sig, wait_s in steps:
        proc.send_signal(sig)
        try:
            code = proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) still running %.0f s after %s; escalating", name, proc.pid, wait_s, sig.name)
            continue
        log.info("%s (pid %d) exited with %d", name, proc.pid, code)
        return int(code)
    return -9


@dataclass
class Stack:
    """The processes of one machine. Use as a context manager, or call start() and stop()."""

    redis_url: str
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    workers: int = 1
    ingesters: int = 1
    start_redis: bool = True  # start a local redis-server when none answers at redis_url
    mqtt: bool = False  # also run the MQTT bridge (`vigil mqtt`; its settings come from the environment)
    # /metrics ports of the ingest and worker children: the first of consecutive ports (N, N+1, ...), "auto" for
    # a free port each (tests: consecutive ports may be taken), or None for none. Chosen ports: `child_ports`.
    metrics_port: int | Literal["auto"] | None = None
    log_path: Path | None = None  # children's stdout/stderr go here (appended); None = inherit ours
    # Where a Redis this stack starts keeps its append-only file (`<dir>/vigil-redis/`); None = no persistence.
    redis_dir: Path | None = None
    grace_s: float = 10.0
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    redis_proc: subprocess.Popen[bytes] | None = None
    child_ports: dict[str, int] = field(default_factory=dict)  # child name -> its /metrics port

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def start(self) -> None:
        self._ensure_redis()
        self.env["VIGIL_REDIS__URL"] = self.redis_url
        counts = {"ingest": self.ingesters, "worker": self.workers, "mqtt": int(self.mqtt), "api": 1}
        # Ingest and worker share one default metrics port (9101); give each child its own or none.
        ports = iter(range(self.metrics_port, 65536)) if isinstance(self.metrics_port, int) else None
        try:
            for component in COMPONENTS:
                for i in range(counts[component]):
                    name = component if counts[component] == 1 else f"{component}-{i}"
                    port = free_port() if self.metrics_port == "auto" else next(ports) if ports else 0
                    if component != "api" and port:
                        self.child_ports[name] = port
                    self._spawn(name, component, port)
        except OSError:
            self.stop()
            raise

    def _spawn(self, name: str, component: str, metrics_port: int) -> None:
        argv = [sys.executable, "-m", "cli.main", component]
        if component == "api":
            argv += ["--host", self.api_host, "--port", str(self.api_port)]
        else:
            argv += ["--metrics-port", str(metrics_port)]
        out = self.log_path.open("ab") if self.log_path else None
        try:  # own session: a terminal's Ctrl-C reaches only `vigil up`, which then stops the children in order
            proc = subprocess.Popen(
                argv, env=self.env, start_new_session=True, stdout=out, stderr=out, preexec_fn=exit_with(os.getpid())
            )
        finally:
            if out is not None:
                out.close()  # the child holds its own copy of the descriptor
        self.procs.append((name, proc))
        log.info("started %s (pid %d)", name, proc.pid)

    def _ensure_redis(self) -> None:
        if redis_reachable(self.redis_url):
            return
        exe = shutil.which("redis-server")
        if not self.start_redis or exe is None:
            hint = "install redis-server (Debian: apt-get install redis-server)" if exe is None else "start it"
            msg = f"no Redis answers at the configured URL (VIGIL_REDIS__URL); {hint} or point VIGIL_REDIS__URL at one"
            raise RuntimeError(msg)
        port = free_port()
        argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        if self.redis_dir is None:
            argv += ["--appendonly", "no"]
        else:  # cameras, jobs and pending windows survive a restart of this Redis or of `vigil up`
            argv += ["--dir", str(self.redis_dir.resolve()), "--appendonly", "yes", "--appenddirname", "vigil-redis"]
        self.redis_proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, start_new_session=True, preexec_fn=exit_with(os.getpid())
        )
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not redis_reachable(self.redis_url, 0.2):
            if self.redis_proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"redis-server on port {port} did not start within 10 s"
                raise RuntimeError(msg)
            time.sleep(0.05)
        kept = f"its data in {self.redis_dir.resolve() / 'vigil-redis'}" if self.redis_dir else "its data not persisted"
        log.info("started a local redis-server at %s (pid %d), %s", self.redis_url, self.redis_proc.pid, kept)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until /readyz says ready (Redis answers, a worker heartbeat is fresh); raise if a child exits.

        /readyz rather than /healthz: the worker imports torch and loads its model for seconds after the API is up,
        and a camera added before that would see its first windows wait.
        """
        import httpx

        deadline = time.monotonic() + timeout_s
        reason = "no answer"
        while time.monotonic() < deadline:
            dead = self.exited()
            if dead:
                msg = f"{dead[0][0]} exited with {dead[0][1]} during start-up"
                raise RuntimeError(msg)
            try:
                r = httpx.get(f"{self.api_url}/readyz", timeout=2.0)
                if r.status_code == 200:
                    return
                reason = r.json().get("reason", r.text)
            except (httpx.TransportError, ValueError) as e:
                reason = str(e) or type(e).__name__
            time.sleep(0.2)
        msg = f"vigil was not ready within {timeout_s:.0f} s ({self.api_url}/readyz: {reason})"
        raise RuntimeError(msg)

    def exited(self) -> list[tuple[str, int]]:
        return [(name, int(p.returncode)) for name, p in self.procs if p.poll() is not None]

    def stop(self) -> None:
        for name, proc in reversed(self.procs):  # consumers first: api, workers, then ingesters
            stop_process(proc, name, self.grace_s)
        self.procs.clear()
        if self.redis_proc is not None:
            stop_process(self.redis_proc, "redis-server", 5.0)
            self.redis_proc = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--ingesters", type=int, default=1, help="ingester processes (default 1)")
    parser.add_argument("--port", type=int, default=None, help="API port (default VIGIL_API__PORT, 8000)")
    parser.add_argument("--no-local-redis", action="store_true", help="fail instead of starting a redis-server")
    parser.add_argument(
        "--metrics-port", type=int, default=9101, help="first /metrics port of ingest and worker children (0 = off)"
    )


_stop_signal: list[int] = []


def _record(signum: int, _: FrameType | None) -> None:
    _stop_signal.append(signum)  # rule 14: the handler records, the loop acts


def run(args: argparse.Namespace) -> int:
    from service.settings import get_settings

    settings = get_settings()
    stack = Stack(
        redis_url=settings.redis.url.get_secret_value(),
        api_host=settings.api.host,
        api_port=args.port or settings.api.port,
        workers=args.workers,
        ingesters=args.ingesters,
        start_redis=not args.no_local_redis,
        mqtt=settings.mqtt.enabled,
        metrics_port=args.metrics_port or None,
        redis_dir=Path.cwd(),
    )
    signal.signal(signal.SIGINT, _record)
    signal.signal(signal.SIGTERM, _record)
    with stack:
        try:
            stack.wait_ready(120)
        except RuntimeError as e:
            log.error("%s; stopping", e)
            return 1
        log.info("vigil is up: API at %s (docs at %s/docs); Ctrl-C stops", stack.api_url, stack.api_url)
        while not _stop_signal:
            dead = stack.exited()
            if dead:
                log.error("%s exited with %d; stopping the others", *dead[0])
                return 1
            time.sleep(0.5)
        log.info("received %s; stopping", signal.Signals(_stop_signal[0]).name)
    return 0

"""`vigil health [api|worker|ingest]`: container healthcheck, exit 0 when healthy and 1 otherwise.

The API is healthy when its /healthz answers; a worker or ingester when a live heartbeat key from this
host is in Redis (ids start with the hostname, and each container has its own hostname).
"""

from __future__ import annotations

import argparse
import socket


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("component", nargs="?", default="api", choices=["api", "worker", "ingest"])
    parser.add_argument("--any-host", action="store_true", help="accept a heartbeat from any host")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")


def _check_api(port: int, timeout: float) -> tuple[bool, str]:
    import httpx

    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    except httpx.HTTPError as e:
        return False, f"api on port {port} did not answer /healthz: {e}"
    return response.status_code == 200, f"/healthz answered {response.status_code}"


def _check_heartbeat(component: str, any_host: bool, timeout: float) -> tuple[bool, str]:
    import redis

    from service.bus import topics
    from service.bus.client import connect
    from service.settings import get_settings

    client = connect(get_settings().redis, socket_timeout=timeout)
    try:
        beats = topics.read_heartbeats(client, component)
    except redis.RedisError as e:
        return False, f"cannot read heartbeats from Redis: {e}"
    host = socket.gethostname()
    mine = [b for b in beats if any_host or b.host == host]
    if not mine:
        return False, f"no live {component} heartbeat from host {host!r} ({len(beats)} from other hosts)"
    return True, f"{len(mine)} live {component} heartbeat(s)"


def run(args: argparse.Namespace) -> int:
    from service.settings import get_settings

    if args.component == "api":
        ok, why = _check_api(get_settings().api.port, args.timeout)
    else:
        ok, why = _check_heartbeat(args.component, args.any_host, args.timeout)
    print(("healthy: " if ok else "unhealthy: ") + why)
    return 0 if ok else 1

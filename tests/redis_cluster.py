"""A real local Redis Cluster for tests and `bench/redis_cost.py --cluster`: three masters on free loopback ports,
started and joined by `redis-cli --cluster create`, each node restartable (same port, same nodes.conf, append-only
file) to test a master coming back. No replicas: a restarted master must come back by itself, which is the case vigil
has to survive. Every write is synced (appendfsync always), so a killed master loses nothing, as with the single-node
fault tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from cli.up import free_port


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, which a cluster node also binds) exists and is free too:
    ephemeral ports go up to 60999, and a node on a port above 55535 cannot start."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class NodeExited(RuntimeError):
    """A node's redis-server exited while starting (e.g. another process bound its port after it was chosen)."""


class LocalCluster:
    """Three cluster-enabled redis-servers under `root`, joined into one cluster (16384 slots over 3 masters)."""

    def __init__(self, root: Path, masters: int = 3, persist: bool = True) -> None:
        """`persist` False: no append-only file (a benchmark's Redis CPU is then the commands', not fsync's)."""
        exe = shutil.which("redis-server")
        assert exe is not None, "redis-server is not installed (Debian: apt-get install redis-server)"
        self.exe, self.root, self.persist = exe, root, persist
        self.ports = [cluster_port() for _ in range(masters)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> LocalCluster:
        for i in range(len(self.ports)):
            for attempt in range(5):
                try:
                    self.start_node(self.ports[i])
                    break
                except NodeExited:
                    # A free port is only chosen, not held, until the node binds it (and its bus port + 10000):
                    # in a busy test run another socket can take either first. A new pair, a few times.
                    if attempt == 4:
                        raise
                    self.ports[i] = cluster_port()
        addresses = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        self.wait_ok()
        return self

    def start_node(self, port: int) -> None:
        node_dir = self.root / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        with (node_dir / "redis.log").open("ab") as log:  # redis-server logs to stdout: why a start failed
            self.procs[port] = subprocess.Popen(
                [self.exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000", "--dir", str(node_dir),
                 "--save", "", *(["--appendonly", "yes", "--appendfsync", "always"] if self.persist else [])],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.procs[port].poll() is not None:
                    log = (node_dir / "redis.log").read_text(errors="replace")[-500:]
                    msg = f"redis-server on port {port} exited with {self.procs[port].returncode}: {log}"
                    raise NodeExited(msg) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def wait_ok(self, timeout_s: float = 30) -> None:
        """Until every node says cluster_state:ok and sees every slot."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = []
            for port in self.ports:
                try:
                    info = redis.Redis(port=port).cluster("info")
                    states.append(info.get("cluster_state") == "ok" and int(info["cluster_slots_ok"]) == 16384)
                except redis.RedisError:
                    states.append(False)
            if all(states):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not become ok within {timeout_s} s")
            time.sleep(0.1)

    def master_of(self, key: str) -> int:
        """The port of the master holding `key`'s slot."""
        client = RedisCluster.from_url(self.url)
        try:
            return int(client.get_node_from_key(key).port)
        finally:
            client.close()

    def restart(self, port: int, down_s: float = 1.0) -> None:
        """Kill one master (SIGKILL, nothing flushed by a shutdown) and start it again on the same port and files."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(10)
        time.sleep(down_s)
        self.start_node(port)
        self.wait_ok()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(10)

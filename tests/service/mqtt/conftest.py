"""A real mosquitto broker started by the test on a free loopback port (never the system's 1883), a subscriber that
collects what arrives, and the bridge running in a thread."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from service.mqtt.bridge import MqttBridge
from service.settings import Settings
from tests.conftest import free_port


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


class Broker:
    """mosquitto with persistence in `folder` (so a restart keeps sessions and queued QoS 1 messages)."""

    def __init__(self, folder: Path, port: int, extra: str = "") -> None:
        self.folder, self.port, self.extra = folder, port, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "mosquitto.log"

    def start(self) -> Broker:
        exe = mosquitto_path()
        if exe is None:
            pytest.fail("mosquitto is not installed (Debian: apt-get install mosquitto; make test installs it)")
        conf = self.folder / "mosquitto.conf"
        listener = self.extra or "allow_anonymous true\n"
        # Started as root, mosquitto drops to the user `mosquitto`, which cannot enter pytest's private tmp folders:
        # stay who we are (its persistence file and log live there).
        user = f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n{listener}persistence true\npersistence_location {self.folder}/\n"
            f"log_dest file {self.log}\n{user}"
        )
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text() if self.log.exists() else ""
                    pytest.fail(f"mosquitto did not start on port {self.port}: {log[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file (sessions, queued messages)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    brokers: list[Broker] = []

    def make(port: int | None = None, extra: str = "", start: bool = True) -> Broker:
        folder = tmp_path / f"broker{len(brokers)}"
        folder.mkdir()
        broker = Broker(folder, port or free_port(), extra)
        brokers.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in brokers:
        broker.stop()


class Subscriber:
    """A paho client that records every message; `persistent` = a session the broker keeps across its restarts."""

    def __init__(self, port: int, topics: list[str], client_id: str = "", persistent: bool = False) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_message = lambda _c, _u, msg: self._add(msg)
        self.client.on_connect = lambda c, _u, _f, _r, _p: [c.subscribe(t, qos=1) for t in topics]
        self.client.connect_async("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _add(self, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.messages if m.topic == topic]

    def wait(self, what: str, ok: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (result := ok()):
            if time.monotonic() > deadline:
                with self.lock:
                    seen = sorted({m.topic for m in self.messages})
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; topics seen: {seen}")
            time.sleep(0.05)
        return result

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribers() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, topics: list[str] | None = None, **kwargs: Any) -> Subscriber:
        sub = Subscriber(port, topics or ["#"], **kwargs)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def bridge_settings(redis_url: str, port: int, **mqtt: Any) -> Settings:
    base = {"enabled": True, "port": port, "metrics_port": 0, "poll_interval_s": 0.2, "score_interval_s": 0.2}
    return Settings(redis={"url": redis_url, "startup_wait_s": 5}, mqtt={**base, **mqtt})


@pytest.fixture
def run_bridge() -> Iterator[Callable[[Settings], MqttBridge]]:
    """Start MqttBridge(settings) in a thread (as `vigil mqtt` runs it); stopped and joined at teardown."""
    running: list[tuple[MqttBridge, threading.Thread]] = []

    def start(settings: Settings) -> MqttBridge:
        bridge = MqttBridge(settings, serve_metrics=False)
        thread = threading.Thread(target=bridge.run, kwargs={"handle_signals": False}, daemon=True)
        thread.start()
        running.append((bridge, thread))
        return bridge

    yield start
    for bridge, thread in running:
        bridge.stop()
        thread.join(15)
        assert not thread.is_alive(), "the bridge did not stop"

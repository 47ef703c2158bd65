"""`vigil up` with the MQTT bridge and a broker that is not there: the cameras score all the same, the bridge's metrics
show it disconnected and retrying with backoff; once a real mosquitto answers, Home Assistant discovery and the
camera's score arrive."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.up import Stack
from tests.conftest import free_port
from tests.integration.conftest import stack_env, wait_http
from tests.service.mqtt.conftest import Broker, Subscriber, mosquitto_path
from tests.service.worker.models_util import MODEL

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (make test installs it)"),
]


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_scoring_goes_on_without_the_broker_and_mqtt_catches_up(
    synthetic_video: tuple[Path, np.ndarray], model_root: Path, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()  # no broker here yet
    env = stack_env(
        redis_url, model_root, VIGIL_FOOTAGE_ROOT=str(synthetic_video[0].parent), VIGIL_MQTT__ENABLED="true",
        VIGIL_MQTT__PORT=str(port), VIGIL_MQTT__RECONNECT_MAX_S="2", VIGIL_MQTT__POLL_INTERVAL_S="0.3",
    )  # fmt: skip
    stack = Stack(redis_url=redis_url, api_port=free_port(), start_redis=False, env=env, metrics_port="auto", mqtt=True)
    broker = Broker(tmp_path, port)
    try:
        stack.start()
        stack.wait_ready(90)
        camera = {"id": "lane", "url": str(synthetic_video[0]), "model": MODEL, "kind": "file", "realtime": False}
        assert httpx.post(f"{stack.api_url}/cameras", json=camera, timeout=10).status_code == 201
        latest = wait_http(
            lambda: httpx.get(f"{stack.api_url}/cameras/lane/scores/latest", timeout=10),
            lambda r: r.status_code == 200 and r.json()["frame"] >= 50,
            60,
            "the camera's scores while the broker is unreachable",
        ).json()
        metrics_url = f"http://127.0.0.1:{stack.child_ports['mqtt']}/metrics"
        # the bridge keeps retrying with backoff (at most reconnect_max_s apart); on a loaded machine the camera may
        # have scored its frames before the second attempt, so wait for it rather than read once
        text = wait_http(
            lambda: httpx.get(metrics_url, timeout=5),
            lambda r: _metric(r.text, 'vigil_mqtt_connection_attempts_total{result="failed"}') >= 2,
            30,
            "a second failed connection attempt",
        ).text
        assert _metric(text, "vigil_mqtt_connected") == 0.0
        broker.start()
        sub = Subscriber(port, ["homeassistant/#", "vigil/#"])
        try:
            sub.wait("discovery of the camera", lambda: sub.on("homeassistant/sensor/vigil_lane/score/config"), 20)
            score = json.loads(sub.wait("its score", lambda: sub.on("vigil/lane/score"), 10)[-1])
            assert score["frame"] == latest["frame"] or score["frame"] > 50
        finally:
            sub.close()
        deadline = time.monotonic() + 5
        while _metric(httpx.get(metrics_url, timeout=5).text, "vigil_mqtt_connected") != 1.0:
            assert time.monotonic() < deadline, "the bridge's metrics never showed it connected"
            time.sleep(0.2)
        assert not stack.exited()
    finally:
        stack.stop()
        broker.stop()

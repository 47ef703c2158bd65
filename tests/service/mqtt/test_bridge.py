"""The MQTT bridge against a real mosquitto and a real Redis: Home Assistant discovery, events and retained state
reach subscribers (a late one too), an acknowledgement made through the API's code path reaches MQTT, a muted alert
does not, a broker restart loses no QoS 1 event, an unreachable broker is retried with backoff and shown in metrics
while events wait in Redis, and TLS with a password works without the password showing in any log."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import ValidationError

from service.alerts.annotate import acknowledge
from service.alerts.schema import AlertAck, AlertNotification
from service.bus import keys, topics
from service.messages import Alert, AlertEvent, AlertTrack, CameraConfig, CameraStatus, ScoreMsg, ScoringState
from service.settings import Settings
from tests.service.mqtt.conftest import Broker, Subscriber, bridge_settings, mosquitto_path

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="needs mosquitto (make test installs it)")


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _alert(i: int, camera: str = "gate", state: str = "closed", decision: str = "sent") -> Alert:
    return Alert(
        id=f"{camera}-{i}-abc", camera=camera, model="ffp@v1", state=state, start_frame=10 * i, start_ts=1e9 + i,
        end_frame=None if state == "open" else 10 * i + 5, end_ts=None if state == "open" else 1e9 + i + 0.2,
        peak_score=0.9, peak_frame=10 * i, notification=AlertNotification(decision=decision),
    )  # fmt: skip


def _event(r: redis.Redis, alert: Alert, kind: str = "closed") -> None:
    topics.save_alert_event(r, AlertEvent(kind=kind, alert=alert), retention_s=3600)


def _seed_camera(r: redis.Redis, camera: str, open_alert: Alert | None) -> None:
    topics.put_camera(r, CameraConfig(id=camera, url="rtsp://user:pw@cam.example/1", model="ffp@v1"))
    topics.set_camera_status(r, CameraStatus(camera=camera, state="streaming", fps=25.0))
    topics.save_scoring_state(r, camera, ScoringState(track=AlertTrack(phase="active", alert=open_alert)))
    now = time.time()
    score = ScoreMsg(camera=camera, frame=77, seq=3, score=0.8123, signals=[1.0], model="ffp@v1", capture_ts=now,
                     published_ts=now)  # fmt: skip
    pipe = r.pipeline()
    topics.add_scores(pipe, [score])
    pipe.execute()


def _ids(sub: Subscriber, topic: str) -> list[str]:
    return [json.loads(p)["alert"]["id"] for p in sub.on(topic)]


def test_discovery_events_and_retained_state_reach_every_subscriber(
    make_broker: Callable[..., Broker], subscribers: Callable[..., Subscriber], run_bridge, rclient: redis.Redis,
    redis_url: str,
) -> None:  # fmt: skip
    broker = make_broker()
    open_alert = _alert(1, state="open").model_copy(update={"incident": "inc-gate-1-abc"})
    _seed_camera(rclient, "gate", open_alert)
    _event(rclient, open_alert, "opened")  # before the bridge starts: not replayed (it starts at the stream's end)
    sub = subscribers(broker.port)
    sub.wait("the subscriber to connect", sub.client.is_connected)
    run_bridge(bridge_settings(redis_url, broker.port))
    config = sub.wait("discovery", lambda: sub.on("homeassistant/binary_sensor/vigil_gate/anomaly/config"))
    anomaly = json.loads(config[-1])
    assert (anomaly["state_topic"], anomaly["unique_id"], anomaly["availability_topic"]) == (
        "vigil/gate/anomaly", "vigil_gate_anomaly", "vigil/status",
    )  # fmt: skip
    assert anomaly["device"]["identifiers"] == ["vigil_gate"]
    score_topic = "homeassistant/sensor/vigil_gate/score/config"
    score_cfg = json.loads(sub.wait("score discovery", lambda: sub.on(score_topic))[-1])
    assert (score_cfg["state_topic"], score_cfg["value_template"]) == ("vigil/gate/score", "{{ value_json.score }}")
    assert sub.wait("anomaly ON", lambda: sub.on("vigil/gate/anomaly"))[-1] == b"ON"
    state = json.loads(sub.on("vigil/gate/state")[-1])
    assert (state["stream"], state["alert"], state["incident"]) == ("streaming", open_alert.id, "inc-gate-1-abc")
    assert json.loads(sub.wait("the score", lambda: sub.on("vigil/gate/score"))[-1])["score"] == pytest.approx(0.8123)
    assert sub.wait("online", lambda: sub.on("vigil/status"))[-1] == b"online"
    # Events: notified ones go out in order; a muted alert's event does not; an acknowledgement (the API's code path)
    # reaches MQTT like every other client.
    _event(rclient, _alert(2))
    _event(rclient, _alert(3, decision="muted"))
    _event(rclient, _alert(4, decision="summary"))
    acknowledge(rclient, open_alert.id, AlertAck(state="acknowledged", role="operator", note="on it"), 3600)
    sub.wait("four events", lambda: len(sub.on("vigil/gate/alert")) >= 3)
    events = [json.loads(p) for p in sub.on("vigil/gate/alert")]
    assert [(e["kind"], e["alert"]["id"]) for e in events] == [
        ("closed", "gate-2-abc"), ("closed", "gate-4-abc"), ("acknowledged", open_alert.id),
    ]  # fmt: skip
    sub.wait("the state's acknowledgement", lambda: json.loads(sub.on("vigil/gate/state")[-1])["ack"] == "acknowledged")
    # The alert closes: the binary sensor goes OFF.
    topics.save_scoring_state(rclient, "gate", ScoringState())
    sub.wait("anomaly OFF", lambda: sub.on("vigil/gate/anomaly")[-1] == b"OFF")
    # A subscriber arriving later gets the retained state and discovery at once, and no events.
    late = subscribers(broker.port)
    late.wait("retained messages", lambda: late.on("vigil/gate/anomaly") and late.on("vigil/gate/score"))
    assert late.on("vigil/gate/anomaly") == [b"OFF"]
    assert late.on("homeassistant/binary_sensor/vigil_gate/anomaly/config")
    assert late.on("vigil/gate/alert") == []
    # A deleted camera's entities and retained state are removed (empty retained messages).
    topics.delete_camera(rclient, "gate")
    sub.wait("discovery removed", lambda: sub.on("homeassistant/binary_sensor/vigil_gate/anomaly/config")[-1] == b"")
    assert _metric("vigil_mqtt_connected") == 1.0


def test_a_broker_restart_loses_no_qos1_event(
    make_broker: Callable[..., Broker], subscribers: Callable[..., Subscriber], run_bridge, rclient: redis.Redis,
    redis_url: str,
) -> None:  # fmt: skip
    broker = make_broker()
    sub = subscribers(broker.port, ["vigil/+/alert"], client_id="restart-test-sub", persistent=True)
    sub.wait("the subscriber to connect", sub.client.is_connected)
    lost_before = _metric("vigil_mqtt_connection_attempts_total", result="lost")
    run_bridge(bridge_settings(redis_url, broker.port))
    time.sleep(0.5)  # the bridge starts at the stream's end: events from now on are its to deliver
    for i in range(30):
        _event(rclient, _alert(i))
    sub.wait("the first 30 events", lambda: len(set(_ids(sub, "vigil/gate/alert"))) >= 30)
    for i in range(30, 40):  # some of these are in flight when the broker goes away
        _event(rclient, _alert(i))
    broker.stop()
    for i in range(40, 70):  # written while the broker is down: they wait in Redis
        _event(rclient, _alert(i))
    time.sleep(1.0)
    assert _metric("vigil_mqtt_connected") == 0.0
    broker.start()  # same port, same persistence: the subscriber's session and its queued messages come back
    for i in range(70, 90):
        _event(rclient, _alert(i))
    want = {f"gate-{i}-abc" for i in range(90)}
    sub.wait("all 90 events after the restart", lambda: set(_ids(sub, "vigil/gate/alert")) >= want, timeout_s=30)
    assert set(_ids(sub, "vigil/gate/alert")) == want  # nothing lost (a few may have come twice, as QoS 1 allows)
    assert _metric("vigil_mqtt_connection_attempts_total", result="lost") == lost_before + 1
    last = topics.read_alert_events(rclient, "0", count=1000)[-1][0]
    sub.wait("the cursor past every event", lambda: rclient.get(keys.mqtt_cursor_key("alerts")) == last.encode())


def test_an_unreachable_broker_is_retried_with_backoff_and_events_wait(
    make_broker: Callable[..., Broker], subscribers: Callable[..., Subscriber], run_bridge, rclient: redis.Redis,
    redis_url: str,
) -> None:  # fmt: skip
    # A subscriber's session is made on the broker, which then goes away: the broker keeps the session (persistence)
    # and queues for it whatever arrives once it is back, so what the bridge sends first is seen.
    broker = make_broker()
    sub = subscribers(broker.port, ["vigil/+/alert"], client_id="unreachable-test-sub", persistent=True)
    sub.wait("the subscription", lambda: sub.client.is_connected())
    time.sleep(0.3)
    broker.stop()
    failed = _metric("vigil_mqtt_connection_attempts_total", result="failed")
    run_bridge(bridge_settings(redis_url, broker.port, reconnect_min_s=1, reconnect_max_s=2))
    time.sleep(0.5)
    for i in range(5):
        _event(rclient, _alert(i))
    time.sleep(3.5)  # attempts at about 0, 1, 3 s (backoff 1 s doubling to 2 s)
    tries = _metric("vigil_mqtt_connection_attempts_total", result="failed") - failed
    assert 2 <= tries <= 5
    assert _metric("vigil_mqtt_connected") == 0.0
    assert _ids(sub, "vigil/gate/alert") == []
    # Nothing was lost while the broker was away: once it answers, the waiting events go out.
    broker.start()
    sub.wait("the waiting events", lambda: len(set(_ids(sub, "vigil/gate/alert"))) == 5, timeout_s=15)
    assert _metric("vigil_mqtt_connected") == 1.0


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 (openssl CLI), as a broker with TLS uses."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vigil test CA",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


def test_tls_with_a_password_and_the_password_never_logged(
    make_broker: Callable[..., Broker], run_bridge, rclient: redis.Redis, redis_url: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    ca, cert, key = _certificates(tmp_path)
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "vigil", "s3cret-pa55"], check=True)
    tls = f"allow_anonymous false\npassword_file {passwords}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    broker = make_broker(extra=tls)
    _seed_camera(rclient, "dock", None)
    caplog.set_level(logging.DEBUG)
    good = {"tls": True, "ca_file": ca, "username": "vigil", "password": "s3cret-pa55"}
    run_bridge(bridge_settings(redis_url, broker.port, **good))
    deadline = time.monotonic() + 10
    while _metric("vigil_mqtt_connected") != 1.0:
        assert time.monotonic() < deadline, caplog.text[-2000:]
        time.sleep(0.05)
    # A wrong password is refused by the broker; the bridge says so and retries, never printing the password.
    wrong = bridge_settings(redis_url, broker.port, **{**good, "password": "wrong-pa55", "client_id": "vigil-2"})
    refused = _metric("vigil_mqtt_connection_attempts_total", result="failed")
    run_bridge(wrong)
    deadline = time.monotonic() + 10
    while _metric("vigil_mqtt_connection_attempts_total", result="failed") == refused:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "s3cret-pa55" not in caplog.text
    assert "wrong-pa55" not in caplog.text
    assert "refused the connection" in caplog.text
    assert "s3cret-pa55" not in repr(Settings(mqtt=good))


@pytest.mark.parametrize(
    ("mqtt", "says"),
    [
        ({"password": "x"}, "without mqtt.username"),
        ({"ca_file": "/etc/ssl/ca.pem"}, "VIGIL_MQTT__TLS=true"),
        ({"tls": True, "cert_file": "/c.pem"}, "go together"),
        ({"reconnect_min_s": 10, "reconnect_max_s": 5}, "must not exceed"),
        ({"topic_prefix": "vigil/#"}, "String should match pattern"),
    ],
)
def test_bad_mqtt_settings_say_what_would_work(mqtt: dict, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(mqtt=mqtt)
    assert says in str(info.value)

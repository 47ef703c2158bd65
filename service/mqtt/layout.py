"""The topic layout and payloads of the MQTT bridge, and the Home Assistant discovery documents. Pure.

<prefix>/status                    online | offline (retained; the broker sets offline when the bridge vanishes)
<prefix>/<camera>/alert            AlertEvent JSON of every notified alert event (QoS 1, not retained)
<prefix>/<camera>/state            camera state JSON: stream state, open alert, incident, acknowledgement (retained)
<prefix>/<camera>/anomaly          ON while a notified alert of the camera is open, else OFF (retained)
<prefix>/<camera>/score            {"score", "frame", "ts", "alertable"} of the latest score (QoS 0, retained)
<discovery>/binary_sensor/vigil_<camera>/anomaly/config   Home Assistant: the "Anomaly" binary sensor (retained)
<discovery>/sensor/vigil_<camera>/score/config            Home Assistant: the "Anomaly score" sensor (retained)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from service.alerts.schema import NOTIFIED
from service.messages import Alert, CameraStatus, ScoreMsg

Kind = Literal["event", "state", "score", "discovery", "status"]


@dataclass(frozen=True)
class Outgoing:
    """One message to publish. QoS 1 for events and states, 0 for scores; retained for states, scores, discovery."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Layout:
    prefix: str = "vigil"
    discovery_prefix: str = "homeassistant"

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    def topic(self, camera: str, name: str) -> str:
        return f"{self.prefix}/{camera}/{name}"

    def status(self, online: bool) -> Outgoing:
        return Outgoing(self.status_topic, b"online" if online else b"offline", 1, True, "status")

    def event(self, camera: str, name: str, payload: bytes) -> Outgoing:
        """An event of a camera (alert events; health events use the same shape under their own name)."""
        return Outgoing(self.topic(camera, name), payload, 1, False, "event")

    def state(self, camera: str, status: CameraStatus | None, open_alert: Alert | None) -> list[Outgoing]:
        """The camera's retained state and the binary sensor's ON/OFF. An open alert counts only if notified: one that
        is muted or flood-suppressed is recorded, not announced."""
        shown = open_alert if open_alert is not None and _notified(open_alert) else None
        state = {
            "camera": camera,
            "stream": status.state if status else "unknown",
            "reason": status.reason if status else "",
            "anomaly": shown is not None,
            "alert": shown.id if shown else None,
            "incident": shown.incident if shown else None,
            "peak_score": shown.peak_score if shown else None,
            "ack": shown.ack.state if shown and shown.ack else None,
        }
        return [
            Outgoing(self.topic(camera, "state"), _json(state), 1, True, "state"),
            Outgoing(self.topic(camera, "anomaly"), b"ON" if shown else b"OFF", 1, True, "state"),
        ]

    def score(self, msg: ScoreMsg) -> Outgoing:
        data = {"score": round(msg.score, 4), "frame": msg.frame, "ts": msg.capture_ts, "alertable": msg.alertable}
        return Outgoing(self.topic(msg.camera, "score"), _json(data), 0, True, "score")

    def discovery_topics(self, camera: str) -> tuple[str, str]:
        node = f"vigil_{camera}"
        return (
            f"{self.discovery_prefix}/binary_sensor/{node}/anomaly/config",
            f"{self.discovery_prefix}/sensor/{node}/score/config",
        )

    def discovery(self, camera: str, model: str) -> list[Outgoing]:
        """Home Assistant MQTT discovery: a device per camera with an "Anomaly" binary sensor and a score sensor."""
        device = {"identifiers": [f"vigil_{camera}"], "name": f"vigil {camera}", "manufacturer": "vigil"}
        device["model"] = model
        common = {"availability_topic": self.status_topic, "device": device, "origin": {"name": "vigil"}}
        anomaly = {
            **common,
            "name": "Anomaly",
            "unique_id": f"vigil_{camera}_anomaly",
            "state_topic": self.topic(camera, "anomaly"),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "json_attributes_topic": self.topic(camera, "state"),
        }
        score = {
            **common,
            "name": "Anomaly score",
            "unique_id": f"vigil_{camera}_score",
            "state_topic": self.topic(camera, "score"),
            "value_template": "{{ value_json.score }}",
            "state_class": "measurement",
            "suggested_display_precision": 3,
        }
        binary_topic, score_topic = self.discovery_topics(camera)
        return [
            Outgoing(binary_topic, _json(anomaly), 1, True, "discovery"),
            Outgoing(score_topic, _json(score), 1, True, "discovery"),
        ]

    def forget(self, camera: str) -> list[Outgoing]:
        """Empty retained messages: Home Assistant removes the camera's entities, the broker its retained state."""
        topics = (*self.discovery_topics(camera), *(self.topic(camera, n) for n in ("state", "anomaly", "score")))
        return [Outgoing(t, b"", 1, True, "discovery") for t in topics]


def _notified(alert: Alert) -> bool:
    return alert.notification is None or alert.notification.decision in NOTIFIED

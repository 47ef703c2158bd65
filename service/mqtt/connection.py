"""One connection to the MQTT broker (paho-mqtt): TLS and credentials from the settings, a last will, reconnection
with exponential backoff in paho's network thread, and the connection metrics. Never logs the password."""

from __future__ import annotations

import logging
import ssl
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from service.metrics import MQTT_CONNECTED, MQTT_CONNECTIONS, MQTT_DROPPED
from service.mqtt.layout import Outgoing
from service.settings import MqttSettings

log = logging.getLogger(__name__)


class BrokerConnection:
    """`start()` connects in the background and keeps reconnecting (backoff from `reconnect_min_s` doubling to
    `reconnect_max_s`); `publish()` hands a message to paho, which sends QoS 1 messages again after a reconnect until
    the broker acknowledges them. `epoch` counts successful connections, so callers notice a new session."""

    def __init__(self, settings: MqttSettings, will: Outgoing) -> None:
        self.settings = settings
        self.where = f"{'mqtts' if settings.tls else 'mqtt'}://{settings.host}:{settings.port}"  # no credentials
        self.epoch = 0
        self.cfg_max_s = settings.reconnect_max_s
        self.last_error = ""
        self._connected = threading.Event()
        self._closing = False
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id, clean_session=True)
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else None
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None,
                certfile=str(settings.cert_file) if settings.cert_file else None,
                keyfile=str(settings.key_file) if settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        # paho waits min_delay after the first failure, doubling up to max_delay (whole seconds).
        min_s = max(1, round(settings.reconnect_min_s))
        client.reconnect_delay_set(min_delay=min_s, max_delay=max(min_s, round(settings.reconnect_max_s)))
        client.max_inflight_messages_set(settings.max_inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self.client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> BrokerConnection:
        MQTT_CONNECTED.set(0)
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        log.info("MQTT: connecting to %s as %s", self.where, self.settings.client_id)
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def publish(self, msg: Outgoing) -> paho.MQTTMessageInfo | None:
        """Hand one message to paho; None if it was not taken (not connected, or refused), counted as dropped. A QoS 1
        message taken is sent again by paho after a reconnect until the broker acknowledges it."""
        info = self.client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return info
        MQTT_DROPPED.labels("disconnected" if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN else "refused").inc()
        log.debug("MQTT: %s not published: %s", msg.topic, paho.error_string(info.rc))
        return None

    def close(self, goodbye: Outgoing | None = None, timeout_s: float = 5.0) -> None:
        """Publish `goodbye` (if connected), disconnect cleanly (no last will) and stop the network thread."""
        if goodbye is not None and self.connected:
            info = self.client.publish(goodbye.topic, goodbye.payload, qos=goodbye.qos, retain=goodbye.retain)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as e:  # paho: not connected / queue full
                log.debug("MQTT: goodbye not sent: %s", e)
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        MQTT_CONNECTED.set(0)

    def _on_connect(self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self.last_error = str(reason)
            MQTT_CONNECTIONS.labels("failed").inc()
            log.warning("MQTT: %s refused the connection: %s", self.where, reason)
            return
        self.epoch += 1
        MQTT_CONNECTIONS.labels("ok").inc()
        MQTT_CONNECTED.set(1)
        self._connected.set()
        log.info("MQTT: connected to %s (connection %d)", self.where, self.epoch)

    def _on_connect_fail(self, _c: paho.Client, _u: object) -> None:
        MQTT_CONNECTIONS.labels("failed").inc()
        self.last_error = "no answer"
        log.warning("MQTT: cannot reach %s; retrying with backoff (at most %g s)", self.where, self.cfg_max_s)

    def _on_disconnect(self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        MQTT_CONNECTED.set(0)
        if was and not self._closing:
            MQTT_CONNECTIONS.labels("lost").inc()
            log.warning("MQTT: lost the connection to %s (%s); reconnecting with backoff", self.where, reason)

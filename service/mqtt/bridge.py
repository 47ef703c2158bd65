"""`vigil mqtt`: the one process that publishes to the MQTT broker what the others write to Redis.

Why a process of its own rather than the workers (which send webhooks): alert events come from the workers *and* the
API (acknowledgements, feedback), camera states from the ingesters, health events from the ingesters; the Redis
streams and hashes see them all. One bridge holds one broker session, so retained state and discovery have one
writer however many workers run, and scoring never waits on a broker: the event stream buffers while it is away.

Delivery: events (QoS 1) are read from their stream after the feed's cursor, at most `max_inflight` at a time; the
cursor (`keys.mqtt_cursor_key`) moves past an event only once the broker acknowledged it and every event before it,
so a restart of the bridge or of the broker loses none (paho resends unacknowledged ones after a reconnect; an event
unacknowledged for `ack_timeout_s` while connected is read and sent again). Camera state and discovery are retained
and published on change, and all again after each new connection; scores are QoS 0, at most every
`score_interval_s` per camera. A standby bridge waits for the lease (`keys.MQTT_LEASE_KEY`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import paho.mqtt.client as paho
import redis

from service.alerts.triage import notified
from service.bus import keys, topics
from service.bus.client import REDIS_ERRORS, Backoff, connect, wait_for_redis
from service.errors import MessageError
from service.lifecycle import ServiceProcess
from service.messages import AlertEvent
from service.metrics import ERRORS, MQTT_DROPPED, MQTT_INFLIGHT, MQTT_PUBLISHED, start_metrics_server
from service.mqtt.connection import BrokerConnection
from service.mqtt.layout import Layout, Outgoing
from service.settings import Settings

log = logging.getLogger(__name__)
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"

# An event stream's entry -> (camera, message) to publish, or None to pass over it (still moves the cursor).
Translate = Callable[[Layout, dict[bytes, bytes]], Outgoing | None]


def alert_message(layout: Layout, fields: dict[bytes, bytes]) -> Outgoing | None:
    """Alert events go to <prefix>/<camera>/alert when their alert is notified (not muted or flood-suppressed)."""
    event = topics.decode_json(fields[b"d"], AlertEvent, "alert event")
    return layout.event(event.alert.camera, "alert", fields[b"d"]) if notified(event) else None


@dataclass
class StreamFeed:
    """Events of one Redis stream, published with QoS 1 in order and at least once. Other event streams (camera
    health) add a feed: `StreamFeed("health", keys.HEALTH_EVENTS_STREAM, <translate>)`."""

    name: str
    stream: str
    translate: Translate
    read_from: str | None = None  # last id read (None: from the cursor)
    inflight: deque[tuple[str, paho.MQTTMessageInfo | None, float]] = field(default_factory=deque)


class MqttBridge(ServiceProcess):
    component = "mqtt"

    def __init__(self, settings: Settings, serve_metrics: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings, self.cfg = settings, settings.mqtt
        self.layout = Layout(self.cfg.topic_prefix, self.cfg.discovery_prefix)
        self.feeds = [StreamFeed("alerts", keys.ALERT_EVENTS_STREAM, alert_message)]
        self.serve_metrics = serve_metrics
        self.token = uuid.uuid4().hex
        self.conn: BrokerConnection | None = None
        self._leader = False
        self._epoch = 0  # the broker connection the retained messages below were published on
        self._retained: dict[str, bytes] = {}  # topic -> payload last published (retained state, discovery)
        self._models: dict[str, str] = {}  # camera -> model of its published discovery
        self._score_at: dict[str, tuple[float, int]] = {}  # camera -> (monotonic time, frame) of its last score
        self._due = 0.0

    def setup(self) -> None:
        self.r = connect(self.settings.redis)
        wait_for_redis(self.r, self.settings.redis.startup_wait_s, self.stop_event)
        self.conn = BrokerConnection(self.cfg, will=self.layout.status(online=False)).start()
        if self.serve_metrics:
            start_metrics_server(self.cfg.metrics_port, self.cfg.metrics_host)

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close(goodbye=self.layout.status(online=False) if self._leader else None)
        r: redis.Redis | None = getattr(self, "r", None)
        if r is not None:
            if self._leader:
                r.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end", 1,
                       keys.MQTT_LEASE_KEY, self.token)  # fmt: skip
            r.close()

    def run_loop(self) -> None:
        backoff = Backoff(initial_s=0.2, max_s=5.0)
        while not self.should_stop():
            try:
                self.step()
                backoff.reset()
            except REDIS_ERRORS as e:
                ERRORS.labels("mqtt", "redis").inc()
                log.warning("Redis unavailable (%s); retrying", e)
                backoff.sleep(self.stop_event)
            except Exception:  # loop boundary: log, count, back off, go on
                log.exception("mqtt bridge loop failed")
                ERRORS.labels("mqtt", "loop").inc()
                backoff.sleep(self.stop_event)

    # --- one iteration -------------------------------------------------------------------------------

    def step(self) -> None:
        assert self.conn is not None  # set in setup()
        if not self._hold_lease():
            self.stop_event.wait(keys.MQTT_LEASE_TTL_MS / 3000)
            return
        if not self.conn.connected:  # events wait in Redis; paho keeps trying with backoff
            self._skip_scores_while_away()
            self.stop_event.wait(0.2)
            return
        if self.conn.epoch != self._epoch:  # a new session: assert everything retained again
            self._epoch, self._retained = self.conn.epoch, {}
            self._send(self.layout.status(online=True))
            self._due = 0.0
        busy = False
        for feed in self.feeds:
            self._acknowledged(feed)
            busy |= self._read(feed)
        now = time.monotonic()
        if now >= self._due:
            self._due = now + self.cfg.poll_interval_s
            self._cameras()
        if not busy:
            self.stop_event.wait(0.05)

    def _hold_lease(self) -> bool:
        key, ttl = keys.MQTT_LEASE_KEY, keys.MQTT_LEASE_TTL_MS
        held = bool(self.r.eval(_RENEW, 1, key, self.token, ttl)) or bool(self.r.set(key, self.token, nx=True, px=ttl))
        if held and not self._leader:
            log.info("MQTT bridge %s publishes (holds the lease)", self.token[:8])
            self._epoch = 0  # publish everything retained at once
            for feed in self.feeds:  # from now on events are ours to deliver, broker or not
                feed.inflight.clear()
                feed.read_from = self._cursor(feed)
        elif not held and self._leader:
            log.warning("MQTT bridge %s lost the lease; standing by", self.token[:8])
        self._leader = held
        return held

    def _send(self, msg: Outgoing) -> paho.MQTTMessageInfo | None:
        """Hand a message to paho. Events count as published once acknowledged (`_acknowledged`); retained state,
        discovery and scores once handed over (state is published again on every new connection anyway)."""
        assert self.conn is not None
        info = self.conn.publish(msg)
        if info is not None and msg.kind != "event":
            MQTT_PUBLISHED.labels(msg.kind).inc()
        return info

    # --- events --------------------------------------------------------------------------------------

    def _read(self, feed: StreamFeed) -> bool:
        """Publish the feed's next events while fewer than max_inflight await acknowledgement; True if it read any."""
        room = self.cfg.max_inflight - len(feed.inflight)
        if room <= 0:
            return True
        if feed.read_from is None:
            feed.read_from = self._cursor(feed)
        block = None if feed.inflight else 100  # nothing else to do: wait a little for new events
        resp: Any = self.r.xread({feed.stream: feed.read_from}, count=room, block=block) or []
        entries = [(i.decode(), f) for _, items in resp for i, f in items]
        for entry_id, fields in entries:
            try:
                msg = feed.translate(self.layout, fields)
            except MessageError as e:
                log.error("MQTT: %s event %s passed over: %s", feed.name, entry_id, e)
                msg = None
            info = self._send(msg) if msg is not None else None
            if msg is not None and info is None:  # not taken (the connection just went): read it again later
                break
            feed.inflight.append((entry_id, info, time.monotonic()))  # info None: nothing to send, done at once
            feed.read_from = entry_id
        MQTT_INFLIGHT.set(sum(len(f.inflight) for f in self.feeds))
        return bool(entries)

    def _acknowledged(self, feed: StreamFeed) -> None:
        """Move the feed's cursor past the events the broker acknowledged, in order; send again one stuck too long."""
        done = None
        while feed.inflight:
            entry_id, info, sent = feed.inflight[0]
            if info is None or info.is_published():
                feed.inflight.popleft()
                done = entry_id
                if info is not None:
                    MQTT_PUBLISHED.labels("event").inc()
                continue
            if time.monotonic() - sent > self.cfg.ack_timeout_s:
                log.warning("MQTT: %s event %s unacknowledged for %g s; sending again", feed.name, entry_id,
                            self.cfg.ack_timeout_s)  # fmt: skip
                feed.inflight.clear()
                feed.read_from = None  # read again from the cursor (a duplicate or two, never a loss)
            break
        if done is not None:
            self.r.set(keys.mqtt_cursor_key(feed.name), done)
        MQTT_INFLIGHT.set(sum(len(f.inflight) for f in self.feeds))

    def _cursor(self, feed: StreamFeed) -> str:
        """Where the feed resumes: its stored cursor, or the stream's newest entry at first (no backlog replayed)."""
        stored = cast(bytes | None, self.r.get(keys.mqtt_cursor_key(feed.name)))
        info: Any = None
        try:
            info = self.r.xinfo_stream(feed.stream)
        except redis.ResponseError:  # no such stream yet
            info = None
        if stored is None:
            start = info["last-generated-id"].decode() if info else "0-0"
            self.r.set(keys.mqtt_cursor_key(feed.name), start)
            log.info("MQTT: %s feed starts at %s (events before the first start are not replayed)", feed.name, start)
            return start
        cursor = stored.decode()
        first = info.get("first-entry") if info else None
        if first is not None and _id_tuple(first[0].decode()) > _id_tuple(cursor) and cursor != "0-0":
            trimmed = int(info.get("entries-added", 0)) - int(info.get("length", 0))
            MQTT_DROPPED.labels("trimmed").inc()
            log.error("MQTT: %s events after %s were trimmed from Redis before they were published (%d trimmed in all)",
                      feed.name, cursor, trimmed)  # fmt: skip
        return cursor

    # --- cameras: discovery, retained state, scores --------------------------------------------------------

    def _cameras(self) -> None:
        cameras = {c.id: c.model for c in topics.list_cameras(self.r)}
        statuses = topics.list_camera_statuses(self.r)
        if self.cfg.discovery:
            for camera, model in cameras.items():
                for msg in self.layout.discovery(camera, model):
                    self._retain(msg)
        for camera in [c for c in self._models if c not in cameras]:
            for msg in self.layout.forget(camera):
                self._retain(msg)
            self._score_at.pop(camera, None)
        self._models = dict(cameras)
        for camera in cameras:
            try:
                open_alert = topics.load_scoring_state(self.r, camera).track.alert
            except MessageError as e:
                log.error("MQTT: camera %s: scoring state unreadable (%s)", camera, e)
                open_alert = None
            for msg in self.layout.state(camera, statuses.get(camera), open_alert):
                self._retain(msg)
            self._score(camera)

    def _retain(self, msg: Outgoing) -> None:
        """Publish a retained message if it changed since the last one on this connection."""
        if self._retained.get(msg.topic) == msg.payload:
            return
        if self._send(msg) is not None:
            self._retained[msg.topic] = msg.payload

    def _score(self, camera: str) -> None:
        last = self._score_at.get(camera)
        if last is not None and time.monotonic() - last[0] < self.cfg.score_interval_s:
            return
        score = topics.latest_score(self.r, camera)
        if score is None or (last is not None and last[1] == score.frame):
            return
        if self._send(self.layout.score(score)) is not None:
            self._score_at[camera] = (time.monotonic(), score.frame)

    def _skip_scores_while_away(self) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self.cfg.poll_interval_s
        if self._leader and self._models:
            MQTT_DROPPED.labels("disconnected").inc(len(self._models))  # one score per camera not sent this round


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)

"""Optional webhook delivery of alert events and camera health events: a background thread POSTs each event as
JSON, with retries. Which ones a deployment gets is `alerts.webhook_events` (workers send alert events, ingesters
health events); the header `X-Vigil-Event` says which one a request carries (`alert` or `health`).

Delivery is at most once per worker process and best effort: a bounded queue (full -> dropped and
counted), up to `attempts` tries with exponential backoff on network errors and 5xx/429 answers, then
given up (counted as failed). Alerts themselves are always in Redis; the webhook is a notification.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable

import httpx

from service.bus.client import Backoff
from service.messages import AlertEvent, HealthEvent, mask_credentials
from service.metrics import WEBHOOK_DELIVERIES

log = logging.getLogger(__name__)
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
Event = AlertEvent | HealthEvent
Links = Callable[[str], dict[str, str]]  # alert id -> links to its resources (service/alerts/links.py)


def _describe(event: Event) -> tuple[str, str]:
    """(X-Vigil-Event header, what the logs call it)."""
    if isinstance(event, HealthEvent):
        return "health", f"health event ({event.condition} {event.kind}) of camera {event.camera}"
    return "alert", f"{event.kind} event of alert {event.alert.id}"


class WebhookSender:
    """`start()`, then `send(event)` from any thread; `close()` delivers what is queued (bounded wait)."""

    def __init__(
        self,
        url: str,
        attempts: int = 5,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        max_queue: int = 1000,
        links: Links | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            msg = f"webhook url must be http:// or https://, got {mask_credentials(url)!r}"
            raise ValueError(msg)
        self.url, self.attempts, self.backoff_s, self.links = url, attempts, backoff_s, links
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=max_queue)
        self._client = httpx.Client(timeout=timeout_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def start(self) -> WebhookSender:
        self._thread.start()
        return self

    def send(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            WEBHOOK_DELIVERIES.labels("dropped").inc()
            log.warning("webhook queue full; dropped the %s", _describe(event)[1])

    def close(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)  # sentinel: deliver what came before it, then exit
        self._thread.join(timeout_s)
        self._stop.set()  # cut retries short if the join timed out
        self._client.close()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            self.deliver(event)

    def body(self, event: Event) -> str:
        """The event's JSON; an alert event's gets `links` (alert, thumbnail, clip) beside `kind` and `alert`."""
        if self.links is None or not isinstance(event, AlertEvent):
            return event.model_dump_json()
        doc = event.model_dump(mode="json")
        doc["links"] = self.links(event.alert.id)
        return json.dumps(doc)

    def deliver(self, event: Event) -> bool:
        """POST one event, retrying transient failures; True when the receiver accepted it (2xx)."""
        backoff = Backoff(initial_s=self.backoff_s, max_s=30.0)
        body = self.body(event)
        kind, what = _describe(event)
        headers = {"content-type": "application/json", "x-vigil-event": kind}
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self._client.post(self.url, content=body, headers=headers)
                if resp.is_success:
                    WEBHOOK_DELIVERIES.labels("ok").inc()
                    return True
                reason = f"HTTP {resp.status_code}"
                if resp.status_code not in _RETRY_STATUS:
                    break
            except httpx.HTTPError as e:
                reason = f"{type(e).__name__}: {e}"
            if attempt < self.attempts and not self._stop.is_set():
                WEBHOOK_DELIVERIES.labels("retry").inc()
                backoff.sleep(self._stop)
        WEBHOOK_DELIVERIES.labels("failed").inc()
        where = mask_credentials(self.url)
        log.error("webhook %s: gave up on the %s: %s", where, what, reason)
        return False

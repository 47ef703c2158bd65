"""Webhook delivery against a real HTTP server on loopback: retries on 5xx, gives up on 4xx, queue drains on close."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from service.alerts.webhook import WebhookSender
from service.messages import Alert, AlertEvent, CameraHealth, HealthCondition, HealthEvent


class _Receiver(ThreadingHTTPServer):
    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses = statuses  # answered in turn; the last one repeats
        self.bodies: list[dict] = []
        self.kinds: list[str] = []  # X-Vigil-Event of each request


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(json.loads(body))
        self.server.kinds.append(self.headers.get("x-vigil-event", ""))
        status = self.server.statuses.pop(0) if len(self.server.statuses) > 1 else self.server.statuses[0]
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture
def receiver(request) -> Iterator[_Receiver]:
    server = _Receiver(list(request.param))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _event(kind: str = "opened") -> AlertEvent:
    alert = Alert(
        id="cam-1-abc",
        camera="cam",
        model="m@v1",
        state="open",
        start_frame=1,
        start_ts=1.0,
        peak_score=0.99,
        peak_frame=2,
    )
    return AlertEvent(kind=kind, alert=alert)


def _count(result: str) -> float:
    return REGISTRY.get_sample_value("vigil_alerts_webhook_deliveries_total", {"result": result}) or 0.0


def _url(server: _Receiver) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


@pytest.mark.parametrize("receiver", [[503, 500, 200]], indirect=True)
def test_retries_until_accepted(receiver):
    retries = _count("retry")
    sender = WebhookSender(_url(receiver), attempts=5, backoff_s=0.01)
    assert sender.deliver(_event()) is True
    assert len(receiver.bodies) == 3
    assert receiver.bodies[-1]["alert"]["id"] == "cam-1-abc"
    assert _count("retry") == retries + 2


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_client_error_is_not_retried(receiver):
    failed = _count("failed")
    sender = WebhookSender(_url(receiver), attempts=5, backoff_s=0.01)
    assert sender.deliver(_event()) is False
    assert len(receiver.bodies) == 1
    assert _count("failed") == failed + 1


@pytest.mark.parametrize("receiver", [[200]], indirect=True)
def test_queued_events_are_delivered_before_close(receiver):
    sender = WebhookSender(_url(receiver)).start()
    for kind in ("opened", "updated", "closed"):
        sender.send(_event(kind))
    sender.close()
    assert [b["kind"] for b in receiver.bodies] == ["opened", "updated", "closed"]


def test_unreachable_receiver_gives_up():
    sender = WebhookSender("http://127.0.0.1:9/hook", attempts=2, backoff_s=0.01, timeout_s=1)  # discard port
    assert sender.deliver(_event()) is False


def test_rejects_non_http_url():
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookSender("ftp://user:secret@host/x")


@pytest.mark.parametrize("receiver", [[200]], indirect=True)
def test_health_events_go_out_marked_as_health(receiver):
    state = CameraHealth(camera="cam", state="unhealthy", conditions={"frozen": HealthCondition(since_ts=5.0)})
    health = HealthEvent(kind="raised", camera="cam", condition="frozen", ts=5.0, detail="no change", health=state)
    sender = WebhookSender(_url(receiver)).start()
    sender.send(_event("opened"))
    sender.send(health)
    sender.close()
    assert receiver.kinds == ["alert", "health"]
    assert receiver.bodies[1]["condition"] == "frozen"
    assert receiver.bodies[1]["health"]["conditions"]["frozen"]["since_ts"] == 5.0

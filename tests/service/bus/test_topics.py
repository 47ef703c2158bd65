"""Bus topics against a real redis-server: windows through the consumer group, claims, cameras and control,
status, scores, alert paging, heartbeats."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from service.bus import keys, topics
from service.messages import (
    Alert,
    AlertEvent,
    CameraConfig,
    CameraStatus,
    Heartbeat,
    ScoreMsg,
    WindowMsg,
)


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _window(camera: str, first: int = 4) -> WindowMsg:
    return WindowMsg(
        camera=camera,
        model="m@production",
        context=4,
        first_frame=first,
        pts=[None, None],
        capture_ts=[time.time()] * 2,
        frames=np.full((6, 8, 8, 1), first, dtype=np.uint8),
    )


def test_publish_assigns_consecutive_seq_per_camera(r):
    topics.ensure_window_group(r)
    topics.ensure_window_group(r)  # idempotent
    seqs = [topics.publish_window(r, _window(cam))[0] for cam in ("a", "b", "a", "a", "b")]
    assert seqs == [1, 1, 2, 3, 2]
    entries = topics.read_windows(r, "w1", count=10, block_ms=None)
    assert [(w.camera, w.seq) for _, w in entries] == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
    assert topics.read_windows(r, "w2", count=10, block_ms=10) == []  # each window goes to one consumer
    assert topics.window_backlog(r) == (5, 0, 5)
    assert topics.camera_backlog(r, "a") == 3


def test_stream_is_capped(r):
    for _ in range(300):
        topics.publish_window(r, _window("a"), maxlen=100)
    assert 100 <= r.xlen(keys.windows_stream(0)) < 300  # approximate trimming keeps whole nodes


def test_stale_windows_are_claimed_by_another_consumer(r):
    topics.ensure_window_group(r)
    for _ in range(3):
        topics.publish_window(r, _window("a"))
    taken = topics.read_windows(r, "dead", count=3, block_ms=None)
    topics.ack_windows(r, [taken[0][0]])
    assert r.xlen(keys.windows_stream(0)) == 2  # a scored window leaves the stream: no frames kept until the cap
    assert topics.window_backlog(r) == (2, 0, 2)
    assert topics.claim_stale_windows(r, "alive", min_idle_ms=60_000) == []  # not idle long enough
    time.sleep(0.05)
    claimed = topics.claim_stale_windows(r, "alive", min_idle_ms=20)
    assert [e for e, _ in claimed] == [e for e, _ in taken[1:]]
    assert r.xpending(keys.windows_stream(0), keys.WINDOWS_GROUP)["consumers"] == [{"name": b"alive", "pending": 2}]


def test_malformed_entry_comes_back_as_error(r):
    topics.ensure_window_group(r)
    r.xadd(keys.windows_stream(0), {"v": "1", "seq": "1", "h": "[]", "f": ""})
    [(_, item)] = topics.read_windows(r, "w", count=1, block_ms=None)
    assert isinstance(item, topics.MessageError)
    assert "header is not a JSON object" in str(item)


def test_cameras_crud_announces_changes(r):
    pubsub = topics.subscribe_control(r)
    cam = CameraConfig(id="gate", url="rtsp://u:pw@h/1", model="m@production", kind="live")
    topics.put_camera(r, cam)
    assert topics.get_camera(r, "gate") == cam
    assert topics.list_cameras(r) == [cam]
    assert topics.delete_camera(r, "gate") is True
    assert topics.delete_camera(r, "gate") is False
    assert topics.get_camera(r, "gate") is None
    ops = []
    deadline = time.monotonic() + 5
    while len(ops) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None:
            ops.append(topics.decode_control(message["data"]))
    assert [(m.op, m.camera) for m in ops] == [("put", "gate"), ("delete", "gate")]
    pubsub.close()


def test_unreadable_camera_is_skipped_in_listing(r):
    r.hset(keys.CAMERAS_HASH, "broken", b'{"schema_version": 1, "id": "broken"}')
    topics.put_camera(r, CameraConfig(id="ok", url="/videos/a.mp4", model="m", kind="file"))
    assert [c.id for c in topics.list_cameras(r)] == ["ok"]


def test_camera_status(r):
    status = CameraStatus(camera="gate", state="streaming", owner="ingest-1", fps=25.0, frames_decoded=100)
    topics.set_camera_status(r, status)
    assert topics.get_camera_status(r, "gate") == status
    assert topics.list_camera_statuses(r) == {"gate": status}


def _score(camera: str, frame: int) -> ScoreMsg:
    return ScoreMsg(
        camera=camera, frame=frame, seq=1, score=0.5, signals=[1.0], model="m@v1", capture_ts=1.0, published_ts=2.0
    )


def test_scores_ranges_and_tailing(r):
    pipe = r.pipeline(transaction=True)
    topics.add_scores(pipe, [_score("a", i) for i in range(5)] + [_score("b", 0)])
    pipe.execute()
    entries = topics.read_scores(r, "a")
    assert [s.frame for _, s in entries] == [0, 1, 2, 3, 4]
    after = topics.read_scores(r, "a", start=f"({entries[2][0]}")
    assert [s.frame for _, s in after] == [3, 4]
    assert topics.latest_score(r, "a").frame == 4
    assert topics.latest_score(r, "missing") is None
    tail = topics.read_new_scores(r, {"a": entries[3][0], "b": "0"})
    assert [(c, s.frame) for c, _, s in tail] == [("a", 4), ("b", 0)]


def _alert(alert_id: str, camera: str, state: str = "open") -> Alert:
    return Alert(
        id=alert_id,
        camera=camera,
        model="m@v1",
        state=state,
        start_frame=1,
        start_ts=1.0,
        peak_score=0.99,
        peak_frame=2,
    )


def test_alert_cursor_paging(r):
    for alert_id, camera in (("a1", "x"), ("a2", "y"), ("a3", "x")):
        topics.save_alert_event(r, AlertEvent(kind="opened", alert=_alert(alert_id, camera)), retention_s=3600)
    page = topics.list_alerts(r, since=0, limit=2)
    assert [a.id for a in page.alerts] == ["a1", "a2"]
    page2 = topics.list_alerts(r, since=page.next_cursor, limit=2)
    assert [a.id for a in page2.alerts] == ["a3"]
    assert topics.list_alerts(r, since=page2.next_cursor).alerts == []
    assert topics.list_alerts(r, since=page2.next_cursor).next_cursor == page2.next_cursor
    # A change moves the alert after the cursor again: pollers see it closed.
    topics.save_alert_event(r, AlertEvent(kind="closed", alert=_alert("a1", "x", "closed")), retention_s=3600)
    changed = topics.list_alerts(r, since=page2.next_cursor)
    assert [(a.id, a.state) for a in changed.alerts] == [("a1", "closed")]
    assert [a.id for a in topics.list_alerts(r, camera="x").alerts] == ["a3", "a1"]
    assert topics.get_alert(r, "a1").state == "closed"
    events = topics.read_alert_events(r, "0")
    assert [(e.kind, e.alert.id) for _, e in events] == [
        ("opened", "a1"),
        ("opened", "a2"),
        ("opened", "a3"),
        ("closed", "a1"),
    ]


def test_expired_alerts_leave_the_index(r):
    topics.save_alert_event(r, AlertEvent(kind="opened", alert=_alert("gone", "x")), retention_s=3600)
    topics.save_alert_event(r, AlertEvent(kind="opened", alert=_alert("kept", "x")), retention_s=3600)
    r.delete(keys.alert_key("gone"))  # what retention expiry does
    assert [a.id for a in topics.list_alerts(r).alerts] == ["kept"]
    assert r.zscore(keys.ALERTS_INDEX, "gone") is None
    with pytest.raises(ValueError, match="limit must be >= 1"):
        topics.list_alerts(r, limit=0)


def test_heartbeats_expire(r):
    hb = Heartbeat(component="worker", id="w1", pid=1, host="h", activity="idle")
    topics.write_heartbeat(r, hb, ttl_s=0.2)
    assert topics.read_heartbeats(r, "worker") == [hb]
    assert topics.read_heartbeats(r, "ingest") == []
    time.sleep(0.3)
    assert topics.read_heartbeats(r, "worker") == []

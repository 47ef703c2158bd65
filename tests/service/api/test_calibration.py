"""A camera's calibration over the API on a real Redis, with the worker's own publisher scoring windows: learning and
hold-back, relearning from a range and from the card, what-if replays equal to what was published live, operator
feedback that changes later scores, a restarted worker that carries on, roles, and bad input."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from models.calibration import fit_calibration
from models.store import ModelStore
from service.bus import topics
from service.messages import AlertParams, CameraConfig, ScoredWindow
from service.settings import AlertSettings, CalibrationSettings
from service.worker.ordering import OrderedPublisher
from tests.calibration_util import offline_scores
from tests.service.api.conftest import ADMIN_KEY, VIEWER_KEY, add_model
from tests.service.worker.helpers import all_scores

OPERATOR_KEY = "operator-key-0123456789"
FPS = 10.0
W = 8  # frames per window
CARD = fit_calibration(np.random.default_rng(0).normal(0.0, 1.0, (600, 1)), ["neg_psnr"], fps=FPS)
PARAMS = CalibrationSettings(learn_s=20.0, min_learn_frames=100)
ALERTS = AlertParams.merge(AlertSettings(), None)


@pytest.fixture
def model(store: ModelStore) -> str:
    """A registered version whose card holds CARD (the API reads cards, never weights)."""
    version = store.resolve(f"ffp@{add_model(store)}")
    store.write_card(version, version.card().model_copy(update={"calibration": CARD}))
    return version.ref


@pytest.fixture
def publisher(redis_url: str, model: str) -> Callable[[], OrderedPublisher]:
    """What a worker runs after scoring: ordering, the camera calibration, alerts, archive (a new one each call,
    as a restarted worker would be)."""

    def make() -> OrderedPublisher:
        return OrderedPublisher(
            redis.Redis.from_url(redis_url),
            calibration=lambda _model: CARD,
            alert_params=lambda _camera: ALERTS,
            gap_timeout_s=30.0,
            retention_s=3600,
            calib_params=PARAMS,
            replay_retention_s=3600,
        )

    return make


def _publish(pub: OrderedPublisher, camera: str, model: str, z: np.ndarray, start_frame: int, t0: float) -> None:
    """Standardised values z (one per frame) as windows of raw signals, seq numbers following the frames."""
    for i in range(0, len(z), W):
        part = z[i : i + W]
        first = start_frame + i
        pub.submit(
            [
                ScoredWindow(
                    camera=camera,
                    seq=first // W + 1,
                    model=model,
                    first_frame=first,
                    pts=[(first + k) / FPS for k in range(len(part))],
                    capture_ts=[t0 + (first + k) / FPS for k in range(len(part))],
                    raw=[[float(v)] for v in part],
                )
            ]
        )


def _normal(n: int, seed: int, level: float = 2.0) -> np.ndarray:
    return level + 0.5 * np.random.default_rng(seed).normal(size=n)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(
        api={"admin_keys": [ADMIN_KEY], "operator_keys": [OPERATOR_KEY], "viewer_keys": [VIEWER_KEY]},
        calibration=PARAMS.model_dump(),
    )


def _add(rc: redis.Redis, camera: str) -> None:
    topics.put_camera(rc, CameraConfig(id=camera, url="rtsp://cam.example/1", model="ffp"))


def test_new_camera_learns_with_alerts_held_back_then_alerts_and_replays_equal_live(
    client: TestClient, rclient: redis.Redis, publisher: Callable[[], OrderedPublisher], model: str
) -> None:
    _add(rclient, "gate")
    viewer = {"X-API-Key": VIEWER_KEY}
    assert client.get("/cameras/gate/calibration", headers=viewer).json()["state"] == "new"
    t0 = time.time() - 100
    # 20 s of learning (a high stretch among them: learned as normal), then normal frames and a far higher anomaly.
    z = np.r_[_normal(150, 1), 9.0 + _normal(30, 2), _normal(120, 3), 16.0 + _normal(40, 4), _normal(60, 5)]
    _publish(publisher(), "gate", model, z, 0, t0)
    scores = all_scores(rclient, "gate")
    states = [s.calibration.state for s in scores if s.calibration]
    learned_at = states.index("ready")
    assert set(states[:learned_at]) == {"learning"}
    assert 199 <= learned_at <= 202
    assert not any(s.alertable for s in scores[:learned_at])
    alerts = topics.list_alerts(rclient, camera="gate").alerts
    assert len(alerts) == 1  # the stretch while learning was held back (and learned as normal)
    assert 300 <= alerts[0].start_frame < 340
    assert alerts[0].opened_frame == alerts[0].start_frame + ALERTS.min_duration_frames - 1
    view = client.get("/cameras/gate/calibration", headers=viewer).json()
    assert (view["state"], view["version"], view["profile"]) == ("ready", 1, "colour")
    assert view["profiles"]["colour"]["frames"] in (200, 201)
    assert view["threshold_rises_per_hour"] == pytest.approx(1.0)
    # The published scores are what the offline camera path computes for the same frames.
    offline = offline_scores(CARD, model, z[:, None], params=PARAMS, alerts=ALERTS, fps=FPS)
    np.testing.assert_allclose([s.score for s in scores], offline.scores, atol=1e-9)
    spans = [(a.start_frame, a.end_frame, a.peak_frame, a.opened_frame) for a in offline.alerts]
    assert spans == [(a.start_frame, a.end_frame, a.peak_frame, a.opened_frame) for a in alerts]  # vigil eval's alerts
    # Replay with the live parameters gives the live alerts; a stricter threshold gives none.
    body = {"start": t0, "end": t0 + len(z) / FPS}
    same = client.post("/cameras/gate/replay", json=body, headers=viewer).json()
    assert same["frames"] == len(z)
    assert same["held_back"] == learned_at
    key = ("start_frame", "end_frame", "peak_frame", "peak_score", "opened_frame")
    assert [[a[k] for k in key] for a in same["alerts"]] == [[getattr(a, k) for k in key] for a in alerts]
    assert client.post("/cameras/gate/replay", json={**body, "threshold": 0.99}, headers=viewer).json()["alerts"] == []
    # The same frames against the 'mono' profile: none learned.
    assert client.post("/cameras/gate/replay", json={**body, "profile": "mono"}, headers=viewer).status_code == 422


def test_false_alarm_feedback_lowers_later_scores_and_survives_a_worker_restart(
    client: TestClient, rclient: redis.Redis, publisher: Callable[[], OrderedPublisher], model: str
) -> None:
    _add(rclient, "yard")
    operator = {"X-API-Key": OPERATOR_KEY}
    t0 = time.time() - 200
    r = client.post("/cameras/yard/calibration", json={"source": "card"}, headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    first = np.r_[_normal(100, 6, 0.0), 4.0 + _normal(30, 7, 0.0), _normal(100, 8, 0.0)]
    _publish(publisher(), "yard", model, first, 0, t0)
    alerts = topics.list_alerts(rclient, camera="yard").alerts
    assert len(alerts) == 1
    before = max(s.score for s in all_scores(rclient, "yard")[100:130])
    # A viewer may not give feedback; an operator may, once.
    path = f"/alerts/{alerts[0].id}/feedback"
    assert client.post(path, json={"verdict": "false_alarm"}, headers={"X-API-Key": VIEWER_KEY}).status_code == 403
    given = client.post(path, json={"verdict": "false_alarm", "note": "a delivery van"}, headers=operator)
    assert given.status_code == 200, given.text
    assert given.json()["feedback"]["verdict"] == "false_alarm"
    assert given.json()["feedback"]["frames"] >= 25
    assert given.json()["feedback"]["reference_version"] == 2
    again = client.post(path, json={"verdict": "confirmed"}, headers=operator)
    assert again.status_code == 409
    assert "already has feedback" in again.json()["detail"]
    events = [e.kind for _, e in topics.read_alert_events(rclient, "0")]
    assert events[-1] == "feedback"
    # A restarted worker (a new publisher, empty caches) scores the same stretch again: lower now, and no alert.
    _publish(publisher(), "yard", model, first[100:130] * 0 + first[100:130], len(first), t0)
    after = max(s.score for s in all_scores(rclient, "yard")[len(first) :])
    assert after < before - 0.1
    assert after < ALERTS.threshold
    assert len(topics.list_alerts(rclient, camera="yard").alerts) == 1
    view = client.get("/cameras/yard/calibration", headers=operator).json()
    assert view["version"] == 2
    assert view["profiles"]["colour"]["feedback_frames"] >= 25


def test_feedback_on_an_open_alert_is_given_once_and_the_alert_keeps_it_when_it_closes(
    client: TestClient, rclient: redis.Redis, publisher: Callable[[], OrderedPublisher], model: str
) -> None:
    _add(rclient, "gate")
    operator = {"X-API-Key": OPERATOR_KEY}
    assert client.post("/cameras/gate/calibration", json={"source": "card"}, headers=operator).status_code == 200
    t0 = time.time() - 100
    pub = publisher()
    _publish(pub, "gate", model, np.r_[_normal(80, 13, 0.0), 6.0 + _normal(40, 14, 0.0)], 0, t0)
    (alert,) = topics.list_alerts(rclient, camera="gate").alerts
    assert alert.state == "open"
    path = f"/alerts/{alert.id}/feedback"
    assert client.post(path, json={"verdict": "confirmed", "note": "a fight"}, headers=operator).status_code == 200
    twice = client.post(path, json={"verdict": "false_alarm"}, headers=operator)
    assert twice.status_code == 409
    assert "already has feedback (confirmed)" in twice.json()["detail"]
    _publish(pub, "gate", model, _normal(40, 15, 0.0), 120, t0)  # the anomaly ends: the worker closes the alert
    closed = topics.get_alert(rclient, alert.id)
    assert closed is not None
    assert closed.state == "closed"
    assert closed.feedback is not None
    assert closed.feedback.verdict == "confirmed"


def test_relearning_from_a_range_and_from_live_frames(
    client: TestClient, rclient: redis.Redis, publisher: Callable[[], OrderedPublisher], model: str
) -> None:
    _add(rclient, "dock")
    operator = {"X-API-Key": OPERATOR_KEY}
    assert client.post("/cameras/dock/calibration", json={"source": "card"}, headers=operator).status_code == 200
    t0 = time.time() - 100
    z = _normal(400, 9, level=5.0)  # a busier scene than the card's: everything scores high on the card
    _publish(publisher(), "dock", model, z, 0, t0)
    assert np.median([s.score for s in all_scores(rclient, "dock")]) > 0.5
    r = client.post(
        "/cameras/dock/calibration", json={"source": "range", "start": t0, "end": t0 + 30}, headers=operator
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert r.json()["profiles"]["colour"]["frames"] == 301
    _publish(publisher(), "dock", model, _normal(80, 10, level=5.0), 400, t0)
    assert np.median([s.score for s in all_scores(rclient, "dock")[400:]]) < 0.3
    live = client.post("/cameras/dock/calibration", json={"source": "live", "seconds": 5}, headers=operator)
    assert live.status_code == 200
    assert live.json()["state"] == "learning"
    assert live.json()["learning"]["colour"]["target_s"] == 5
    _publish(publisher(), "dock", model, _normal(100, 11, level=5.0), 480, t0)
    view = client.get("/cameras/dock/calibration", headers=operator).json()
    assert view["state"] == "ready"
    assert view["version"] == 3


def test_bad_input_is_refused_and_changes_nothing(
    client: TestClient, rclient: redis.Redis, publisher: Callable[[], OrderedPublisher], model: str
) -> None:
    _add(rclient, "hall")
    op = {"X-API-Key": OPERATOR_KEY}
    viewer = {"X-API-Key": VIEWER_KEY}
    t0 = time.time() - 100
    # Nothing archived yet: no range to learn from, nothing to replay.
    r = client.post("/cameras/hall/calibration", json={"source": "range", "start": t0, "end": t0 + 5}, headers=op)
    assert r.status_code == 409
    assert "no archived frames" in r.json()["detail"]
    assert client.post("/cameras/hall/replay", json={"start": t0, "end": t0 + 5}, headers=viewer).status_code == 409
    _publish(publisher(), "hall", model, _normal(80, 12), 0, t0)
    state = topics.load_scoring_state(rclient, "hall")
    cases = [
        ("/cameras/hall/replay", {"start": t0 - 7200, "end": t0 - 3600}, 422, "outside the archive"),
        ("/cameras/hall/replay", {"start": t0 + 5, "end": t0}, 422, "before end"),
        ("/cameras/hall/replay", {"start": t0, "end": t0 + 5, "threshold": 1.5}, 422, "threshold"),
        ("/cameras/hall/calibration", {"source": "range", "start": t0, "end": t0 + 5}, 409, "fewer than"),
        ("/cameras/hall/calibration", {"source": "range", "start": t0}, 422, "start < end"),
        ("/cameras/hall/calibration", {"source": "live", "start": t0}, 422, "belong to source 'range'"),
        ("/cameras/hall/calibration", {"source": "sky"}, 422, "source"),
        ("/cameras/nope/calibration", {"source": "card"}, 404, "no camera 'nope'"),
        ("/alerts/hall-1-deadbeef/feedback", {"verdict": "false_alarm"}, 404, "no alert"),
        ("/alerts/hall-1-deadbeef/feedback", {"verdict": "maybe"}, 422, "verdict"),
    ]
    for path, body, status, text in cases:
        r = client.post(path, json=body, headers=op)
        assert r.status_code == status, (path, body, r.text)
        assert text in r.text, (path, body, r.text)
    assert topics.load_scoring_state(rclient, "hall") == state  # nothing changed
    # Roles: no key -> 401, a viewer key on an operator action -> 403 naming what is needed.
    assert client.post("/cameras/hall/calibration", json={"source": "card"}).status_code == 401
    r = client.post("/cameras/hall/calibration", json={"source": "card"}, headers=viewer)
    assert r.status_code == 403
    assert "operator or admin" in r.json()["detail"]
    assert (
        client.post("/cameras/hall/calibration", json={"source": "card"}, headers={"X-API-Key": ADMIN_KEY}).status_code
        == 200
    )

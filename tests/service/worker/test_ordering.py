"""Per-camera ordering: the pure drain plan (table), and OrderedPublisher on a real Redis with results
arriving out of order, twice, or never."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from service.bus import keys, topics
from service.messages import AlertParams, ScoredWindow, ScoringState
from service.worker.ordering import OrderedPublisher, plan_drain
from tests.calibration_util import offline_scores
from tests.service.worker.helpers import all_scores

N = 4  # frames per window


def _window(
    seq: int, camera: str = "cam", model: str = "m@v1", center: float = 0.0, scale: float = 1.0
) -> ScoredWindow:
    rng = np.random.default_rng(seq)
    return ScoredWindow(
        camera=camera,
        seq=seq,
        model=model,
        first_frame=(seq - 1) * N,
        pts=[None] * N,
        capture_ts=[time.time()] * N,
        raw=(center + scale * rng.normal(size=(N, 1))).tolist(),
    )


@pytest.mark.parametrize(
    ("next_seq", "stashed", "gap_age", "ready", "new_next", "skipped", "stale"),
    [
        (1, [1, 2, 3], None, [1, 2, 3], 4, 0, []),  # in order
        (1, [2, 3], None, [], 1, 0, []),  # 1 missing: wait (gap starts now)
        (1, [2, 3], 0.5, [], 1, 0, []),  # still waiting, younger than the timeout
        (1, [2, 3], 2.0, [2, 3], 4, 1, []),  # gap older than the timeout: skip 1
        (1, [4, 5], 2.0, [4, 5], 6, 3, []),  # skip straight to the lowest waiting seq
        (3, [1, 2, 3], None, [3], 4, 0, [1, 2]),  # duplicates below next_seq are dropped
        (5, [], None, [], 5, 0, []),  # nothing to do
    ],
)
def test_plan_drain(next_seq, stashed, gap_age, ready, new_next, skipped, stale):
    now = 1000.0
    state = ScoringState(next_seq=next_seq, gap_since=None if gap_age is None else now - gap_age)
    plan = plan_drain(state, {s: _window(s) for s in stashed}, now, gap_timeout_s=1.0)
    assert [w.seq for w in plan.ready] == ready
    assert (plan.next_seq, plan.skipped, plan.stale) == (new_next, skipped, stale)
    waiting = any(s > new_next for s in stashed)
    assert (plan.gap_since is not None) == waiting


@pytest.fixture
def publisher_factory(redis_url, trained_store):
    r = redis.Redis.from_url(redis_url)
    params = AlertParams(threshold=0.95, hysteresis=0.05, min_duration_frames=2, cooldown_frames=0)

    def make(gap_timeout_s: float = 30.0) -> OrderedPublisher:
        return OrderedPublisher(
            r,
            calibration=lambda _model: trained_store.calibration,
            alert_params=lambda _camera: params,
            gap_timeout_s=gap_timeout_s,
            retention_s=3600,
        )

    return r, make


def test_out_of_order_results_are_published_in_order(publisher_factory, trained_store):
    r, make = publisher_factory
    publisher = make()
    normal = trained_store.calibration.signals[0]  # raw signals like the card's normal frames
    windows = [_window(s, center=normal.center, scale=normal.scale) for s in range(1, 7)]
    for order in ([3], [1], [2, 6], [5], [4]):  # completion order of several workers
        publisher.submit([windows[s - 1] for s in order])
    scores = all_scores(r, "cam")
    assert [s.frame for s in scores] == list(range(6 * N))
    raw = np.concatenate([np.asarray(w.raw) for w in windows])
    expected = offline_scores(trained_store.calibration, "m@v1", raw).scores  # one calibration over all, as offline
    assert 0.05 < expected.min() < expected.max() < 0.95  # not saturated: the comparison means something
    np.testing.assert_allclose([s.score for s in scores], expected, atol=1e-12)
    assert r.hlen(keys.camera_results_key("cam")) == 0
    assert not r.sismember(keys.results_waiting_set(0), "cam")


def test_duplicate_results_are_dropped(publisher_factory):
    r, make = publisher_factory
    publisher = make()
    publisher.submit([_window(1), _window(2)])
    publisher.submit([_window(1)])  # a claimed window scored a second time
    assert [s.frame for s in all_scores(r, "cam")] == list(range(2 * N))
    assert r.hlen(keys.camera_results_key("cam")) == 0


def test_missing_window_is_skipped_after_the_gap_timeout(publisher_factory):
    r, make = publisher_factory
    publisher = make(gap_timeout_s=0.3)
    publisher.submit([_window(1), _window(3)])  # 2 never comes
    assert [s.seq for s in all_scores(r, "cam")] == [1] * N
    publisher.sweep()
    assert r.xlen(keys.score_stream_key("cam")) == N  # still waiting
    time.sleep(0.35)
    publisher.sweep()
    assert [s.seq for s in all_scores(r, "cam")] == [1] * N + [3] * N
    state = topics.load_scoring_state(r, "cam")
    assert (state.next_seq, state.skipped, state.gap_since) == (4, 1, None)


def test_failed_window_passes_its_seq(publisher_factory):
    r, make = publisher_factory
    publisher = make()
    failed = _window(1).model_copy(update={"raw": [], "error": "frames 16x16, model wants 32x32"})
    publisher.submit([_window(2), failed])
    assert [s.seq for s in all_scores(r, "cam")] == [2] * N


def test_cameras_do_not_wait_for_each_other(publisher_factory):
    r, make = publisher_factory
    publisher = make()
    publisher.submit([_window(2, "a"), _window(1, "b")])
    assert r.xlen(keys.score_stream_key("a")) == 0
    assert r.xlen(keys.score_stream_key("b")) == N

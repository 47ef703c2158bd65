"""Event-level metrics on hand-made labels and alerts: recall, false alerts, delay, normal time in alerts, chance."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluate.events import AlertSpan, event_metrics


def _labels(n: int, *spans: tuple[int, int]) -> np.ndarray:
    y = np.zeros(n, dtype=np.uint8)
    for a, b in spans:
        y[a:b] = 1
    return y


def test_events_detection_delay_and_false_alerts() -> None:
    # Two videos of 100 frames: video a has events [20, 40) and [60, 70); video b one event [10, 30).
    labels = [_labels(100, (20, 40), (60, 70)), _labels(100, (10, 30))]
    alerts = [
        AlertSpan(25, 45, 28),  # detects a's first event 8 frames late, runs 6 frames into normal time
        AlertSpan(80, 90, 84),  # overlaps nothing: a false alert, 11 normal frames
        AlertSpan(95, 115, 99),  # opened in a's normal tail, still open when b's event starts: delay 0
    ]
    r = event_metrics(labels, alerts, fps=10.0, mode="stream", names=["a", "b"])
    assert (r.events, r.detected, r.recall) == (3, 2, pytest.approx(2 / 3))
    assert (r.alerts, r.false_alerts) == (3, 1)
    assert r.missed == ["a:60-69"]
    assert r.normal_frames == 200 - 50
    assert r.false_alerts_per_hour == pytest.approx(1 / (150 / 10 / 3600))
    assert r.normal_in_alerts == pytest.approx((6 + 11 + 5 + 10) / 150)  # a: 40-45, 80-90, 95-99; b: 0-9
    assert (r.delay_median_frames, r.delay_median_s) == (4.0, 0.4)  # delays 8 and 0
    assert r.delay_p90_frames == pytest.approx(7.2)
    assert 0.0 < r.chance_recall < 1.0
    assert 0.0 < r.chance_normal_in_alerts < 1.0


def test_no_alerts_and_no_events() -> None:
    r = event_metrics([_labels(50)], [], fps=25.0, mode="per-video", names=["x"])
    assert (r.events, r.recall, r.alerts, r.false_alerts, r.false_alerts_per_hour) == (0, None, 0, 0, 0.0)
    assert r.normal_in_alerts == 0.0
    assert r.delay_median_frames is None
    assert r.chance_recall is None


def test_chance_floor_of_an_alert_covering_everything_is_everything() -> None:
    labels = [_labels(100, (40, 60))]
    r = event_metrics(labels, [AlertSpan(0, 99, 0)], fps=10.0, mode="stream", names=["x"])
    assert (r.recall, r.normal_in_alerts, r.false_alerts) == (1.0, 1.0, 0)
    assert (r.chance_recall, r.chance_normal_in_alerts) == (1.0, 1.0)

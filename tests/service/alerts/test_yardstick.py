"""The alert yardstick (service/alerts/yardstick.py): pseudo events whose signal stands out of the camera's normal
footage are alerted on at the shipped settings, with no false alert; a signal that is noise finds few of them."""

from __future__ import annotations

import numpy as np

from models.calibration import fit_calibration
from models.evaluate.pseudo import pseudo_set
from service.alerts.yardstick import pseudo_alerts
from tests.models.evaluate.test_pseudo import _walkers

CONTEXT, FPS = 4, 10.0


def _set_and_normal() -> tuple[list, list[np.ndarray], np.random.Generator]:
    # 8 minutes of normal footage for the reference (as a camera's training videos), 2 held-out videos with events
    videos = pseudo_set([("a", _walkers(200, seed=0)), ("b", _walkers(200, seed=1))], repeats=3)
    rng = np.random.default_rng(0)
    normal = [rng.normal(0, 1, (600, 1)) for _ in range(8)]
    return videos, normal, rng


def test_events_that_stand_out_are_alerted_and_normal_footage_is_not() -> None:
    videos, normal, rng = _set_and_normal()
    card = fit_calibration(np.concatenate(normal[:2]), ["s"])
    raw = [(v.labels[CONTEXT:] * 6.0 + rng.normal(0, 1, len(v.labels) - CONTEXT))[:, None] for v in videos]
    got = pseudo_alerts(card, normal, raw, videos, CONTEXT, FPS)
    assert got["events"] == sum(1 for v in videos if "+" in v.name) == 12  # 2 videos x 3 repeats x 2 kinds
    assert got["recall"] >= 0.9
    assert got["recall_fast"] >= 0.8
    assert got["recall_object"] >= 0.8
    assert "recall_shape" not in got  # not injected
    assert got["false_alerts_per_hour"] == 0
    assert got["normal_in_alerts"] < 0.05
    assert got["delay_median_s"] is not None
    assert got["delay_median_s"] < 3.0


def test_a_signal_that_is_noise_finds_few_events() -> None:
    videos, normal, rng = _set_and_normal()
    card = fit_calibration(np.concatenate(normal[:2]), ["s"])
    raw = [rng.normal(0, 1, (len(v.labels) - CONTEXT, 1)) for v in videos]
    got = pseudo_alerts(card, normal, raw, videos, CONTEXT, FPS)
    assert got["recall"] <= 0.25

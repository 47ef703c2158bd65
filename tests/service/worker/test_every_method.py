"""Every registered method, at its tiny preset, served by the real worker: live windows from the bus come back as
calibrated scores for every frame, in order, equal to scoring the same frames offline (`vigil score`'s path)."""

from __future__ import annotations

import numpy as np
import pytest
import redis
import torch

from models import create_method, get_method, list_methods
from models.calibration import fit_calibration
from models.data.transforms import prepare
from models.inference import score_frames
from models.io import build_card, save_model
from models.store import ModelStore
from service.bus import topics
from tests.calibration_util import offline_scores
from tests.service.worker.helpers import all_scores, running_worker, wait_for, worker_settings
from tests.service.worker.models_util import make_windows
from tests.synthetic import render_frames

SCORED = 20  # frames scored per camera: 3 windows of 8, 8 and 4


@pytest.mark.parametrize("name", list_methods())
def test_method_scores_live_windows_in_the_worker(name, redis_url, tmp_path):
    torch.manual_seed(0)
    method = create_method(get_method(name).make_config("tiny")).eval()
    spec = method.input_spec
    ctx = spec.context
    normal = [prepare(render_frames(ctx + 24, (64, 64), None, seed=s)[0], spec) for s in (1, 2)]
    raw_normal = [score_frames(method, clip) for clip in normal]
    joined = np.concatenate(raw_normal).astype(np.float64)
    cal = fit_calibration(
        joined, list(method.signal_names), method.calibration_weights(joined), segments=[len(r) for r in raw_normal]
    )
    model = f"{name}-tiny"
    save_model(ModelStore(tmp_path), method, build_card(method, model, calibration=cal))
    frames = prepare(render_frames(ctx + SCORED, (64, 64), (ctx + 6, ctx + 14), seed=3)[0], spec)
    camera = f"every-{name}"
    r = redis.Redis.from_url(redis_url)
    for window in make_windows(camera, frames, ctx, model=model):
        topics.publish_window(r, window)
    with running_worker(worker_settings(redis_url, tmp_path)):
        wait_for(lambda: len(all_scores(r, camera)) >= SCORED, 120, f"{name} scores")
    scores = all_scores(r, camera)
    assert [s.frame for s in scores] == list(range(ctx, ctx + SCORED))
    assert {s.model for s in scores} == {f"{model}@v1"}
    assert all(0.0 <= s.score <= 1.0 for s in scores)
    expected = offline_scores(cal, f"{model}@v1", score_frames(method, frames).astype(np.float64)).scores
    np.testing.assert_allclose([s.score for s in scores], expected, atol=1e-4)

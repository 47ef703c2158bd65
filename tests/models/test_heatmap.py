"""Coarse, quantised maps (models/heatmap.py) and the scoring pass that makes them (models/inference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import create_method, get_method
from models.heatmap import coarse_maps, coarse_size, dequantize, quantize
from models.inference import score_frames, score_frames_with_maps


def test_coarse_size_keeps_the_aspect_and_never_upsamples() -> None:
    assert coarse_size(128, 128) == (32, 32)
    assert coarse_size(240, 360) == (21, 32)
    assert coarse_size(16, 8) == (16, 8)


def test_coarse_maps_are_area_averages() -> None:
    maps = torch.rand(2, 3, 64, 64)
    out = coarse_maps(maps, side=16)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, F.avg_pool2d(maps.reshape(6, 1, 64, 64), 4).reshape(2, 3, 16, 16))


def test_quantize_round_trip_keeps_small_values_apart() -> None:
    maps = np.stack([np.geomspace(1e-4, 1.0, 64).reshape(8, 8), np.zeros((8, 8))]).astype(np.float32)
    q, scale = quantize(maps)
    assert q.dtype == np.uint8
    assert scale.tolist() == [1.0, 0.0]
    assert q[0].max() == 255
    assert not q[1].any()
    back = dequantize(q, scale)
    np.testing.assert_allclose(back[0], maps[0], atol=2 * 1.0 / 255)  # amplitude steps of 1/255
    assert np.count_nonzero(q[0]) > 50  # a square-root scale keeps values 1e-3 of the max above 0


def test_scoring_with_maps_gives_the_same_signals_and_the_coarse_maps() -> None:
    torch.manual_seed(0)
    method = create_method(get_method("ffp").make_config("tiny")).eval()
    frames = np.random.default_rng(0).integers(0, 255, (4 + 20, 32, 32, 1), dtype=np.uint8)
    raw, maps = score_frames_with_maps(method, frames, window=8, side=8)
    np.testing.assert_allclose(raw, score_frames(method, frames, window=8), rtol=1e-6)
    assert maps.shape == (20, 8, 8)
    window = torch.from_numpy(frames[None]).permute(0, 1, 4, 2, 3).float() / 255  # one window over all frames
    with torch.no_grad():
        expected = coarse_maps(method.localize(window)[0], side=8).numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-7)
    gcl = create_method(get_method("gcl").make_config("tiny"))
    with pytest.raises(ValueError, match="no localisation map"):
        score_frames_with_maps(gcl, frames)

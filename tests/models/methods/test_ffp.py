"""ffp: the worst-patch signal next to the published whole-frame PSNR."""

from __future__ import annotations

import math

import pytest
import torch

from models import create_method, get_method
from models.components.losses import patch_psnr, psnr


def test_patch_psnr_is_the_psnr_of_the_worst_window() -> None:
    target = torch.zeros(1, 1, 32, 32)
    pred = target.clone()
    pred[0, 0, 8:16, 8:16] = 0.5  # one 8x8 object predicted badly: squared error 0.25 there
    frame = psnr(pred, target).item()
    assert frame == pytest.approx(10 * math.log10(1 / (0.25 * 64 / 1024)))
    # 8x8 windows at stride 4: one window covers the object exactly.
    assert patch_psnr(pred, target, 8).item() == pytest.approx(10 * math.log10(1 / 0.25))
    assert patch_psnr(pred, target, 16).item() < frame  # larger windows dilute it, less than the whole frame does
    assert patch_psnr(pred, target, 64).item() == pytest.approx(frame)  # a window larger than the frame is the frame


def test_signals_are_chosen_in_the_config() -> None:
    torch.manual_seed(0)
    spec = get_method("ffp")
    method = create_method(spec.make_config("tiny", signals=("frame", "patch"), patch=8)).eval()
    assert method.signal_names == ("neg_psnr", "neg_patch_psnr")
    with torch.no_grad():
        out = method.score(torch.rand(2, 4 + 3, 1, 32, 32))
    assert out.shape == (2, 3, 2)
    assert (out[..., 1] >= out[..., 0]).all()  # the worst window is never better predicted than the frame
    assert create_method(spec.make_config("tiny")).signal_names == ("neg_psnr",)  # the published default

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


def _footage(frames: int, busy: tuple[slice, slice] | None, seed: int) -> torch.Tensor:
    """(1, frames, 1, 32, 32): a flat grey scene, with fresh noise every frame in the `busy` region (rows, cols)."""
    gen = torch.Generator().manual_seed(seed)
    window = torch.full((1, frames, 1, 32, 32), 0.5)
    if busy is not None:
        rows, cols = busy
        window[..., rows, cols] = torch.rand(window[..., rows, cols].shape, generator=gen)
    return window


def test_local_signal_weighs_an_error_by_how_calm_its_place_normally_is() -> None:
    torch.manual_seed(0)
    method = create_method(get_method("ffp").make_config("tiny", signals=("patch", "local"), patch=8)).eval()
    assert method.signal_names == ("neg_patch_psnr", "neg_patch_psnr_local")
    top_left, bottom_right = (slice(0, 12), slice(0, 12)), (slice(20, 32), slice(20, 32))
    with pytest.raises(ValueError, match="needs each window's normal level"):  # nothing fitted yet
        method.score(_footage(5, top_left, 0))
    normal = [_footage(4 + 8, top_left, seed) for seed in range(4)]  # people always pass in the top left
    method.fit_reference(normal)
    with torch.no_grad():
        levels = torch.cat([method._window_levels(*method._predict_window(w)) for w in normal])  # (32, 7, 7)
        torch.testing.assert_close(method.window_reference, torch.quantile(levels, 0.95, dim=0))
        usual, unusual = (method.score(_footage(4 + 3, where, 9))[0] for where in (top_left, bottom_right))
    # The worst window alone hardly tells the two apart; against each place's normal level the calm corner stands out.
    assert (unusual[:, 0] - usual[:, 0]).abs().max() < 1.0
    assert (unusual[:, 1] > usual[:, 1] + 5).all()


def test_contrast_signal_ignores_an_error_level_shared_by_the_whole_frame() -> None:
    method = create_method(get_method("ffp").make_config("tiny", signals=("patch", "contrast"), patch=8))
    assert method.signal_names == ("neg_patch_psnr", "neg_patch_psnr_contrast")
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 1, 32, 32, generator=gen)
    noise = torch.randn(1, 1, 32, 32, generator=gen)
    blob = torch.zeros(1, 1, 32, 32)
    blob[..., 20:28, 4:12] = 0.3  # one object predicted badly

    def signals(pred: torch.Tensor) -> tuple[float, float]:
        patch, contrast = (float(method._signal(s, pred, target)[0]) for s in ("patch", "contrast"))
        return patch, contrast

    quiet, noisy = signals(target + 0.01 * noise), signals(target + 0.04 * noise)  # 4x the error everywhere
    assert noisy[0] > quiet[0] + 10  # the worst window's -PSNR rises by about 12 dB ...
    assert abs(noisy[1] - quiet[1]) < 2  # ... its excess over the frame's median window hardly moves
    with_object = signals(target + 0.01 * noise + blob)
    assert with_object[1] > quiet[1] + 15  # the object stands out of the frame's own level
    levels = method._window_levels(target + blob, target).flatten(1)
    expected = levels.amax(dim=1) - levels.median(dim=1).values
    torch.testing.assert_close(method._signal("contrast", target + blob, target), expected)


def test_a_snapshot_without_a_reference_loads_and_a_fitted_one_round_trips() -> None:
    spec = get_method("ffp")
    plain = create_method(spec.make_config("tiny", signals=("patch",), patch=8))
    local = create_method(spec.make_config("tiny", signals=("patch", "local"), patch=8))
    local.load_state_dict(plain.state_dict(), strict=True)  # a training snapshot: the generator alone
    assert torch.isnan(local.window_reference).all()
    local.fit_reference([_footage(4 + 4, None, 0)])
    again = create_method(spec.make_config("tiny", signals=("patch", "local"), patch=8))
    again.load_state_dict(local.state_dict(), strict=True)
    torch.testing.assert_close(again.window_reference, local.window_reference)
    plain.fit_reference([])  # without the local signal there is nothing to fit, and no footage is needed

"""The contract every registered method meets, checked on CPU with its `tiny` preset (timm test_models style)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import create_method, get_method, list_methods
from models.base import AnomalyMethod
from models.io import build_card, load_model, save_model
from models.methods.flowmem import memory_spread
from models.store import ModelStore

NUM_SCORED = 3  # frames scored per window


def _tiny(name: str) -> AnomalyMethod:
    torch.manual_seed(0)
    return create_method(get_method(name).make_config("tiny")).eval()


def _window(method: AnomalyMethod, batch: int = 2) -> torch.Tensor:
    spec = method.input_spec
    generator = torch.Generator().manual_seed(1)
    shape = (batch, spec.context + NUM_SCORED, spec.channels, spec.height, spec.width)
    return torch.rand(shape, generator=generator)


def test_ffp_is_registered() -> None:
    assert "ffp" in list_methods()


@pytest.mark.parametrize("name", list_methods())
def test_presets_build_valid_configs(name: str) -> None:
    spec = get_method(name)
    presets = spec.config_cls.PRESETS  # type: ignore[attr-defined]
    assert {"paper", "small", "tiny"} <= set(presets)
    for preset in presets:
        config = spec.make_config(preset)
        assert config.name == name  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list_methods())
def test_score_shape_dtype_and_finite(name: str) -> None:
    method = _tiny(name)
    with torch.no_grad():
        out = method.score(_window(method))
    assert out.shape == (2, NUM_SCORED, len(method.signal_names))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_methods())
def test_eval_mode_is_deterministic(name: str) -> None:
    method = _tiny(name)
    window = _window(method)
    with torch.no_grad():
        torch.testing.assert_close(method.score(window), method.score(window), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_methods())
def test_window_with_wrong_size_is_rejected(name: str) -> None:
    method = _tiny(name)
    spec = method.input_spec
    wrong = torch.rand(1, spec.context + 1, spec.channels, spec.height + 8, spec.width)
    with pytest.raises(ValueError, match="expects"):
        method.score(wrong)


@pytest.mark.parametrize("name", list_methods())
def test_store_round_trip_gives_identical_outputs(name: str, tmp_path: Path) -> None:
    method = _tiny(name)
    window = _window(method)
    store = ModelStore(tmp_path)
    version = save_model(store, method, build_card(method, f"{name}-contract"))
    loaded, card, _ = load_model(store, version.ref)
    assert card.method == name
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(window), method.score(window), rtol=0, atol=0)


# --- localisation maps (issue 11: heatmaps) --------------------------------------------------------------------
MAP_METHODS = [n for n in list_methods() if get_method(n).localizes]


def test_the_pixel_error_methods_have_maps() -> None:
    assert set(MAP_METHODS) == {"ffp", "dast", "f2lm", "flowmem"}


@pytest.mark.parametrize("name", list_methods())
def test_localizes_flag_matches_the_registration(name: str) -> None:
    method = _tiny(name)
    assert method.localizes is get_method(name).localizes
    if not method.localizes:  # methods without a map say so instead of returning something
        with pytest.raises(NotImplementedError, match="no localisation map"):
            method.localize(_window(method))


@pytest.mark.parametrize("name", MAP_METHODS)
def test_maps_have_the_input_shape_and_come_with_the_same_signals(name: str) -> None:
    method = _tiny(name)
    window = _window(method)
    spec = method.input_spec
    with torch.no_grad():
        signals, maps = method.score_with_maps(window)
        torch.testing.assert_close(signals, method.score(window))
    assert maps.shape == (2, NUM_SCORED, spec.height, spec.width)
    assert maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert (maps >= 0).all()
    # The map is the frame error per pixel: its mean is the frame-level error the first signal scores.
    if name in ("ffp", "dast"):  # neg_psnr = 10 log10(mse)
        torch.testing.assert_close(signals[..., 0], 10 * torch.log10(maps.mean(dim=(2, 3))), rtol=1e-4, atol=1e-4)
    elif name == "f2lm":  # pred_mse (Destroyer untrained)
        torch.testing.assert_close(signals[..., 0], maps.mean(dim=(2, 3)), rtol=1e-4, atol=1e-6)
    else:  # flowmem: the hottest cell is the scene's largest distance of either kind, in its memory's spread
        spreads = torch.stack([memory_spread(method.motion_memory), memory_spread(method.appearance_memory)])
        torch.testing.assert_close(maps.amax(dim=(2, 3)), (signals / spreads).amax(dim=2).square())


@pytest.mark.parametrize("name", MAP_METHODS)
def test_maps_are_higher_where_the_frame_is_anomalous(name: str) -> None:
    """A checkerboard patch in a flat frame: whatever the (untrained) model predicts there, the patch's squared error
    is larger by about 0.25, and the rest of the frame hardly changes."""
    method = _tiny(name)
    spec = method.input_spec
    t = spec.context + NUM_SCORED
    clean = torch.full((1, t, spec.channels, spec.height, spec.width), 0.5)
    odd = clean.clone()
    h0, w0, side = spec.height // 4, spec.width // 2, spec.height // 4
    board = (torch.arange(side)[:, None] + torch.arange(side)[None, :]) % 2  # (side, side) 0/1
    odd[0, -1, :, h0 : h0 + side, w0 : w0 + side] = board.float()  # in the last scored frame only
    with torch.no_grad():
        gain = (method.localize(odd) - method.localize(clean))[0, -1]  # (H, W)
    inside = torch.zeros_like(gain, dtype=torch.bool)
    inside[h0 : h0 + side, w0 : w0 + side] = True
    assert gain[inside].mean() > 0.1
    assert gain[inside].mean() > 5 * gain[~inside].abs().mean()

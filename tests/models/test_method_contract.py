"""The contract every registered method meets, checked on CPU with its `tiny` preset (timm test_models style)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import create_method, get_method, list_methods
from models.base import AnomalyMethod
from models.io import build_card, load_model, save_model
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

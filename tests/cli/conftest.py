"""A model registry holding a tiny registered FFP with a real calibration, for the `vigil eval`/`vigil score` tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import models
from models.calibration import fit_calibration
from models.data.datasets import open_dataset
from models.inference import score_video
from models.io import build_card, save_model
from models.store import ModelStore


@pytest.fixture(autouse=True)
def short_learning(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The synthetic training split has about 100 frames: let a camera learn its reference from that few."""
    from service.settings import get_settings

    monkeypatch.setenv("VIGIL_CALIBRATION__MIN_LEARN_FRAMES", "50")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path) -> Path:
    """<tmp>/registry with `tiny@v1` (untrained tiny FFP, calibrated on the synthetic training videos)."""
    if "ffp" not in models.list_methods():
        pytest.skip("the ffp method is not registered in this checkout")
    method = models.create_method(models.get_method("ffp").make_config("tiny")).eval()
    train = open_dataset(synthetic_dataset, "train")
    raws = [score_video(method, v.reader)[1] for v in train]  # (N_i - context, S) each
    cal = fit_calibration(
        np.concatenate(raws).astype(np.float64),
        list(method.signal_names),
        segments=[len(r) for r in raws],
        source="synthetic training videos",
    )
    root = tmp_path_factory.mktemp("registry")
    save_model(ModelStore(root), method, build_card(method, "tiny", calibration=cal))
    uncalibrated = build_card(method, "raw-only")
    save_model(ModelStore(root), method, uncalibrated)
    return root

"""Worker test fixtures: a registry holding a tiny trained, calibrated FFP, and the synthetic clip prepared for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.transforms import prepare
from models.store import ModelStore
from tests.service.worker.models_util import MODEL, TrainedModel, decode, register_version


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """Registry with `tiny@v1`, promoted to production."""
    root = tmp_path_factory.mktemp("registry")
    model = register_version(root, seed=100)
    ModelStore(root).promote(f"{MODEL}@v1")
    return model


@pytest.fixture(scope="session")
def clip_frames(synthetic_video: tuple[Path, np.ndarray], trained_store: TrainedModel) -> np.ndarray:
    """The synthetic clip decoded with PyAV and prepared for the tiny model: (64, 32, 32, 1) uint8."""
    path, _ = synthetic_video
    return prepare(decode(path), trained_store.method.input_spec)

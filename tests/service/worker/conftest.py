"""Worker test fixtures: the synthetic clip prepared for the shared tiny FFP (`trained_store`, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.transforms import prepare
from tests.service.worker.models_util import TrainedModel, decode


@pytest.fixture(scope="session")
def clip_frames(synthetic_video: tuple[Path, np.ndarray], trained_store: TrainedModel) -> np.ndarray:
    """The synthetic clip decoded with PyAV and prepared for the tiny model: (64, 32, 32, 1) uint8."""
    path, _ = synthetic_video
    return prepare(decode(path), trained_store.method.input_spec)

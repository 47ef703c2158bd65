"""Fixtures for trainer tests: the tiny FFP config pointed at the synthetic Ped2-layout dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models.train.config import TrainConfig, load_train_config

TINY_YAML = Path(__file__).resolve().parents[3] / "models" / "configs" / "ffp_tiny.yaml"

MakeConfig = Callable[..., TrainConfig]


@pytest.fixture
def make_config(synthetic_dataset: Path, tmp_path: Path) -> MakeConfig:
    """Build the tiny config for this test: `make_config("steps=4", out="a")` -> runs under tmp_path/a."""

    def make(*overrides: str, out: str = "run") -> TrainConfig:
        base = [
            f"data.root={synthetic_dataset}",
            f"out_dir={tmp_path / out}",
            f"register.registry={tmp_path / 'registry'}",
        ]
        return load_train_config(TINY_YAML, [*base, *overrides])

    return make

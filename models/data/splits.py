"""Video-level splits for the unsupervised / weakly supervised methods (e.g. models/splits/ped2_weak.yaml)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.data.datasets import open_dataset
from models.errors import DatasetError

SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"


class TrainVideos(BaseModel):
    model_config = ConfigDict(extra="forbid")
    normal: list[str] = Field(min_length=1)
    anomalous: list[str] = Field(default_factory=list)  # video-level label 1; frame labels are never used


class WeakSplit(BaseModel):
    """Which videos train, calibrate (held-out normal) and test; the three sets must not overlap."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    train: TrainVideos
    calibration: list[str] = Field(min_length=1)
    test: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _disjoint(self) -> WeakSplit:
        groups = {
            "train": self.train_videos,
            "calibration": self.calibration,
            "test": self.test,
        }
        seen: dict[str, str] = {}
        for group, videos in groups.items():
            for video in videos:
                if video in seen:
                    msg = f"video {video!r} is in both {seen[video]!r} and {group!r}; the split must be disjoint"
                    raise ValueError(msg)
                seen[video] = group
        return self

    @property
    def train_videos(self) -> list[str]:
        return [*self.train.normal, *self.train.anomalous]


def load_split(path: str | Path) -> WeakSplit:
    """Read a split YAML; a bare name such as 'ped2_weak' means models/splits/<name>.yaml."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path = SPLITS_DIR / f"{path.name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in SPLITS_DIR.glob("*.yaml"))
        msg = f"split file {path} not found; built-in splits: {known}"
        raise DatasetError(msg)
    try:
        return WeakSplit.model_validate(yaml.safe_load(path.read_text()))
    except (ValidationError, yaml.YAMLError) as e:
        msg = f"invalid split file {path}: {e}"
        raise DatasetError(msg) from e


def read_test_labels(dataset: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Frame labels of a split's test videos ("test/07" -> the labels of test video 07); only these are read."""
    wanted = {k.split("/", 1)[1] for k in keys if k.startswith("test/")}
    labels = {f"test/{v.name}": v.labels for v in open_dataset(dataset, "test") if v.name in wanted}
    missing = [k for k in keys if k not in labels or labels[k] is None]
    if missing:
        msg = f"no frame labels for {missing} under {dataset}; the split's test videos must be labelled test videos"
        raise DatasetError(msg)
    return {k: v for k, v in labels.items() if v is not None}

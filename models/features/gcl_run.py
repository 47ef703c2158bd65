"""Train `gcl` on cached snippet features over a weak split, calibrate, evaluate both protocols and register it.

The CPU path for GCL: I3D runs once per video (`vigil features extract`), then G and D train on the cached
features in seconds. Snippet signals are repeated over their 16 frames and the frame labels truncated to
16 x snippets per video (METHODS.md B.0). Paper protocol for GCL: the raw per-frame signal, no per-video
normalisation (GCL outputs probabilities); online protocol: the card's calibration fitted on the split's
held-out normal videos, causal EMA.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.card import Calibration
from models.data.datasets import dataset_fingerprint, open_dataset
from models.errors import DatasetError
from models.evaluate.protocols import snippet_metrics
from models.features.cache import FeatureCache, FeatureCacheError
from models.features.extract import SNIPPET_FRAMES
from models.features.split import WeakSplit, load_split
from models.io import build_card, save_model, sha256_file
from models.methods.gcl import Gcl, GclConfig
from models.store import ModelStore
from models.train.config import TrainConfig
from models.train.finish import fit_on_videos, register_run
from models.train.objectives.gcl import GclObjective, load_backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureRun:
    steps: int = 600
    batch_size: int = 128  # snippets per step; pseudo-labels use this batch's statistics
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    seed: int = 0


def check_cache(cache: FeatureCache, method: Gcl) -> None:
    """The cache must hold features of exactly the backbone inside `method` (same weights file)."""
    cfg = method.config
    if cache.index.feature_dim != cfg.feature_dim:
        msg = f"the cache holds {cache.index.feature_dim}-d features but gcl expects feature_dim={cfg.feature_dim}"
        raise FeatureCacheError(msg)
    if cfg.backbone_weights is not None:
        digest = sha256_file(Path(cfg.backbone_weights))
        if digest != cache.index.weights_sha256:
            msg = (
                f"the cache was made with backbone weights sha256 {cache.index.weights_sha256}, but "
                f"{cfg.backbone_weights} has {digest}; extract the features again with these weights"
            )
            raise FeatureCacheError(msg)


def fit(objective: GclObjective, features: torch.Tensor, run: FeatureRun) -> dict[str, float]:
    """`run.steps` steps on random batches of the (N, D) training features; returns the last losses."""
    generator = torch.Generator().manual_seed(run.seed)
    batch = min(run.batch_size, features.shape[0])
    logs: dict[str, float] = {}
    for _ in range(run.steps):
        index = torch.randperm(features.shape[0], generator=generator)[:batch]
        logs = objective.step_features(features[index])
    return logs


@torch.no_grad()
def frame_signals(method: Gcl, features: torch.Tensor) -> np.ndarray:
    """(S, D) snippet features -> (16 * S, num_signals) per-frame raw signals."""
    method.eval()
    signals = method.snippet_signals(features).double().numpy()  # (S, num_signals)
    return np.repeat(signals, SNIPPET_FRAMES, axis=0)


def read_test_labels(dataset: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Frame labels of the split's test videos (only these are ever read)."""
    wanted = {k.split("/", 1)[1] for k in keys if k.startswith("test/")}
    labels = {f"test/{v.name}": v.labels for v in open_dataset(dataset, "test") if v.name in wanted}
    missing = [k for k in keys if k not in labels or labels[k] is None]
    if missing:
        msg = f"no frame labels for {missing} under {dataset}; the split's test videos must be labelled test videos"
        raise DatasetError(msg)
    return {k: v for k, v in labels.items() if v is not None}


def evaluate_features(
    method: Gcl, cache: FeatureCache, keys: list[str], labels: dict[str, np.ndarray], calibration: Calibration
) -> dict[str, Any]:
    """Micro/macro AUC and EER: paper protocol per raw signal (no normalisation) and the online protocol."""
    raw = [frame_signals(method, cache.load(k)) for k in keys]  # causal per snippet: both protocols see the same
    return snippet_metrics(list(method.signal_names), keys, labels, raw, raw, calibration)


def run_gcl(
    config: GclConfig, cache: FeatureCache, split: WeakSplit, dataset: Path, run: FeatureRun
) -> tuple[Gcl, dict[str, Any], Calibration]:
    """Train on the split's training videos, calibrate on its normal held-out videos, evaluate on its test videos."""
    torch.manual_seed(run.seed)
    method = Gcl(config)
    check_cache(cache, method)
    load_backbone(method)
    train = torch.cat([cache.load(k) for k in split.train_videos])  # (N, D)
    objective = GclObjective(method, run.steps, run.lr_g, run.lr_d, (0.9, 0.999))
    started = time.monotonic()
    losses = fit(objective, train, run)
    train_s = time.monotonic() - started
    calibration, _ = fit_on_videos(
        method,
        [frame_signals(method, cache.load(k)) for k in split.calibration],
        source=f"held-out normal videos {', '.join(split.calibration)} of {split.dataset} (I3D feature cache)",
        too_short=f"calibration videos {split.calibration} are shorter than one snippet",
    )
    metrics = {
        "train": {
            "snippets": int(train.shape[0]),
            "videos": split.train_videos,
            "steps": run.steps,
            "batch_size": run.batch_size,
            "train_time_s": round(train_s, 2),
            "losses": losses,
            "device": "cpu",
        },
        "test": evaluate_features(method, cache, split.test, read_test_labels(dataset, split.test), calibration),
    }
    return method.eval(), metrics, calibration


def register(method: Gcl, name: str, registry: Path, metrics: dict[str, Any], calibration: Calibration) -> str:
    card = build_card(method, name, calibration=calibration, metrics=metrics, notes="trained on cached I3D features")
    return save_model(ModelStore(registry), method, card).ref


def train_gcl_on_split(cfg: TrainConfig) -> tuple[str | None, dict[str, Any]]:
    """`vigil train` with data.split and data.features: `run_gcl` with the run's steps, batch, learning rates
    and seed, then registration as `register.name`."""
    if cfg.data.features is None or cfg.data.split is None:
        msg = "gcl with data.split trains on cached snippet features: set data.features (`vigil features extract`)"
        raise ValueError(msg)
    if cfg.resume is not None:
        msg = "feature-level gcl runs keep no checkpoints to resume; run again without resume"
        raise ValueError(msg)
    run = FeatureRun(
        steps=cfg.steps, batch_size=cfg.batch_size, lr_g=cfg.optim.lr_g, lr_d=cfg.optim.lr_d, seed=cfg.seed
    )
    split = load_split(cfg.data.split)
    config = cfg.method
    if not isinstance(config, GclConfig):
        msg = f"train_gcl_on_split trains gcl, got a {type(config).__name__}"
        raise TypeError(msg)
    method, metrics, calibration = run_gcl(config, FeatureCache.open(cfg.data.features), split, cfg.data.root, run)
    fingerprint = dataset_fingerprint(open_dataset(cfg.data.root, "train") + open_dataset(cfg.data.root, "test"))
    notes = f"vigil train (weak split {cfg.data.split}, I3D feature cache {cfg.data.features}): {cfg.steps} steps"
    return register_run(cfg, method, calibration, metrics, fingerprint, notes), metrics

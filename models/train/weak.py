"""`vigil train` for weakly supervised methods (vadclip): snippet-feature sequences of a weak split's videos with
video-level labels, then calibration on the split's held-out normal videos, evaluation, registration.

Selected by `data.split` in the training YAML; `data.features` (a feature cache) is optional, without it the
method's frozen backbone encodes each video once. Each step draws batch_size / 2 normal and batch_size / 2
anomalous training videos (VadCLIP's UCF-Crime sampling), as sequences of `visual_length` snippets. The runs
take seconds to minutes, so they keep no intermediate checkpoints: `resume` is refused.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.card import Calibration
from models.data.datasets import dataset_fingerprint, open_dataset
from models.evaluate.protocols import snippet_metrics
from models.features.cache import FeatureCache
from models.features.gcl_run import read_test_labels
from models.features.split import WeakSplit, load_split
from models.features.weak import (
    FeatureSource,
    WeakVideo,
    backbone_source,
    cache_source,
    online_signals,
    paper_signals,
    to_sequence,
    training_videos,
)
from models.methods.vadclip import Vadclip
from models.pretrained import clip as clip_weights
from models.pretrained.i3d import load_i3d_kinetics
from models.train.config import TrainConfig
from models.train.finish import fit_on_videos, register_run
from models.train.objectives.vadclip import VadclipObjective

log = logging.getLogger(__name__)


def load_backbone(method: Vadclip) -> None:
    """Put the user-given backbone weights into the method's frozen tower (CLIP image tower or Kinetics I3D)."""
    cfg = method.config
    if cfg.backbone == "i3d-random":
        return
    if cfg.backbone_weights is None:
        if cfg.clip_arch == clip_weights.TINY_ARCH and cfg.backbone == "clip":
            return  # the random test CLIP
        kind = "an open_clip safetensors checkpoint" if cfg.backbone == "clip" else "the converted Kinetics I3D"
        msg = f"vadclip with backbone={cfg.backbone} needs method.backbone_weights=PATH to {kind}"
        raise ValueError(msg)
    path = Path(cfg.backbone_weights)
    if method.visual is not None:
        clip = clip_weights.build_clip(cfg.clip_arch)
        clip_weights.load_clip_weights(clip, path, cfg.clip_arch)
        method.visual.load_state_dict(clip.visual.state_dict())
    elif method.i3d is not None:
        method.i3d.load_state_dict(load_i3d_kinetics(path).state_dict())


def _batch(videos: list[WeakVideo], length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    # Padding is masked in the adapter, so padding only to the longest video of the batch changes no result and
    # saves most of the work when videos are much shorter than visual_length (Ped2: about 10 of 256 snippets).
    length = min(length, max(v.features.shape[0] for v in videos))
    seqs = [to_sequence(v.features, length) for v in videos]
    features = torch.stack([s[0] for s in seqs]).to(device)
    valid = torch.stack([s[1] for s in seqs]).to(device)
    labels = torch.tensor([v.label for v in videos], device=device)
    return features, valid, labels


def fit(
    objective: VadclipObjective, videos: list[WeakVideo], cfg: TrainConfig, device: torch.device
) -> dict[str, float]:
    normal = [v for v in videos if v.label == 0]
    anomalous = [v for v in videos if v.label > 0]
    if not normal or not anomalous:
        msg = "weak supervision needs normal and anomalous training videos; the split lists train.normal and anomalous"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(cfg.seed)
    half = max(1, cfg.batch_size // 2)
    length = objective.method.config.visual_length
    means: dict[str, list[float]] = {}
    for step in range(cfg.steps):
        picks = [normal[i] for i in torch.randint(len(normal), (half,), generator=generator)]
        picks += [anomalous[i] for i in torch.randint(len(anomalous), (half,), generator=generator)]
        logs = objective.step_videos(*_batch(picks, length, device))
        if not all(np.isfinite(v) for v in logs.values()):
            msg = f"training diverged at step {step}: losses {logs}; lower optim.lr_g"
            raise FloatingPointError(msg)
        for k, v in logs.items():
            means[k] = [*means.get(k, [])[-(cfg.log_every - 1) :], v]
        if (step + 1) % cfg.log_every == 0:
            log.info("step %d/%d %s", step + 1, cfg.steps, " ".join(f"{k}={np.mean(v):.4f}" for k, v in means.items()))
    return {k: float(np.mean(v)) for k, v in means.items()}


def calibrate(method: Vadclip, split: WeakSplit, source: FeatureSource) -> Calibration:
    calibration, _ = fit_on_videos(
        method,
        [online_signals(method, source(k)) for k in split.calibration],
        source=f"held-out normal videos {', '.join(split.calibration)} of {split.dataset} (online history)",
        too_short=f"calibration videos {split.calibration} are shorter than one snippet",
    )
    return calibration


def evaluate(
    method: Vadclip, split: WeakSplit, source: FeatureSource, dataset: Path, calibration: Calibration
) -> dict[str, Any]:
    """Micro/macro AUC and EER on the split's test videos: paper protocol per raw signal, online protocol."""
    keys = split.test
    labels = read_test_labels(dataset, keys)  # first: a split without labelled test videos fails before scoring
    paper = [paper_signals(method, source(k)) for k in keys]
    online = [online_signals(method, source(k)) for k in keys]
    return snippet_metrics(list(method.signal_names), keys, labels, paper, online, calibration, online_raw=True)


def train_weak(cfg: TrainConfig, method: Vadclip, device: torch.device) -> tuple[str | None, dict[str, Any]]:
    """Train, calibrate, evaluate (when the test videos have frame labels) and register; -> (ref, metrics)."""
    if cfg.resume is not None:
        msg = "weakly supervised runs (data.split) keep no checkpoints to resume; run again without resume"
        raise ValueError(msg)
    assert cfg.data.split is not None
    split = load_split(cfg.data.split)
    load_backbone(method)
    method.to(device)
    if cfg.data.features is not None:
        source = cache_source(FeatureCache.open(cfg.data.features), method)
    else:
        source = backbone_source(method, cfg.data.root, device)
    videos = training_videos(split, source)
    objective = VadclipObjective(method, cfg.steps, lr=cfg.optim.lr_g)
    started = time.monotonic()
    losses = fit(objective, videos, cfg, device)
    train_s = time.monotonic() - started
    method = objective.finish()
    calibration = calibrate(method, split, source)
    metrics: dict[str, Any] = {
        "train": {
            "videos": [v.key for v in videos],
            "snippets": int(sum(v.features.shape[0] for v in videos)),
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "train_time_s": round(train_s, 2),
            "losses": losses,
            "device": str(device),
            "features": str(cfg.data.features) if cfg.data.features else "computed by the method's backbone",
            "split": cfg.data.split,
        },
    }
    metrics["test"] = evaluate(method, split, source, cfg.data.root, calibration)
    fingerprint = dataset_fingerprint(open_dataset(cfg.data.root, "train") + open_dataset(cfg.data.root, "test"))
    notes = f"vigil train (weak split {cfg.data.split}): {cfg.steps} steps"
    return register_run(cfg, method, calibration, metrics, fingerprint, notes), metrics

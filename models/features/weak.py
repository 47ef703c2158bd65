"""Snippet features of a weak split's videos, as sequences for VadCLIP, and its per-frame signals for both protocols.

Features come from a feature cache (`vigil features extract`) or, without one, from the method's own frozen
backbone run once per video (`Vadclip.encode_snippets`). Snippet-level signals are repeated over their 16
frames; the trailing frames % 16 of a video have none (METHODS.md B.0).
- Paper protocol: the video in consecutive chunks of `visual_length` snippets, every snippet seeing its whole
  chunk (non-causal, as the published test code).
- Online protocol: snippet j scored from the history j - history + 1 .. j only (what the live worker does).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data.datasets import LabeledVideo, open_dataset
from models.data.transforms import prepare, to_tensor
from models.errors import DatasetError
from models.features.cache import FeatureCache, FeatureCacheError
from models.features.extract import SNIPPET_FRAMES
from models.features.split import WeakSplit
from models.methods.vadclip import Vadclip

log = logging.getLogger(__name__)
FeatureSource = Callable[[str], torch.Tensor]  # "<split>/<video>" -> (snippets, dim)


@dataclass(frozen=True)
class WeakVideo:
    key: str
    features: torch.Tensor  # (snippets, dim)
    label: int  # class index: 0 normal, 1 anomalous (video level only)


def cache_source(cache: FeatureCache, method: Vadclip) -> FeatureSource:
    """Read features from a cache made with the same backbone kind and feature size as the method's."""
    cfg = method.config
    if cache.index.feature_dim != cfg.feature_dim:
        msg = (
            f"the feature cache at {cache.root} holds {cache.index.feature_dim}-d {cache.index.backbone} features "
            f"but vadclip with backbone {cfg.backbone} expects {cfg.feature_dim}-d; extract features with the "
            "method's backbone or pick the matching preset (e.g. preset=i3d for I3D features)"
        )
        raise FeatureCacheError(msg)
    if not cache.index.backbone.startswith(cfg.backbone.split("-")[0]):
        msg = f"the feature cache holds {cache.index.backbone} features but vadclip uses backbone {cfg.backbone}"
        raise FeatureCacheError(msg)
    return cache.load


def backbone_source(method: Vadclip, dataset: Path, device: torch.device) -> FeatureSource:
    """Compute features with the method's frozen backbone, once per video (kept in memory)."""
    videos: dict[str, LabeledVideo] = {}
    for split in ("train", "test"):
        videos.update({f"{split}/{v.name}": v for v in open_dataset(dataset, split)})
    computed: dict[str, torch.Tensor] = {}

    def load(key: str) -> torch.Tensor:
        if key not in computed:
            if key not in videos:
                msg = f"video {key!r} of the split is not in {dataset} (keys look like train/01, test/03)"
                raise DatasetError(msg)
            frames = to_tensor(prepare(videos[key].reader.read_all(), method.input_spec)).to(device)
            computed[key] = method.encode_snippets(frames).cpu()
            log.info("features %s: %d snippets", key, computed[key].shape[0])
        return computed[key]

    return load


def training_videos(split: WeakSplit, source: FeatureSource) -> list[WeakVideo]:
    normal = [WeakVideo(k, source(k), 0) for k in split.train.normal]
    anomalous = [WeakVideo(k, source(k), 1) for k in split.train.anomalous]
    empty = [v.key for v in [*normal, *anomalous] if v.features.shape[0] == 0]
    if empty:
        msg = f"videos {empty} are shorter than one {SNIPPET_FRAMES}-frame snippet"
        raise DatasetError(msg)
    return normal + anomalous


def to_sequence(features: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, dim) -> (length, dim) and (length,) validity: longer videos are averaged into `length` uniform bins
    (VadCLIP's training), shorter ones zero-padded."""
    count, dim = features.shape
    valid = torch.zeros(length, dtype=torch.bool)
    if count > length:
        bounds = np.linspace(0, count, length + 1).astype(int)  # truncated, as VadCLIP's int32 linspace
        out = torch.stack([features[a:b].mean(0) for a, b in itertools.pairwise(bounds)])
        valid[:] = True
        return out, valid
    out = torch.zeros(length, dim, dtype=features.dtype)
    out[:count] = features
    valid[:count] = True
    return out, valid


@torch.no_grad()
def paper_signals(method: Vadclip, features: torch.Tensor) -> np.ndarray:
    """(S, dim) -> (16 * S, signals): chunks of visual_length, each snippet seeing its whole chunk."""
    method.eval()
    length = method.config.visual_length
    parts = []
    for start in range(0, features.shape[0], length):
        chunk, valid = to_sequence(features[start : start + length], length)
        device = next(method.adapter.parameters()).device
        out = method.sequence_signals(chunk[None].to(device), valid[None].to(device))[0]
        parts.append(out[valid.to(device)].cpu())
    return _frames(torch.cat(parts) if parts else torch.zeros(0, len(method.signal_names)))


@torch.no_grad()
def online_signals(method: Vadclip, features: torch.Tensor) -> np.ndarray:
    """(S, dim) -> (16 * S, signals): snippet j from its causal history of at most `history` snippets."""
    method.eval()
    if features.shape[0] == 0:
        return np.zeros((0, len(method.signal_names)))
    device = next(method.adapter.parameters()).device
    features = features.to(device)
    history = method.history_snippets
    sequences = [features[max(0, j - history + 1) : j + 1] for j in range(features.shape[0])]
    return _frames(method.score_history(sequences).cpu())


def _frames(snippet_signals: torch.Tensor) -> np.ndarray:
    return np.repeat(snippet_signals.double().numpy(), SNIPPET_FRAMES, axis=0)

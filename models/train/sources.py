"""Where a run's batches come from, and the held-out normal videos its calibration is fitted on.

One data source per kind of batch an objective trains on (`models.train.objectives.DataKind`):
- `FrameClips`: clips of consecutive prepared frames of the dataset's training videos; the last `data.num_val`
  videos are held out for calibration (ffp, dast, f2lm, gcl on frames).
- `SnippetBatches`: random batches of snippet features of a split's training videos, labels unused (gcl).
- `WeakVideoBatches`: half normal, half anomalous training videos of a split, each as its snippet features and
  its video-level label (vadclip).
Features come from a feature cache (`data.features`, checked to be made by the method's backbone and weights
before anything is read) or from the method's frozen backbone, once per video.

Batch i of a run is a function of (seed, i) only, so a resumed run draws exactly the batches the uninterrupted
run would have drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from models.base import AnomalyMethod, SnippetFeatureMethod
from models.card import Calibration
from models.data.clips import ClipDataset, load_frames
from models.data.datasets import LabeledVideo, dataset_fingerprint, open_dataset, split_validation
from models.data.splits import load_split, read_test_labels
from models.data.transforms import prepare, to_tensor
from models.errors import DatasetError
from models.evaluate.protocols import snippet_frames, snippet_metrics
from models.features.cache import FeatureCache, FeatureCacheError
from models.inference import score_frames, video_windows
from models.io import sha256_file
from models.train.config import TrainConfig
from models.train.objectives import DataKind
from models.train.sampler import ResumableSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeakVideo:
    key: str  # "<split>/<video>"
    features: torch.Tensor  # (snippets, dim)
    label: int  # 0 normal, 1 anomalous (video level only)


@dataclass(frozen=True)
class HeldOut:
    """Raw signals (N_i, S) of each held-out normal video, for the calibration, and where they came from."""

    parts: list[np.ndarray]
    source: str
    too_short: str


class DataSource(Protocol):
    kind: DataKind
    root: str
    size: int  # items one epoch draws: clips, snippets or videos
    fingerprint: str  # of the dataset videos the run read
    fps: float | None  # frame rate of the held-out footage, for the card's default camera reference

    def batches(self, start_step: int) -> Iterator[Any]:
        """Batches from step `start_step` on, forever."""
        ...

    def summary(self) -> dict[str, Any]:
        """What the run trained on, for the card's metrics."""
        ...

    def held_out(self, method: AnomalyMethod, device: torch.device) -> HeldOut: ...

    def normal_windows(self, method: AnomalyMethod, device: torch.device) -> Iterator[torch.Tensor]:
        """Windows (1, context + N, C, H, W) of the training footage, for `AnomalyMethod.fit_reference` (lazily:
        a method with nothing to fit reads none)."""
        ...

    def test_metrics(self, method: AnomalyMethod, calibration: Calibration) -> dict[str, Any] | None:
        """Metrics on labelled test videos the split names (none for frame clips: `vigil eval` does that)."""
        ...


class FrameClips:
    """Clips of context + 1 frames of the training videos, drawn by a ResumableSampler."""

    kind: DataKind = "clips"

    def __init__(self, cfg: TrainConfig, method: AnomalyMethod, device: torch.device) -> None:
        videos = open_dataset(cfg.data.root, "train")
        if not videos:
            msg = f"{cfg.data.root} has no training videos"
            raise DatasetError(msg)
        train_videos, val_videos = split_validation(videos, cfg.data.num_val)
        spec = method.input_spec
        log.info("decoding %d training + %d validation videos at %dx%d", len(train_videos), len(val_videos), *spec.size)
        self.cfg, self.device = cfg, device
        self.train_names = [v.name for v in train_videos]
        self.clips = ClipDataset(load_frames(train_videos, spec), clip_len=spec.context + 1)
        self.size = len(self.clips)
        self.val_names = [v.name for v in val_videos]
        self.val_frames = load_frames(val_videos, spec)
        self.root = str(cfg.data.root)
        self.fingerprint = dataset_fingerprint(videos)
        self.fps: float | None = cfg.data.fps or val_videos[0].reader.fps

    def batches(self, start_step: int) -> Iterator[torch.Tensor]:
        cfg = self.cfg
        sampler = ResumableSampler(len(self.clips), cfg.seed, start=start_step * cfg.batch_size)
        loader = DataLoader(
            self.clips,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.num_workers > 0,
        )
        return iter(loader)

    def summary(self) -> dict[str, Any]:
        return {"videos": self.train_names, "clips": len(self.clips)}

    def held_out(self, method: AnomalyMethod, device: torch.device) -> HeldOut:
        need = method.input_spec.context + 1
        return HeldOut(
            parts=[score_frames(method, frames, device=device) for frames in self.val_frames],  # (N_i - context, S)
            source=f"held-out training videos {', '.join(self.val_names)} of {self.root}",
            too_short=f"validation videos {self.val_names} are too short to score: each needs at least {need} frames",
        )

    def normal_windows(self, method: AnomalyMethod, device: torch.device) -> Iterator[torch.Tensor]:
        return video_windows(self.clips.frames, method.input_spec.context, device=device)

    def test_metrics(self, method: AnomalyMethod, calibration: Calibration) -> dict[str, Any] | None:
        del method, calibration  # the training split has no labelled test videos; `vigil eval` scores those
        return None


def check_cache(cache: FeatureCache, method: SnippetFeatureMethod, name: str) -> None:
    """The cache must hold features of exactly the method's backbone (name, size and, when given, weights file)."""
    index = cache.index
    if index.backbone != method.feature_backbone or index.feature_dim != method.feature_dim:
        msg = (
            f"the feature cache {cache.root} holds {index.feature_dim}-d {index.backbone} features but {name} "
            f"reads {method.feature_dim}-d {method.feature_backbone} features: set data.features to a cache made "
            f"with that backbone (`vigil features extract`), or a method preset/backbone that reads {index.backbone}"
        )
        raise FeatureCacheError(msg)
    weights = method.backbone_weights
    digest = sha256_file(Path(weights)) if weights is not None and Path(weights).is_file() else None
    if digest is not None and digest != index.weights_sha256:
        msg = (
            f"the feature cache {cache.root} was made with backbone weights sha256 {index.weights_sha256[:12]}..., "
            f"but method.backbone_weights={weights} has {digest[:12]}...: extract the features again with these weights"
        )
        raise FeatureCacheError(msg)


class SplitVideoFeatures:
    """ "<split>/<video>" -> (snippets, D) features and the video's frame count: from the checked cache, or from the
    method's frozen backbone once per video."""

    def __init__(self, cfg: TrainConfig, method: SnippetFeatureMethod, device: torch.device) -> None:
        self.cache: FeatureCache | None = None
        self.videos: dict[str, LabeledVideo] = {}
        self.computed: dict[str, torch.Tensor] = {}
        self.method, self.device, self.root = method, device, cfg.data.root
        if cfg.data.features is not None:
            self.cache = FeatureCache.open(cfg.data.features)
            check_cache(self.cache, method, cfg.method_name)
            return
        for split in ("train", "test"):
            self.videos.update({f"{split}/{v.name}": v for v in open_dataset(cfg.data.root, split)})

    def _video(self, key: str) -> LabeledVideo:
        if key not in self.videos:
            msg = f"video {key!r} of the split is not in {self.root} (keys look like train/01, test/03)"
            raise DatasetError(msg)
        return self.videos[key]

    def load(self, key: str) -> torch.Tensor:
        if self.cache is not None:
            return self.cache.load(key)
        if key not in self.computed:
            spec = self.method.input_spec  # type: ignore[attr-defined]
            frames = to_tensor(prepare(self._video(key).reader.read_all(), spec)).to(self.device)
            with torch.inference_mode():
                self.computed[key] = self.method.encode_snippets(frames).cpu()
            log.info("features %s: %d snippets", key, self.computed[key].shape[0])
        return self.computed[key]

    def frames(self, key: str) -> int:
        if self.cache is not None:
            self.cache.load(key)  # the error for a video the cache lacks
            return self.cache.index.videos[key].frames
        return self._video(key).num_frames


class _SplitFeatures:
    """A split's videos as snippet features: its training videos, held-out normal videos and test videos."""

    kind: DataKind

    def __init__(self, cfg: TrainConfig, method: AnomalyMethod, device: torch.device) -> None:
        if not isinstance(method, SnippetFeatureMethod):
            msg = f"{cfg.method_name} does not score snippet features; train it on frame clips (remove data.split)"
            raise TypeError(msg)
        assert cfg.data.split is not None  # the config's data_kind checked it
        self.cfg, self.split = cfg, load_split(cfg.data.split)
        self.videos = SplitVideoFeatures(cfg, method, device)
        self.train = [WeakVideo(k, self.videos.load(k), 0) for k in self.split.train.normal]
        self.train += [WeakVideo(k, self.videos.load(k), 1) for k in self.split.train.anomalous]
        empty = [v.key for v in self.train if v.features.shape[0] == 0]
        if empty:
            msg = f"videos {empty} are shorter than one {method.snippet_frames}-frame snippet"
            raise DatasetError(msg)
        self.root = str(cfg.data.root)
        root = cfg.data.root
        self.fingerprint = dataset_fingerprint(open_dataset(root, "train") + open_dataset(root, "test"))
        self.fps: float | None = cfg.data.fps
        self.features = str(cfg.data.features) if cfg.data.features else "computed by the method's backbone"

    def summary(self) -> dict[str, Any]:
        return {
            "videos": [v.key for v in self.train],
            "snippets": int(sum(v.features.shape[0] for v in self.train)),
            "features": self.features,
            "split": self.cfg.data.split,
        }

    def normal_windows(self, method: AnomalyMethod, device: torch.device) -> Iterator[torch.Tensor]:
        del method, device  # snippet features are not frame windows: no method trained on them fits a reference
        return iter(())

    def _signals(self, method: SnippetFeatureMethod, key: str, causal: bool) -> np.ndarray:
        """(S, signals) of one video's snippets."""
        with torch.inference_mode():
            return method.feature_signals(self.videos.load(key), causal=causal).cpu().double().numpy()

    def held_out(self, method: AnomalyMethod, device: torch.device) -> HeldOut:
        del device  # features are already computed
        assert isinstance(method, SnippetFeatureMethod)
        calibration = self.split.calibration
        snippet = method.snippet_frames
        return HeldOut(
            parts=[  # each snippet's signals on the frames after it ended, as live (snippet_frames causal)
                snippet_frames(self._signals(method, k, causal=True), self.videos.frames(k), snippet, causal=True)
                for k in calibration
            ],
            source=f"held-out normal videos {', '.join(calibration)} of {self.split.dataset} ({self.features})",
            too_short=f"calibration videos {calibration} are shorter than one snippet",
        )

    def test_metrics(self, method: AnomalyMethod, calibration: Calibration) -> dict[str, Any] | None:
        """Paper protocol per raw signal (the published, non-causal one) and the online protocol (causal)."""
        assert isinstance(method, SnippetFeatureMethod)
        keys = self.split.test
        labels = read_test_labels(self.cfg.data.root, keys)  # first: unlabelled test videos fail before scoring
        paper = [self._signals(method, k, causal=False) for k in keys]
        online = [self._signals(method, k, causal=True) for k in keys]
        names = list(method.signal_names)
        return snippet_metrics(names, keys, labels, paper, online, calibration, method.snippet_frames, online_raw=True)


class SnippetBatches(_SplitFeatures):
    """`batch_size` random snippets of all training videos per step (GCL's batch statistics need several)."""

    kind: DataKind = "snippets"

    def __init__(self, cfg: TrainConfig, method: AnomalyMethod, device: torch.device) -> None:
        super().__init__(cfg, method, device)
        self.pooled = torch.cat([v.features for v in self.train])  # (N, D), normal videos first
        self.size = int(self.pooled.shape[0])

    def batches(self, start_step: int) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.cfg.seed)
        count, batch = self.pooled.shape[0], min(self.cfg.batch_size, self.pooled.shape[0])
        for _ in range(start_step):  # replay the draws of the steps already taken
            torch.randperm(count, generator=generator)
        while True:
            yield self.pooled[torch.randperm(count, generator=generator)[:batch]]

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "snippets": int(self.pooled.shape[0])}


class WeakVideoBatches(_SplitFeatures):
    """batch_size / 2 normal and batch_size / 2 anomalous training videos per step (VadCLIP's UCF-Crime sampling)."""

    kind: DataKind = "videos"

    def __init__(self, cfg: TrainConfig, method: AnomalyMethod, device: torch.device) -> None:
        super().__init__(cfg, method, device)
        self.size = len(self.train)
        self.normal = [v for v in self.train if v.label == 0]
        self.anomalous = [v for v in self.train if v.label > 0]
        if not self.normal or not self.anomalous:
            msg = (
                f"weak supervision needs normal and anomalous training videos: list both train.normal and "
                f"train.anomalous in {cfg.data.split}"
            )
            raise DatasetError(msg)

    def batches(self, start_step: int) -> Iterator[list[WeakVideo]]:
        generator = torch.Generator().manual_seed(self.cfg.seed)
        half = max(1, self.cfg.batch_size // 2)

        def draw() -> list[WeakVideo]:
            picks = [self.normal[i] for i in torch.randint(len(self.normal), (half,), generator=generator)]
            return picks + [self.anomalous[i] for i in torch.randint(len(self.anomalous), (half,), generator=generator)]

        for _ in range(start_step):  # replay the draws of the steps already taken
            draw()
        while True:
            yield draw()


def open_source(cfg: TrainConfig, method: AnomalyMethod, device: torch.device) -> DataSource:
    """The data source of the run's data kind (config-checked against what the method's objective trains on)."""
    kinds: dict[DataKind, type[FrameClips | SnippetBatches | WeakVideoBatches]] = {
        "clips": FrameClips,
        "snippets": SnippetBatches,
        "videos": WeakVideoBatches,
    }
    return kinds[cfg.data_kind](cfg, method, device)

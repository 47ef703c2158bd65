"""Snippet features of a whole dataset, computed once per video into a cache (`vigil features extract`).

I3D: one feature per non-overlapping 16-frame snippet.

Preprocessing (the same in `vigil features extract` and in the `gcl` method's live path): the whole frame
is resized to the backbone's input size (224x224 for Kinetics I3D) with `models.data.transforms.prepare`
(INTER_AREA when shrinking), with no crop, so nothing at the edge of the scene is lost; Ped2's 360x240
frames are squeezed horizontally. Then BGR -> RGB and [0, 1] -> [-1, 1], as the TF/flax I3D expects. The
trailing frames % 16 of a video get no feature (the snippet protocol of METHODS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.components.i3d import InceptionI3d, snippet_features
from models.data.datasets import open_dataset
from models.data.transforms import prepare, to_tensor
from models.features.cache import FeatureCache, FeatureIndex
from models.types import SNIPPET_FRAMES, InputSpec

log = logging.getLogger(__name__)

PREPROCESSING = "whole frame resized to {size}x{size} (INTER_AREA when shrinking, no crop), BGR->RGB, [-1, 1]"


def i3d_encoder(backbone: InceptionI3d, batch_size: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """The `encode` of `extract_dataset` for an I3D: frames -> features of non-overlapping snippets."""
    backbone.eval()
    return lambda frames: snippet_features(backbone, frames, SNIPPET_FRAMES, batch_size)


def feature_index(backbone: InceptionI3d, size: int, weights_sha256: str, name: str) -> FeatureIndex:
    return FeatureIndex(
        backbone=name,
        feature_dim=backbone.feature_dim,
        snippet_frames=SNIPPET_FRAMES,
        weights_sha256=weights_sha256,
        preprocessing=PREPROCESSING.format(size=size),
    )


def extract_dataset(
    dataset: Path,
    cache: FeatureCache,
    encode: Callable[[torch.Tensor], torch.Tensor],
    size: int,
    splits: tuple[str, ...] = ("train", "test"),
    progress: Callable[[str, int], object] | None = None,
) -> int:
    """Fill `cache` with the features of every video of `splits`; videos already cached are skipped.

    `encode` maps a video's (N, 3, size, size) BGR frames in [0, 1] to (N // 16, dim) snippet features
    (`i3d_encoder`, or `Vadclip.encode_snippets` for CLIP). Returns the number of videos computed now.
    Keys are "<split>/<video name>".
    """
    spec = InputSpec(height=size, width=size, channels=3, context=0)
    computed = 0
    for split in splits:
        for video in open_dataset(dataset, split):  # type: ignore[arg-type]
            key = f"{split}/{video.name}"
            if key in cache:
                continue
            frames: np.ndarray = video.reader.read_all()
            with torch.inference_mode():
                features = encode(to_tensor(prepare(frames, spec)))
            cache.write(key, features, frames=len(frames))
            computed += 1
            log.info("features %s: %d frames -> %d snippets", key, len(frames), features.shape[0])
            if progress is not None:
                progress(key, int(features.shape[0]))
    return computed

"""On-disk snippet-feature cache: one safetensors file of (snippets, dim) float32 per video plus `index.json`.

Layout: `<root>/index.json` and `<root>/<split>/<video>.safetensors` (tensor "features"). The index records
the backbone, the feature dimension, the snippet length and the sha256 of the backbone weights, so a cache
made with other weights or another backbone is refused instead of silently mixed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.errors import DatasetError

INDEX_FILE = "index.json"


class FeatureCacheError(DatasetError):
    """A feature cache that is missing, incomplete, or made for another backbone or feature dimension."""


class CachedVideo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str  # relative to the cache root
    frames: int = Field(ge=0)  # frames in the source video; the last frames % snippet_frames have no feature
    snippets: int = Field(ge=0)


class FeatureIndex(BaseModel):
    """What the cache holds and how it was made."""

    model_config = ConfigDict(extra="forbid")
    backbone: str  # e.g. "i3d-kinetics-400"
    feature_dim: int = Field(gt=0)
    snippet_frames: int = Field(gt=0)
    weights_sha256: str  # of the backbone weights file; "random:<seed>" for an untrained test backbone
    preprocessing: str  # human-readable: resize, colour order, value range
    videos: dict[str, CachedVideo] = Field(default_factory=dict)  # key "<split>/<video>"


class FeatureCache:
    """Read and write one cache directory; writes are atomic per video so an interrupted run resumes."""

    def __init__(self, root: Path, index: FeatureIndex) -> None:
        self.root = root
        self.index = index

    @classmethod
    def create_or_open(cls, root: Path, template: FeatureIndex) -> FeatureCache:
        """Open `root` if it was made the same way as `template` (same backbone, weights, dim), else start it."""
        if (root / INDEX_FILE).is_file():
            cache = cls.open(root)
            made = cache.index.model_dump(exclude={"videos"})
            if made != template.model_dump(exclude={"videos"}):
                msg = (
                    f"{root} holds features made differently ({made}); "
                    "use another --out directory or delete this one to recompute"
                )
                raise FeatureCacheError(msg)
            return cache
        root.mkdir(parents=True, exist_ok=True)
        cache = cls(root, template.model_copy(update={"videos": {}}))
        cache._write_index()
        return cache

    @classmethod
    def open(cls, root: Path, feature_dim: int | None = None) -> FeatureCache:
        """Open an existing cache; `feature_dim` (if given) must match what it holds."""
        path = root / INDEX_FILE
        if not path.is_file():
            msg = f"no feature cache at {root} ({INDEX_FILE} missing); create it with `vigil features extract`"
            raise FeatureCacheError(msg)
        try:
            index = FeatureIndex.model_validate_json(path.read_text())
        except ValidationError as e:
            msg = f"{path} is not a valid feature index: {e}"
            raise FeatureCacheError(msg) from e
        if feature_dim is not None and index.feature_dim != feature_dim:
            msg = (
                f"the cache at {root} holds {index.feature_dim}-d {index.backbone} features but the model expects "
                f"{feature_dim}-d; extract features with the matching backbone or set the method's feature_dim"
            )
            raise FeatureCacheError(msg)
        return cls(root, index)

    def keys(self, split: str | None = None) -> list[str]:
        return [k for k in self.index.videos if split is None or k.startswith(f"{split}/")]

    def __contains__(self, key: str) -> bool:
        return key in self.index.videos and (self.root / self.index.videos[key].file).is_file()

    def load(self, key: str) -> torch.Tensor:
        """(snippets, feature_dim) float32 features of one video."""
        if key not in self.index.videos:
            known = ", ".join(sorted(self.index.videos)[:8]) or "none"
            msg = f"the feature cache at {self.root} has no video {key!r}; it has {known} (`vigil features extract`)"
            raise FeatureCacheError(msg)
        entry = self.index.videos[key]
        path = self.root / entry.file
        try:
            features = load_file(str(path))["features"]
        except (SafetensorError, OSError, KeyError) as e:
            msg = f"cannot read cached features {path}: {e}; delete it and extract again"
            raise FeatureCacheError(msg) from e
        if tuple(features.shape) != (entry.snippets, self.index.feature_dim):
            msg = (
                f"{path} holds features of shape {tuple(features.shape)}, "
                f"the index says ({entry.snippets}, {self.index.feature_dim})"
            )
            raise FeatureCacheError(msg)
        return features

    def write(self, key: str, features: torch.Tensor, frames: int) -> None:
        """Store (snippets, feature_dim) features of the video `key` ("<split>/<name>") and update the index."""
        if features.ndim != 2 or features.shape[1] != self.index.feature_dim:
            msg = f"features must be (snippets, {self.index.feature_dim}), got {tuple(features.shape)}"
            raise ValueError(msg)
        rel = f"{key}.safetensors"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"features": features.detach().float().contiguous().cpu()}, str(tmp))
        os.replace(tmp, path)
        self.index.videos[key] = CachedVideo(file=rel, frames=frames, snippets=int(features.shape[0]))
        self._write_index()

    def _write_index(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{INDEX_FILE}.")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.index.model_dump(mode="json"), indent=2))
        os.replace(tmp, self.root / INDEX_FILE)

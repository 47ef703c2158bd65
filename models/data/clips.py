"""Prepared frames held in memory and the clip dataset the trainer samples from."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from models.data.datasets import LabeledVideo
from models.data.transforms import prepare, to_tensor
from models.types import InputSpec


def load_frames(videos: list[LabeledVideo], spec: InputSpec) -> list[np.ndarray]:
    """Decode and prepare every video once: uint8 (N, spec.height, spec.width, spec.channels) per video."""
    return [prepare(video.reader.read_all(), spec) for video in videos]


class ClipDataset(Dataset[torch.Tensor]):
    """Clips of `clip_len` consecutive frames of one video, in order; starts every `stride` frames.

    Item: float32 (clip_len, C, h, w) in [0, 1]. Videos shorter than `clip_len` contribute no clips.
    """

    def __init__(self, frames: list[np.ndarray], clip_len: int, stride: int = 1) -> None:
        if clip_len < 1 or stride < 1:
            msg = f"clip_len and stride must be >= 1, got clip_len={clip_len}, stride={stride}"
            raise ValueError(msg)
        self.frames = frames
        self.clip_len = clip_len
        self.stride = stride
        # index -> (video, start), precomputed: (num_clips, 2) int64
        parts = [
            np.stack([np.full(len(starts), v), starts], axis=1)
            for v, f in enumerate(frames)
            if len(starts := np.arange(0, len(f) - clip_len + 1, stride)) > 0
        ]
        self.index = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
        if len(self.index) == 0:
            longest = max((len(f) for f in frames), default=0)
            msg = f"no clip of {clip_len} frames fits: the longest of {len(frames)} videos has {longest} frames"
            raise ValueError(msg)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            msg = f"clip index {i} out of range for {len(self)} clips"
            raise IndexError(msg)
        video, start = (int(x) for x in self.index[i])
        return to_tensor(self.frames[video][start : start + self.clip_len])

    def locate(self, i: int) -> tuple[int, int]:
        """(video index, start frame) of clip `i`."""
        video, start = self.index[i]
        return int(video), int(start)

"""F2LM's motion and "label" input streams: OpenCV optical flow and frozen EfficientNet-Lite0 feature maps.

Both are per-frame (or per consecutive pair) and deterministic, so they are computed once per frame and
gathered into the overlapping 4-frame inputs (`score`) or precomputed once per training video (the objective).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.pretrained.efficientnet_lite0 import load_pretrained

FlowAlgorithm = Literal["dis", "farneback"]


class FlowEstimator:
    """Dense optical flow between two gray uint8 frames, in pixels; counts its calls so caching can be checked.

    DIS (Kroeger et al. 2016, OpenCV's `DISOpticalFlow`, MEDIUM preset) is the default: about as fast as
    Farneback on CPU and more accurate on small moving objects. Neither matches FlowNet2-SD, which the paper uses.
    """

    def __init__(self, algorithm: FlowAlgorithm = "dis") -> None:
        self.algorithm = algorithm
        self.calls = 0
        self._dis: cv2.DISOpticalFlow | None = None

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """(H, W) uint8 x 2 -> (H, W, 2) float32 displacement (dx, dy) from `prev` to `nxt`."""
        self.calls += 1
        init = np.zeros((*prev.shape[:2], 2), dtype=np.float32)  # ignored: no initial-flow flag is set
        if self.algorithm == "farneback":
            flow = cv2.calcOpticalFlowFarneback(prev, nxt, init, 0.5, 3, 15, 3, 5, 1.2, 0)
        else:
            if self._dis is None:  # created lazily: OpenCV objects cannot be pickled or deep-copied
                self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            flow = self._dis.calc(prev, nxt, init)
        return np.asarray(flow, dtype=np.float32)

    def __deepcopy__(self, memo: dict[int, object]) -> FlowEstimator:
        return FlowEstimator(self.algorithm)


def to_gray_u8(frames: torch.Tensor) -> np.ndarray:
    """(M, C, H, W) float in [0, 1], C = 1 or 3 (BGR) -> (M, H, W) uint8 gray for OpenCV."""
    x = frames.detach().float().cpu()
    # ITU-R BT.601 luma on BGR, what cv2.COLOR_BGR2GRAY computes
    x = 0.114 * x[:, 0] + 0.587 * x[:, 1] + 0.299 * x[:, 2] if x.shape[1] == 3 else x[:, 0]
    return np.asarray((x * 255.0).round().clamp(0, 255).to(torch.uint8).numpy())


def consecutive_flows(frames: torch.Tensor, estimator: FlowEstimator, scale: float, step: int = 1) -> torch.Tensor:
    """(T, C, H, W) in [0, 1] -> (T-step, 2, H, W) float32, entry k = flow from frame k to k+step, divided by
    `scale`.

    Each pair is computed exactly once (T-step estimator calls), however many inputs share it.
    """
    gray = to_gray_u8(frames)
    flows = [estimator(gray[k], gray[k + step]) for k in range(len(gray) - step)]
    if not flows:
        return frames.new_zeros(0, 2, *frames.shape[-2:])
    out = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2) / scale  # (T-step, 2, H, W)
    return out.to(frames.device)


class LabelBackbone(nn.Module):
    """Frozen EfficientNet-Lite0 truncated after `num_blocks` MBConv blocks: the "label" feature map of a frame.

    Stands in for F2LM's DeepLabv3 logits (METHODS.md Part A). Its weights are part of the method's state
    dict, so a registered model is self-contained; it always runs in eval mode and never gets gradients.
    """

    def __init__(self, num_blocks: int = 5) -> None:
        super().__init__()
        self.net = load_pretrained(num_blocks)
        self.out_channels = self.net.out_channels
        self.frames_seen = 0  # frames processed, so tests can check the per-call cache
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> LabelBackbone:  # noqa: ARG002  # frozen BN statistics, whatever the parent asks
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(M, C, H, W) in [0, 1], C = 1 (gray) or 3 (BGR) -> (M, out_channels, H/8, W/8) for 5 blocks."""
        self.frames_seen += frames.shape[0]
        rgb = frames.expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames.flip(1)  # BGR -> RGB
        out: torch.Tensor = self.net(rgb * 2.0 - 1.0)  # Lite0 was trained on RGB in [-1, 1]
        return out


def upsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, K, C, h, w) label maps of K frames -> (B, K * C, H, W), bilinear, like DeepLab's upsampled logits."""
    b, k, c, h, w = labels.shape
    up = F.interpolate(labels.reshape(b * k, c, h, w), size=size, mode="bilinear", align_corners=False)
    return up.reshape(b, k * c, *size)


class StreamCache:
    """Flows and label maps keyed by frame content, so each training frame is processed once in a whole run.

    Training batches are random clips with no video identity, and a frame appears in up to 4 of them (as
    input t-4..t-1); hashing its bytes finds it again. Entries are kept on the CPU in float16: for Ped2 at
    256x256 that is about 0.3 MB per frame (flow 2x256x256 + labels 40x32x32).
    """

    def __init__(self, estimator: FlowEstimator, backbone: LabelBackbone, flow_scale: float) -> None:
        self.estimator = estimator
        self.backbone = backbone
        self.flow_scale = flow_scale
        self.flows: dict[tuple[bytes, bytes], torch.Tensor] = {}
        self.labels: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def key(frame: torch.Tensor) -> bytes:
        return hashlib.blake2b(frame.detach().cpu().numpy().tobytes(), digest_size=16).digest()

    def streams(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, C, H, W) in [0, 1] -> flows (B, K-1, 2, H, W) and label maps (B, K, Cl, h, w), on frames' device."""
        flat = frames.flatten(0, 1)  # (B*K, C, H, W)
        keys = [self.key(f) for f in flat]
        new = {key: i for i, key in enumerate(keys) if key not in self.labels}  # first occurrence of each new frame
        if new:
            maps = self.backbone(flat[list(new.values())])  # one backbone batch for all new frames
            self.labels.update(zip(new, maps.half().cpu(), strict=True))
        rows = [keys[i : i + frames.shape[1]] for i in range(0, len(keys), frames.shape[1])]
        pairs = [list(itertools.pairwise(row)) for row in rows]
        todo = {pair for row in pairs for pair in row if pair not in self.flows}
        if todo:
            gray = dict(zip(keys, to_gray_u8(flat), strict=True))
            for a, b in todo:
                flow = torch.from_numpy(self.estimator(gray[a], gray[b])).permute(2, 0, 1)  # (2, H, W)
                self.flows[(a, b)] = (flow / self.flow_scale).half()
        flows = torch.stack([torch.stack([self.flows[p] for p in row]) for row in pairs])  # (B, K-1, 2, H, W)
        labels = torch.stack([torch.stack([self.labels[key] for key in row]) for row in rows])  # (B, K, Cl, h, w)
        return flows.to(frames.device, torch.float32), labels.to(frames.device, torch.float32)

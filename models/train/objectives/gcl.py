"""GCL training: G and D teach each other with pseudo-labels from batch statistics (METHODS.md (e)).

Schedule over the run's steps: the first `PRETRAIN_G` fraction trains G alone as a plain autoencoder, the
next `PRETRAIN_D` fraction trains D alone on G's pseudo-labels, the rest is cooperative (per step: G on
D's labels, then D on the updated G's labels).
- G -> D: a snippet whose reconstruction error exceeds mean + 1 std of the batch is labelled anomalous.
- D -> G: a snippet whose D probability exceeds mean + 0.1 std of the batch is anomalous; negative learning
  done right: normal -> target = the input feature, anomalous -> target = a pseudo target (all ones), so G
  learns *not* to reconstruct anomalies. (The public reimplementation overwrites G's *output* for normal
  segments instead; see METHODS.md gotcha.)
Deviation: Adam (optim.generator_lr / optim.discriminator_lr, optim.betas) instead of the paper's RMSprop, for
short CPU runs. Batches are frame snippets (B, 16, C, H, W), which go through the frozen I3D, or (B, D) snippet
features of a feature cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from pydantic import Field

from models.methods.gcl import Gcl
from models.train.objectives import Adam, register_objective

if TYPE_CHECKING:
    from models.train.config import TrainConfig

PRETRAIN_G = 0.2  # fraction of steps: G alone
PRETRAIN_D = 0.1  # then D alone on G's labels
G_TO_D_STDS = 1.0  # reconstruction-error threshold: batch mean + 1.0 std
D_TO_G_STDS = 0.1  # discriminator threshold: batch mean + 0.1 std
PSEUDO_TARGET = 1.0  # G's target for snippets D calls anomalous


def batch_threshold(values: torch.Tensor, stds: float) -> torch.Tensor:
    """(B,) -> (B,) bool: above mean + stds * std of this batch."""
    return values > values.mean() + stds * values.std(unbiased=False)


class GclOptim(Adam):
    """Adam for G (the feature autoencoder) and D (the anomaly classifier), constant learning rates."""

    generator_lr: float = Field(default=1e-4, gt=0)
    discriminator_lr: float = Field(default=1e-4, gt=0)


class GclObjective:
    def __init__(self, method: Gcl, total_steps: int, optim: GclOptim) -> None:
        self.method = method
        self.opt_g = torch.optim.Adam(method.generator.parameters(), lr=optim.generator_lr, betas=optim.betas)
        self.opt_d = torch.optim.Adam(method.discriminator.parameters(), lr=optim.discriminator_lr, betas=optim.betas)
        self.g_until = round(PRETRAIN_G * total_steps)
        self.d_until = self.g_until + round(PRETRAIN_D * total_steps)
        self.steps_done = 0

    @property
    def phase(self) -> str:
        if self.steps_done < self.g_until:
            return "pretrain_g"
        return "pretrain_d" if self.steps_done < self.d_until else "cooperative"

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        """One step on (B, 16, C, H, W) frame snippets in [0, 1] (BGR), through the frozen I3D, or on (B, D)
        cached snippet features."""
        device = next(self.method.generator.parameters()).device
        batch = batch.to(device, non_blocking=True)
        return self.step_features(self.method.features(batch) if batch.ndim == 5 else batch)

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

    def finish(self) -> None:
        pass

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


@register_objective("gcl", optim=GclOptim, data=("clips", "snippets"))
def build_gcl_objective(method: Any, config: TrainConfig, device: torch.device) -> GclObjective:
    if not isinstance(method, Gcl):
        msg = f"the gcl objective trains a Gcl method, got {type(method).__name__}"
        raise TypeError(msg)
    if config.batch_size < 2:
        msg = f"gcl pseudo-labels come from batch statistics; use batch_size >= 2 (got {config.batch_size})"
        raise ValueError(msg)
    assert isinstance(config.optim, GclOptim)
    method.to(device)
    return GclObjective(method, config.steps, config.optim)

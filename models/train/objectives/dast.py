"""DAST-Net training: reconstruct the whole 5-frame clip, loss = lambda_int * L2 + lambda_gd * gradient (GDL).

Adam with one learning-rate drop at `optim.lr_drop_step`, like FFP; the paper's schedule could not be read
(METHODS.md (b)), so this is our choice. Batch size comes from the train config (the paper uses 16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from models.components.losses import gradient_loss, intensity_loss
from models.methods.dast import DastNet
from models.train.objectives import StepDecay, register_objective
from models.train.objectives.common import adam_with_drop, autocast_for

if TYPE_CHECKING:
    from models.train.config import TrainConfig


class DastOptim(StepDecay):
    """Adam for the autoencoder (the paper's schedule could not be read; one drop, as FFP's)."""

    lr: float = Field(default=1e-4, gt=0)


class DastObjective:
    def __init__(self, method: DastNet, config: TrainConfig, device: torch.device) -> None:
        self.method = method
        self.cfg = method.config
        self.device = device
        self.amp = config.amp
        optim = config.optim
        assert isinstance(optim, DastOptim)
        self.optimizer, self.scheduler = adam_with_drop(method.parameters(), optim.lr, optim, optim)

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        clip = batch.to(self.device, non_blocking=True)  # (B, 5, 1, H, W) in [0, 1]
        self.method.train()
        with autocast_for(self.device, self.amp):
            recon = self.method(clip).float()  # (B, 5, 1, H, W)
        target, recon = clip.flatten(0, 1), recon.flatten(0, 1)  # every frame of the clip counts
        l_int = intensity_loss(recon, target)
        l_gd = gradient_loss(recon, target)
        loss = self.cfg.lambda_intensity * l_int + self.cfg.lambda_gradient * l_gd
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), "int": l_int.item(), "gd": l_gd.item()}

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


@register_objective("dast", optim=DastOptim)
def build_dast_objective(method: Any, config: TrainConfig, device: torch.device) -> DastObjective:
    if not isinstance(method, DastNet):
        msg = f"the dast objective trains a DastNet method, got {type(method).__name__}"
        raise TypeError(msg)
    return DastObjective(method, config, device)

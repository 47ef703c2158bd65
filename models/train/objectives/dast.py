"""DAST-Net training: reconstruct the whole 5-frame clip, loss = lambda_int * L2 + lambda_gd * gradient (GDL).

Adam with one learning-rate drop at `optim.lr_drop_step`, like FFP; the paper's schedule could not be read
(METHODS.md (b)), so this is our choice. Batch size comes from the train config (the paper uses 16).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from models.components.losses import gradient_loss, intensity_loss
from models.methods.dast import DastNet
from models.train.config import OptimConfig, TrainConfig
from models.train.objectives import register_objective


def adam_with_drop(
    params: Any, lr: float, optim: OptimConfig, weight_decay: float = 0.0, decoupled: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam (or AdamW when `decoupled`) with a piecewise-constant learning rate: one drop by `lr_drop_factor`."""
    optimizer_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    optimizer = optimizer_cls(params, lr=lr, betas=optim.betas, weight_decay=weight_decay)
    drop, factor = optim.lr_drop_step, optim.lr_drop_factor

    def multiplier(step: int) -> float:
        return factor if drop is not None and step >= drop else 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def autocast_for(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA when enabled and supported (no loss scaling, so no extra checkpoint state)."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class DastObjective:
    def __init__(self, method: DastNet, config: TrainConfig, device: torch.device) -> None:
        self.method = method
        self.cfg = method.config
        self.device = device
        self.amp = config.amp
        self.optimizer, self.scheduler = adam_with_drop(method.parameters(), config.optim.lr_g, config.optim)

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


@register_objective("dast")
def build_dast_objective(method: Any, config: TrainConfig, device: torch.device) -> DastObjective:
    if not isinstance(method, DastNet):
        msg = f"the dast objective trains a DastNet method, got {type(method).__name__}"
        raise TypeError(msg)
    return DastObjective(method, config, device)

"""FFP training (METHODS.md section (a)): one discriminator step, then one generator step, per iteration.

Generator loss = lambda_int * L2 + lambda_gd * gradient + lambda_adv * least-squares adversarial; the flow
loss is off (no pretrained flow network here, see models/methods/ffp.py). Adam for both nets with one
learning-rate drop at `optim.lr_drop_step` (official Ped2: G 1e-4 -> 1e-5, D 1e-5 -> 1e-6 at step 7000).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

from models.components.discriminator import PixelDiscriminator
from models.components.losses import gradient_loss, intensity_loss
from models.methods.ffp import Ffp
from models.train.objectives import StepDecay, register_objective
from models.train.objectives.common import Adversary, adam_with_drop, autocast_for

if TYPE_CHECKING:
    from models.train.config import TrainConfig


class FfpOptim(StepDecay):
    """Adam for the generator (the registered model) and the pixel discriminator (training only)."""

    generator_lr: float = Field(default=1e-4, gt=0)
    discriminator_lr: float = Field(default=1e-5, gt=0)


class FfpObjective:
    def __init__(self, method: Ffp, config: TrainConfig, device: torch.device) -> None:
        optim = config.optim
        assert isinstance(optim, FfpOptim)
        self.method = method
        self.cfg = method.config
        self.device = device
        self.amp = config.amp
        self.opt_g, self.sched_g = adam_with_drop(method.parameters(), optim.generator_lr, optim, optim)
        self.adversary: Adversary | None = None
        if self.cfg.lambda_adversarial > 0:
            discriminator = PixelDiscriminator(self.cfg.channels, self.cfg.discriminator_channels).to(device)
            self.adversary = Adversary(discriminator, optim.discriminator_lr, optim, optim, config.amp)

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        ctx = self.cfg.context
        batch = batch.to(self.device, non_blocking=True)  # (B, ctx + 1, C, H, W) in [0, 1]
        target = batch[:, ctx] * 2 - 1  # (B, C, H, W) in [-1, 1], the generator's range
        self.method.train()
        with autocast_for(self.device, self.amp):
            pred = self.method.predict(batch[:, :ctx])  # (B, C, H, W) in [-1, 1]
        logs: dict[str, float] = {}
        if self.adversary is not None:
            logs["d"] = float(self.adversary.step(target, pred.detach()).item())
        with autocast_for(self.device, self.amp):
            l_int = intensity_loss(pred.float(), target)
            l_gd = gradient_loss(pred.float(), target)
            loss = self.cfg.lambda_intensity * l_int + self.cfg.lambda_gradient * l_gd
            if self.adversary is not None:
                l_adv = self.adversary.generator_loss(pred)
                loss = loss + self.cfg.lambda_adversarial * l_adv
                logs["adv"] = l_adv.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.adversary is not None:
            self.adversary.clear_grads()
        self.opt_g.step()
        self.sched_g.step()
        logs.update(g=loss.item(), int=l_int.item(), gd=l_gd.item())
        return logs

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "method": self.method.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
        }
        if self.adversary is not None:
            state.update(self.adversary.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"] if "method" in state else state["generator"])  # older: generator
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state)


@register_objective("ffp", optim=FfpOptim)
def build_ffp_objective(method: Any, config: TrainConfig, device: torch.device) -> FfpObjective:
    if not isinstance(method, Ffp):
        msg = f"the ffp objective trains an Ffp method, got {type(method).__name__}"
        raise TypeError(msg)
    return FfpObjective(method, config, device)

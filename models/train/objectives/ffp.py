"""FFP training (METHODS.md section (a)): one discriminator step, then one generator step, per iteration.

Generator loss = lambda_int * L2 + lambda_gd * gradient + lambda_adv * least-squares adversarial; the flow
loss is off (no pretrained flow network here, see models/methods/ffp.py). Adam for both nets with one
learning-rate drop at `optim.lr_drop_step`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from models.components.discriminator import PixelDiscriminator
from models.components.losses import (
    discriminator_loss,
    generator_adversarial_loss,
    gradient_loss,
    intensity_loss,
)
from models.methods.ffp import Ffp
from models.train.config import OptimConfig, TrainConfig
from models.train.objectives import register_objective


def _optimizer_and_schedule(
    params: Any, lr: float, optim: OptimConfig
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.Adam(params, lr=lr, betas=optim.betas)
    drop, factor = optim.lr_drop_step, optim.lr_drop_factor

    def multiplier(step: int) -> float:  # piecewise constant: one drop, as in the official hyper_params.ini
        return factor if drop is not None and step >= drop else 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


class FfpObjective:
    def __init__(self, method: Ffp, config: TrainConfig, device: torch.device) -> None:
        self.method = method
        self.cfg = method.config
        self.device = device
        self.amp = config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.opt_g, self.sched_g = _optimizer_and_schedule(method.parameters(), config.optim.lr_g, config.optim)
        self.discriminator: PixelDiscriminator | None = None
        if self.cfg.lambda_adversarial > 0:
            self.discriminator = PixelDiscriminator(self.cfg.channels, self.cfg.discriminator_channels).to(device)
            self.opt_d, self.sched_d = _optimizer_and_schedule(
                self.discriminator.parameters(), config.optim.lr_d, config.optim
            )

    def _autocast(self) -> AbstractContextManager[Any]:
        # bf16 needs no loss scaling, so AMP adds no state to the checkpoint.
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        ctx = self.cfg.context
        batch = batch.to(self.device, non_blocking=True)  # (B, ctx + 1, C, H, W) in [0, 1]
        target = batch[:, ctx] * 2 - 1  # (B, C, H, W) in [-1, 1], the generator's range
        self.method.train()
        with self._autocast():
            pred = self.method.predict(batch[:, :ctx])  # (B, C, H, W) in [-1, 1]
        logs: dict[str, float] = {}
        if self.discriminator is not None:
            logs["d"] = self._discriminator_step(target, pred.detach())
        with self._autocast():
            l_int = intensity_loss(pred.float(), target)
            l_gd = gradient_loss(pred.float(), target)
            loss = self.cfg.lambda_intensity * l_int + self.cfg.lambda_gradient * l_gd
            if self.discriminator is not None:
                l_adv = generator_adversarial_loss(self.discriminator(pred).float())
                loss = loss + self.cfg.lambda_adversarial * l_adv
                logs["adv"] = l_adv.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.discriminator is not None:
            # G's adversarial backward also fills D's grads; they are cleared before D's next step.
            self.discriminator.zero_grad(set_to_none=True)
        self.opt_g.step()
        self.sched_g.step()
        logs.update(g=loss.item(), int=l_int.item(), gd=l_gd.item())
        return logs

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        assert self.discriminator is not None
        self.discriminator.train()
        with self._autocast():
            loss = discriminator_loss(self.discriminator(real).float(), self.discriminator(fake).float())
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt_d.step()
        self.sched_d.step()
        return float(loss.item())

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "generator": self.method.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
        }
        if self.discriminator is not None:
            state.update(
                discriminator=self.discriminator.state_dict(),
                opt_d=self.opt_d.state_dict(),
                sched_d=self.sched_d.state_dict(),
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])


@register_objective("ffp")
def build_ffp_objective(method: Any, config: TrainConfig, device: torch.device) -> FfpObjective:
    if not isinstance(method, Ffp):
        msg = f"the ffp objective trains an Ffp method, got {type(method).__name__}"
        raise TypeError(msg)
    return FfpObjective(method, config, device)

"""Pieces the objectives share: Adam(W) with a one-drop schedule, bf16 autocast on CUDA, and the pixel discriminator
that FFP and F2LM's generator phase train against (`Adversary`)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from models.components.discriminator import PixelDiscriminator
from models.components.losses import discriminator_loss, generator_adversarial_loss
from models.train.objectives import Adam, StepDecay


def adam_with_drop(
    params: Any,
    lr: float,
    optim: Adam,
    schedule: StepDecay | None = None,
    weight_decay: float = 0.0,
    decoupled: bool = False,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam (or AdamW when `decoupled`) at `lr` with `optim.betas`; the learning rate follows `schedule` (one drop,
    piecewise constant as in the official FFP hyper_params.ini), constant without one."""
    optimizer_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    optimizer = optimizer_cls(params, lr=lr, betas=optim.betas, weight_decay=weight_decay)

    def multiplier(step: int) -> float:
        return schedule.multiplier(step) if schedule is not None else 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def autocast_for(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA when enabled and supported (no loss scaling, so no extra checkpoint state)."""
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class Adversary:
    """A least-squares pixel discriminator with its own optimiser and schedule, trained alongside a generator and
    dropped after training (the registered model is the generator). Its checkpoint entries are `discriminator`,
    `opt_d` and `sched_d`, as FFP and F2LM checkpoints have always named them."""

    def __init__(
        self,
        discriminator: PixelDiscriminator,
        lr: float,
        optim: Adam,
        schedule: StepDecay | None,
        amp: bool,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.net = discriminator
        self.device = next(discriminator.parameters()).device
        self.amp = amp
        self.opt, self.sched = adam_with_drop(discriminator.parameters(), lr, optim, schedule, weight_decay, decoupled)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One discriminator update on real targets against detached predictions; returns its loss."""
        self.net.train()
        with autocast_for(self.device, self.amp):
            loss = discriminator_loss(self.net(real).float(), self.net(fake).float())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt.step()
        self.sched.step()
        return loss

    def generator_loss(self, pred: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial loss on its (not detached) prediction."""
        with autocast_for(self.device, self.amp):
            return generator_adversarial_loss(self.net(pred).float())

    def clear_grads(self) -> None:
        """The generator's backward through `generator_loss` also filled the discriminator's grads: drop them."""
        self.net.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "discriminator": self.net.state_dict(),
            "opt_d": self.opt.state_dict(),
            "sched_d": self.sched.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["discriminator"])
        self.opt.load_state_dict(state["opt_d"])
        self.sched.load_state_dict(state["sched_d"])

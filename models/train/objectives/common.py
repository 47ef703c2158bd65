"""Pieces the objectives share: Adam(W) with a one-drop schedule, and bf16 autocast on CUDA."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

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

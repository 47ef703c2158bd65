"""Training objectives by method name: how one batch of clips updates a method (its losses, extra nets, optimizers).

Each method module under this package registers a builder `build(method, config, device) -> Objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from models.base import AnomalyMethod
    from models.train.config import TrainConfig


class Objective(Protocol):
    """The trainer's view of a method's training logic."""

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        """One optimisation step on (B, clip_len, C, H, W) float32 in [0, 1]; returns named losses."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Its own modules, optimizers and schedulers (the method's weights included)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


ObjectiveBuilder = Callable[["AnomalyMethod", "TrainConfig", torch.device], Objective]

_OBJECTIVES: dict[str, ObjectiveBuilder] = {}


def register_objective(name: str) -> Callable[[ObjectiveBuilder], ObjectiveBuilder]:
    """Decorator: the training objective for method `name`; a duplicate is an error."""

    def decorate(builder: ObjectiveBuilder) -> ObjectiveBuilder:
        if name in _OBJECTIVES:
            msg = f"a training objective for method {name!r} is registered twice"
            raise ValueError(msg)
        _OBJECTIVES[name] = builder
        return builder

    return decorate


def build_objective(method: AnomalyMethod, config: TrainConfig, device: torch.device) -> Objective:
    _load_all()
    name = str(method.config.name)  # type: ignore[attr-defined]
    if name not in _OBJECTIVES:
        msg = f"method {name!r} has no training objective; trainable methods: {', '.join(sorted(_OBJECTIVES))}"
        raise KeyError(msg)
    return _OBJECTIVES[name](method, config, device)


def _load_all() -> None:
    # Explicit imports register the objectives (one line per method, as in models/methods/__init__.py).
    from models.train.objectives import (
        dast,  # noqa: F401
        f2lm,  # noqa: F401
        ffp,  # noqa: F401
        gcl,  # noqa: F401
    )

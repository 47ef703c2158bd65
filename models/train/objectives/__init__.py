"""Training objectives by method name: how one batch updates a method (its losses, extra nets, optimisers).

Each method module under this package registers its objective with `@register_objective(name, optim=...,
data=...)`: the builder `build(method, config, device) -> Objective`, the pydantic class of its optimiser
settings (the `optim:` section of a training YAML, named for what each method trains), and the batches it
trains on, first the default:

- ``clips``: (B, clip_len, C, H, W) float32 frame clips in [0, 1] of normal training videos (ffp, dast, f2lm, gcl);
- ``snippets``: (B, D) snippet features of a split's training videos, labels unused (gcl on a feature cache);
- ``videos``: a list of `WeakVideo` (snippet features + video-level label) of a split's training videos (vadclip).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from models.base import AnomalyMethod
    from models.train.config import TrainConfig

DataKind = Literal["clips", "snippets", "videos"]


class OptimConfig(BaseModel):
    """Base of every objective's optimiser settings; unknown keys are errors, so `optim.lr_g` names what fits."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Adam(OptimConfig):
    """Settings of objectives that train with Adam or AdamW."""

    betas: tuple[float, float] = (0.9, 0.999)  # TF defaults, as the official codes use


class StepDecay(Adam):
    """A piecewise-constant learning rate with one drop (FFP's official schedule), shared by the frame methods."""

    lr_drop_step: int | None = Field(default=7000, ge=1)  # None = constant learning rate
    lr_drop_factor: float = Field(default=0.1, gt=0, le=1)

    def multiplier(self, step: int) -> float:
        return self.lr_drop_factor if self.lr_drop_step is not None and step >= self.lr_drop_step else 1.0


class Objective(Protocol):
    """The trainer's view of a method's training logic."""

    def step(self, batch: Any) -> dict[str, float]:
        """One optimisation step on a batch of the run's data kind; returns named losses."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Its own modules, optimisers and schedulers; the method's weights under "method"."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def finish(self) -> None:
        """Called once after the last step, before calibration (e.g. store what serving needs in the method)."""
        ...


ObjectiveBuilder = Callable[["AnomalyMethod", "TrainConfig", torch.device], Objective]


@dataclass(frozen=True)
class ObjectiveSpec:
    method: str
    optim: type[OptimConfig]
    data: tuple[DataKind, ...]  # the batches it trains on; the first is used without a split
    build: ObjectiveBuilder


_OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(
    name: str, optim: type[OptimConfig], data: tuple[DataKind, ...] = ("clips",)
) -> Callable[[ObjectiveBuilder], ObjectiveBuilder]:
    """Decorator: the training objective for method `name`; a duplicate is an error."""

    def decorate(builder: ObjectiveBuilder) -> ObjectiveBuilder:
        if name in _OBJECTIVES:
            msg = f"a training objective for method {name!r} is registered twice"
            raise ValueError(msg)
        _OBJECTIVES[name] = ObjectiveSpec(name, optim, data, builder)
        return builder

    return decorate


def get_objective(name: str) -> ObjectiveSpec:
    _load_all()
    if name not in _OBJECTIVES:
        msg = f"method {name!r} has no training objective; trainable methods: {', '.join(sorted(_OBJECTIVES))}"
        raise KeyError(msg)
    return _OBJECTIVES[name]


def build_objective(method: AnomalyMethod, config: TrainConfig, device: torch.device) -> Objective:
    return get_objective(str(method.config.name)).build(method, config, device)  # type: ignore[attr-defined]


def _load_all() -> None:
    # Explicit imports register the objectives (one line per method, as in models/methods/__init__.py).
    from models.train.objectives import (
        dast,  # noqa: F401
        f2lm,  # noqa: F401
        ffp,  # noqa: F401
        flowmem,  # noqa: F401
        gcl,  # noqa: F401
        vadclip,  # noqa: F401
    )

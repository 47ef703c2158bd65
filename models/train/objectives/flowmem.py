"""flowmem fitting: one pass over the training frames fills a uniform reservoir of per-cell features, then the
greedy coreset keeps `memory` of them (models/methods/flowmem.py). No gradient step and no optimiser.

The reservoir (Vitter's algorithm R) draws, for the n-th frame, one slot per cell from a generator seeded by
(seed, n), so a resumed run keeps exactly what an uninterrupted one keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from models.methods.flowmem import MOTION_DIM, Flowmem, cell_levels, greedy_coreset
from models.train.objectives import OptimConfig, register_objective

if TYPE_CHECKING:
    from models.train.config import TrainConfig


class FlowmemOptim(OptimConfig):
    """Nothing is optimised: the memories are filled from the training frames (`epochs: 1` covers each once)."""


class FlowmemObjective:
    def __init__(self, method: Flowmem, seed: int) -> None:
        cfg = method.config
        cells = cfg.grid[0] * cfg.grid[1]
        self.method, self.seed = method, seed
        self.motion = torch.zeros(cells, cfg.capacity, MOTION_DIM)
        self.appearance = torch.zeros(cells, cfg.capacity, cfg.appearance_channels)
        self.seen = 0

    def step(self, batch: torch.Tensor) -> dict[str, float]:
        """(B, context + 1, C, H, W) clips in [0, 1]: each clip's last frame goes into the reservoir (its features
        need only the `feature_context` frames before it, whatever else the scoring's context holds)."""
        self.method.eval()
        with torch.no_grad():
            motion, appearance = self.method.cell_features(batch[:, -(self.method.config.feature_context + 1) :])
        for i in range(batch.shape[0]):
            self._add(motion[i, 0].cpu(), appearance[i, 0].cpu())
        return {"frames": float(self.seen)}

    def _add(self, motion: torch.Tensor, appearance: torch.Tensor) -> None:
        n, capacity = self.seen, self.motion.shape[1]
        if n < capacity:
            self.motion[:, n], self.appearance[:, n] = motion, appearance
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + n)
            slot = torch.randint(n + 1, (self.motion.shape[0],), generator=generator)  # (cells,)
            keep = torch.nonzero(slot < capacity).squeeze(1)
            self.motion[keep, slot[keep]] = motion[keep]
            self.appearance[keep, slot[keep]] = appearance[keep]
        self.seen += 1

    def finish(self) -> None:
        count = min(self.seen, self.motion.shape[1])
        if count == 0:
            msg = "flowmem saw no training frame; train at least one step (epochs: 1)"
            raise ValueError(msg)
        size = self.method.config.memory
        method = self.method
        with torch.no_grad():
            method.motion_memory.copy_(greedy_coreset(self.motion[:, :count], size))
            method.appearance_memory.copy_(greedy_coreset(self.appearance[:, :count], size))
            # Each cell's normal level: how far the kept training features lie from the memory just chosen.
            method.motion_level.copy_(cell_levels(self._distances(self.motion[:, :count], method.motion_memory)))
            method.appearance_level.copy_(
                cell_levels(self._distances(self.appearance[:, :count], method.appearance_memory))
            )

    def _distances(self, features: torch.Tensor, memory: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """(cells, N, D) reservoir features -> (N, cells) distances to the memory, as scoring measures them."""
        x = features.transpose(0, 1)  # (N, cells, D)
        return torch.cat([self.method.nearest(x[i : i + chunk], memory) for i in range(0, len(x), chunk)])

    def state_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.state_dict(),
            "motion": self.motion,
            "appearance": self.appearance,
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.motion.copy_(state["motion"])
        self.appearance.copy_(state["appearance"])
        self.seen = int(state["seen"])


@register_objective("flowmem", optim=FlowmemOptim)
def build_flowmem_objective(method: Any, config: TrainConfig, device: torch.device) -> FlowmemObjective:
    if not isinstance(method, Flowmem):
        msg = f"the flowmem objective fits a Flowmem method, got {type(method).__name__}"
        raise TypeError(msg)
    method.to(device)
    return FlowmemObjective(method, config.seed)

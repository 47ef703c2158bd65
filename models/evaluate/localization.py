"""Pixel-level localisation of anomaly maps against ground-truth masks (UCSD Ped2's `pixel_masks_UCSDped2.npz`).

Protocol (what `vigil eval --heatmaps` reports, docs/RESULTS.md):
* maps are the coarse maps the service stores (models/heatmap.py: the method's map area-averaged to 32 cells on the
  longer side and quantised), resized bilinearly to a comparison grid; masks are area-averaged to the same grid and
  a cell counts as anomalous when at least half of it is (Ped2: 240x360 masks, grid 60x90, a quarter per side);
* pixel AUC: one ROC over every cell of every scored test frame (frames without a prediction dropped, as for the
  frame-level AUC), and over the anomalous frames alone (where is it, given that something is there);
* chance floors on the same cells: a random map (0.5), a centre prior (closer to the frame centre = higher) and the
  absolute difference of consecutive frames (motion, no model) made coarse the same way;
* peak hits: the share of alerts whose map peak (the cell with the largest value on the alert's peak frame) lies
  inside the peak frame's mask at full resolution, against the chance of a uniformly random point (the mask's area
  fraction, averaged over the same frames) and the peak of the frame difference on the same frames; the same share
  over every scored frame with a non-empty mask (many more frames than alerts, so a steadier number).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from models.errors import DatasetError
from models.evaluate.metrics import roc_auc

GRID_DIVISOR = 4  # comparison grid = mask size / 4 per side (Ped2: 60x90 cells of 4x4 pixels)


class PeakHits(BaseModel):
    """How often the map's peak cell lies inside the ground-truth mask of a set of frames (alerts' peak frames, or
    every frame with a mask), with floors on the same frames: `random` (a uniformly random point: the mean mask area
    fraction, 0 for frames without a mask) and the peak of each prior map (e.g. the frame difference)."""

    model_config = ConfigDict(extra="forbid")
    frames: int  # frames judged (alerts: one per alert)
    masked: int  # ... whose mask is not empty
    peak_in_mask: float | None  # share of `frames` whose map peak is inside the mask
    chance: dict[str, float]


class LocalizationResult(BaseModel):
    """Pixel-level localisation of one model's maps on a test set (module docstring for the protocol)."""

    model_config = ConfigDict(extra="forbid")
    map_grid: tuple[int, int]  # the stored maps' cells (h, w)
    compare_grid: tuple[int, int]  # where maps and masks meet
    frames: int  # scored test frames with a mask
    anomalous_frames: int  # ... with an anomalous cell on the comparison grid
    pixel_auc: float  # every cell of every scored frame
    pixel_auc_anomalous_frames: float  # cells of the anomalous frames only
    chance: dict[str, float]  # floors on the same cells, `<prior>` and `<prior>_anomalous_frames`
    peaks_masked_frames: PeakHits  # every scored frame with a non-empty mask
    peaks_alerts: dict[str, PeakHits]  # alert mode (stream, per-video) -> the alerts' peak frames


def load_pixel_masks(root: str | Path) -> dict[str, np.ndarray]:
    """`pixel_masks*.npz` under a dataset root -> test video name ("01") -> (T, H, W) bool masks.

    Keys name the video by number (Ped2: Test001_gt); the number, zero-padded to two digits, is the video's name."""
    found = sorted(Path(root).glob("pixel_masks*.npz"))
    if not found:
        msg = f"{root} has no pixel_masks*.npz; pixel-level localisation needs per-frame masks of the test videos"
        raise DatasetError(msg)
    out = {}
    with np.load(found[0], allow_pickle=False) as z:
        for key in z.files:
            digits = re.search(r"(\d+)", key)
            if digits is None:
                msg = f"{found[0]}: cannot tell which test video the mask array {key!r} belongs to"
                raise DatasetError(msg)
            out[f"{int(digits.group(1)):02d}"] = z[key].astype(bool)
    return out


def compare_grid(mask_shape: tuple[int, int]) -> tuple[int, int]:
    return max(1, mask_shape[0] // GRID_DIVISOR), max(1, mask_shape[1] // GRID_DIVISOR)


def to_grid(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(M, h, w) maps -> (M, *grid) float32, bilinear (cell centres aligned, as cv2.resize)."""
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(t, size=grid, mode="bilinear", align_corners=False)[:, 0].numpy()


def masks_to_grid(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(M, H, W) bool -> (M, *grid) bool: a cell is anomalous when at least half of its pixels are."""
    t = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    return (F.adaptive_avg_pool2d(t, grid)[:, 0] >= 0.5).numpy()


def pixel_auc(maps: np.ndarray, masks: np.ndarray) -> float:
    """ROC AUC of map values against mask cells, both (M, h, w) on the same grid (ties count half)."""
    return roc_auc(np.asarray(masks, dtype=np.uint8).reshape(-1), np.asarray(maps, dtype=np.float64).reshape(-1))


def centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """(h, w) map that is larger closer to the centre (minus the normalised distance)."""
    ys = (np.arange(shape[0]) + 0.5) / shape[0] - 0.5
    xs = (np.arange(shape[1]) + 0.5) / shape[1] - 0.5
    return -np.hypot(ys[:, None], xs[None, :]).astype(np.float32)


def peak_cell(m: np.ndarray) -> tuple[int, int]:
    """(row, col) of the largest value of an (h, w) map (the first one on ties)."""
    i = int(np.argmax(m))
    return i // m.shape[1], i % m.shape[1]


def peak_in_mask(m: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the centre of the (h, w) map's peak cell, scaled to the (H, W) mask, is a mask pixel."""
    r, c = peak_cell(m)
    y = min(int((r + 0.5) * mask.shape[0] / m.shape[0]), mask.shape[0] - 1)
    x = min(int((c + 0.5) * mask.shape[1] / m.shape[1]), mask.shape[1] - 1)
    return bool(mask[y, x])


def peak_hits(
    maps: list[np.ndarray], masks: list[np.ndarray], priors: dict[str, list[np.ndarray]], frames: list[tuple[int, int]]
) -> PeakHits:
    """Peak hits of `maps` and of each prior's maps on `frames` ((video index, frame index) pairs)."""
    n = len(frames)
    if not n:
        return PeakHits(frames=0, masked=0, peak_in_mask=None, chance={})
    hits = dict.fromkeys(("map", *priors), 0)
    area = 0.0
    masked = 0
    for video, frame in frames:
        mask = masks[video][frame]
        masked += bool(mask.any())
        area += float(mask.mean())
        hits["map"] += peak_in_mask(maps[video][frame], mask)
        for name, prior in priors.items():
            hits[name] += peak_in_mask(prior[video][frame], mask)
    chance = {"random": area / n, **{name: hits[name] / n for name in priors}}
    return PeakHits(frames=n, masked=masked, peak_in_mask=hits["map"] / n, chance=chance)


def localization(
    maps: list[np.ndarray],
    masks: list[np.ndarray],
    priors: dict[str, list[np.ndarray]],
    alert_peaks: dict[str, list[tuple[int, int]]],
) -> LocalizationResult:
    """Per test video: maps (M_i, h, w) of its scored frames, masks (M_i, H, W) of the same frames, prior maps
    (M_i, h', w') of each named floor besides random and centre; alert_peaks: mode -> (video index, frame index in
    that video's maps) of every alert's peak frame."""
    grid = compare_grid(masks[0].shape[1:])
    cells = np.concatenate([masks_to_grid(m, grid) for m in masks])  # (M, gh, gw) bool
    values = np.concatenate([to_grid(m, grid) for m in maps])
    anomalous = cells.reshape(len(cells), -1).any(axis=1)
    if not cells.any() or cells.all():
        msg = "pixel AUC needs anomalous and normal cells among the scored frames"
        raise ValueError(msg)
    chance = {"random": 0.5}
    centre = np.broadcast_to(centre_prior(grid), cells.shape)
    floors = {"centre_prior": centre, **{k: np.concatenate([to_grid(m, grid) for m in v]) for k, v in priors.items()}}
    for name, floor in floors.items():
        chance[name] = pixel_auc(floor, cells)
        chance[f"{name}_anomalous_frames"] = pixel_auc(floor[anomalous], cells[anomalous])
    masked = [(v, f) for v, m in enumerate(masks) for f in np.flatnonzero(m.reshape(len(m), -1).any(axis=1))]
    return LocalizationResult(
        map_grid=(int(maps[0].shape[1]), int(maps[0].shape[2])),
        compare_grid=grid,
        frames=len(cells),
        anomalous_frames=int(anomalous.sum()),
        pixel_auc=pixel_auc(values, cells),
        pixel_auc_anomalous_frames=pixel_auc(values[anomalous], cells[anomalous]),
        chance=chance,
        peaks_masked_frames=peak_hits(maps, masks, priors, [(v, int(f)) for v, f in masked]),
        peaks_alerts={mode: peak_hits(maps, masks, priors, peaks) for mode, peaks in alert_peaks.items()},
    )

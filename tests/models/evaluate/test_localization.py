"""Pixel-level localisation metrics (models/evaluate/localization.py) on hand-made cases with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.errors import DatasetError
from models.evaluate.localization import (
    load_pixel_masks,
    localization,
    masks_to_grid,
    peak_in_mask,
    pixel_auc,
)


def test_pixel_auc_counts_pairs_of_anomalous_and_normal_cells() -> None:
    maps = np.array([[[0.9, 0.1], [0.4, 0.2]]])
    assert pixel_auc(maps, np.array([[[1, 0], [0, 0]]])) == 1.0
    assert pixel_auc(maps, np.array([[[0, 1], [0, 0]]])) == 0.0
    # anomalous {0.9, 0.2} against normal {0.1, 0.4}: 3 of 4 pairs ranked right
    assert pixel_auc(maps, np.array([[[1, 0], [0, 1]]])) == pytest.approx(0.75)
    assert pixel_auc(np.ones((1, 2, 2)), np.array([[[1, 0], [0, 1]]])) == pytest.approx(0.5)  # ties count half


def test_masks_to_grid_keeps_cells_at_least_half_anomalous() -> None:
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, :2, :2] = True  # the whole top-left cell
    mask[0, 2, 2] = True  # a quarter of the bottom-right cell
    np.testing.assert_array_equal(masks_to_grid(mask, (2, 2))[0], [[True, False], [False, False]])


def test_peak_in_mask_scales_the_peak_cell_to_the_mask() -> None:
    m = np.array([[0.1, 0.8], [0.2, 0.3]])  # peak in the top-right cell
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:15, 35:55] = True  # around the centre of the top-right quarter (10, 45)
    assert peak_in_mask(m, mask)
    assert not peak_in_mask(m[::-1], mask)


def test_localization_of_perfect_maps() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 0:4, 4:8] = True
    masks[2, 4:8, 0:4] = True
    maps = masks.reshape(3, 4, 2, 4, 2).mean(axis=(2, 4)).astype(np.float32)  # (3, 4, 4): exactly the masks
    wrong = [maps[:, ::-1, ::-1].copy()]  # a prior that always points at the opposite corner
    result = localization([maps], [masks], {"wrong": wrong}, {"stream": [(0, 0), (0, 1), (0, 2)], "per-video": []})
    assert result.compare_grid == (2, 2)
    assert result.map_grid == (4, 4)
    assert (result.frames, result.anomalous_frames) == (3, 2)
    assert result.pixel_auc == 1.0
    assert result.pixel_auc_anomalous_frames == 1.0
    assert result.chance["random"] == 0.5
    assert result.chance["wrong_anomalous_frames"] == pytest.approx(1 / 3)  # below its hot cells, tied with 4 of 6
    assert "centre_prior" in result.chance
    # every masked frame (0 and 2) is hit by the maps and missed by the wrong prior; a random point hits a quarter
    frames = result.peaks_masked_frames
    assert (frames.frames, frames.masked, frames.peak_in_mask) == (2, 2, 1.0)
    assert frames.chance == {"random": 0.25, "wrong": 0.0}
    # alerts: frame 1 has no mask, so its alert misses (and a random point too)
    alerts = result.peaks_alerts["stream"]
    assert (alerts.frames, alerts.masked) == (3, 2)
    assert alerts.peak_in_mask == pytest.approx(2 / 3)
    assert alerts.chance["random"] == pytest.approx((0.25 + 0.25) / 3)
    assert result.peaks_alerts["per-video"].peak_in_mask is None


def test_load_pixel_masks_names_videos_by_number(tmp_path: Path) -> None:
    np.savez(tmp_path / "pixel_masks_x.npz", Test001_gt=np.ones((2, 3, 4), bool), Test012_gt=np.zeros((1, 3, 4)))
    masks = load_pixel_masks(tmp_path)
    assert sorted(masks) == ["01", "12"]
    assert masks["12"].dtype == bool
    with pytest.raises(DatasetError, match="pixel_masks"):
        load_pixel_masks(tmp_path / "nowhere")

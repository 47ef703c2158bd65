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
    noise = [np.random.default_rng(0).random((3, 4, 4))]
    result = localization([maps], [masks], {"noise": noise}, peaks=[(0, 0), (0, 1), (0, 2)])
    assert result.compare_grid == (2, 2)
    assert result.map_grid == (4, 4)
    assert (result.frames, result.anomalous_frames) == (3, 2)
    assert result.pixel_auc == 1.0
    assert result.pixel_auc_anomalous_frames == 1.0
    assert result.chance["random"] == 0.5
    assert set(result.chance) >= {"centre_prior", "noise", "noise_anomalous_frames"}
    # frame 1 has no mask: its alert misses; the other two hit, where a random point hits a quarter of the time
    assert (result.alerts, result.alerts_on_masked_frames) == (3, 2)
    assert result.peak_in_mask == pytest.approx(2 / 3)
    assert result.peak_in_mask_chance == pytest.approx((0.25 + 0.25) / 3)


def test_load_pixel_masks_names_videos_by_number(tmp_path: Path) -> None:
    np.savez(tmp_path / "pixel_masks_x.npz", Test001_gt=np.ones((2, 3, 4), bool), Test012_gt=np.zeros((1, 3, 4)))
    masks = load_pixel_masks(tmp_path)
    assert sorted(masks) == ["01", "12"]
    assert masks["12"].dtype == bool
    with pytest.raises(DatasetError, match="pixel_masks"):
        load_pixel_masks(tmp_path / "nowhere")
